"""Helpers the tests import as a package (`from tests.helpers import ...`): where the project and
its data are, a notebook runner and a local HTTP server."""
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from torch import nn

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


class JSONHandler(BaseHTTPRequestHandler):
    """What the fake web services of the tests share: quiet logs, a JSON answer, and answers that
    trickle (one byte every 0.5 s, bounded to about 20 s if the client never hangs up)."""

    def log_message(self, *args):
        pass

    def send_json(self, status: int, headers: dict, body: bytes) -> None:
        try:
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:           # the client gave up and hung up
            pass

    def trickle_body(self, body: bytes) -> None:
        "Headers at once, then the body one byte every 0.5 s."
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(min(len(body), 40)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass

    def trickle_headers(self) -> None:
        "The status line, then a header one byte every 0.5 s, never finished."
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(36):
                self.wfile.write(b"z")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass


class TinyContextLM(nn.Module):
    "Embedding + projected context -> dropout -> stateful LSTM, like the real model in miniature."
    def __init__(self, vocab_sz: int, n_context: int, emb: int = 16, hid: int = 32):
        super().__init__()
        self.emb, self.ctx = nn.Embedding(vocab_sz, emb), nn.Linear(n_context, emb)
        self.drop, self.rnn, self.out = nn.Dropout(0.3), nn.LSTM(emb, hid, batch_first=True), nn.Linear(hid, vocab_sz)
        self.hidden = None

    def reset(self):
        self.hidden = None

    def forward(self, x, ctx):
        h, hidden = self.rnn(self.drop(self.emb(x) + self.ctx(ctx)), self.hidden)
        self.hidden = tuple(t.detach() for t in hidden)
        return self.out(h)
