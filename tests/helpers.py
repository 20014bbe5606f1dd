"""Helpers the tests import as a package (`from tests.helpers import ...`): where the project and
its data are, a notebook runner and a local HTTP server."""
import threading
import time
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

#: The project's root (the folder holding `fastai_context/` and `nbs/`).
ROOT = Path(__file__).resolve().parents[1]
#: The real data, `../shared/data` beside the project unless FASTAI_CONTEXT_DATA says otherwise.
SHARED = (ROOT / ".." / "shared" / "data").resolve()


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
