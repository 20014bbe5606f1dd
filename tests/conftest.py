"""Shared fixtures: real data from ../shared/data, offline NLTK, one torch thread per worker."""
import os
import threading
import time
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()
os.environ.setdefault("FASTAI_CONTEXT_DATA", str(SHARED))
os.environ.setdefault("NLTK_DATA", str(SHARED / "nltk_data"))
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    p = Path(os.environ["FASTAI_CONTEXT_DATA"])
    if not (p / "spotify" / "spotify_songs.csv.gz").exists():
        pytest.fail(f"real data not found in {p}: set FASTAI_CONTEXT_DATA")
    return p


@pytest.fixture(scope="session")
def tracks(data_dir):
    "The real Spotify tracks table, one row per track."
    from fastai_context import datasets
    return datasets.spotify_tracks(dedupe=True)


def run_notebook(name: str, tmp_path: Path, **parameters) -> Path:
    """Execute `nbs/<name>` top to bottom with papermill, overriding the cells tagged
    `parameters` with reduced settings; run in `tmp_path` so artifacts stay out of the repo."""
    import papermill as pm
    out = tmp_path / name
    pm.execute_notebook(str(ROOT / "nbs" / name), str(out), parameters=parameters, cwd=str(tmp_path),
                        kernel_name="python3", progress_bar=False)
    return out


@contextmanager
def local_server(handler):
    """Serve `handler` (a `BaseHTTPRequestHandler` class) on 127.0.0.1 in a thread; yield the base URL.
    The serving loop is bounded (it stops at exit or after 2 minutes) and one slow answer does not
    block the next request."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads, server.timeout = True, 0.05
    stop, deadline = threading.Event(), time.monotonic() + 120

    def serve():
        while not stop.is_set() and time.monotonic() < deadline:
            server.handle_request()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.server_close()
