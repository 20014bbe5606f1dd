"""The HTTP side shared by the web sources (Spotify, ReccoBeats): a session whose every request
ends within a total timeout, and a bounded retry loop for 429, 5xx, timeouts and malformed JSON.

Why a total timeout: requests' `timeout` bounds each socket read, so a server that trickles a
byte every half second keeps a `timeout=1` request alive for as long as it likes (#10 item 14).
Why our own retries: spotipy's urllib3 retries have hung callers for up to an hour on 429
(spotipy issues #766 and #1224); here every wait is counted and bounded.
"""
from __future__ import annotations

import email.utils
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["DeadlineSession", "RetryingClient", "HTTPStatusError", "MalformedResponse", "WebServiceError",
           "RateLimitError", "retry_after"]


class WebServiceError(RuntimeError):
    "A web source could not give what was asked, for the reason in the message."


class RateLimitError(WebServiceError):
    "A web source kept answering 429 for longer than `max_wait` seconds in total."


class HTTPStatusError(Exception):
    "An answer with an error status, as the retry loop sees it (whatever client made the request)."

    def __init__(self, status: int, headers: Any = None, message: str = ""):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.headers, self.message = status, headers or {}, message


class MalformedResponse(Exception):
    "A response that is not the JSON the endpoint documents."


def retry_after(headers: Any) -> float:
    "Seconds from a Retry-After header (seconds or an HTTP date); 1 second when missing or unreadable."
    value = (headers or {}).get("Retry-After")
    if value is None:
        return 1.0
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return 1.0


class _Watch:
    "The socket of the request in flight on this thread, and whether its deadline has passed."

    def __init__(self):
        self.sock: socket.socket | None = None
        self.fired = False
        self.lock = threading.Lock()

    def expire(self) -> None:
        "At the deadline: shut the socket down, which wakes a recv() blocked in another thread."
        with self.lock:
            self.fired = True
            if self.sock is not None:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:          # already closed: nothing is waiting on it
                    pass


_in_flight = threading.local()        # .watch: the _Watch of this thread's request, if any


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self, *args, **kwargs):
        watch = getattr(_in_flight, "watch", None)
        if watch is not None:
            with watch.lock:
                watch.sock = self.sock
            if watch.fired:
                watch.expire()
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    getresponse = _WatchedHTTPConnection.getresponse


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    "requests' adapter, its connections telling the session's watchdog which socket to cut."

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineSession(requests.Session):
    """A `requests.Session` whose requests end within `total_timeout` seconds, headers and body
    included: a watchdog timer shuts the request's socket down at the deadline, which ends a
    read blocked on a trickling server, and the request fails with `requests.ReadTimeout`.
    (Connecting, and requests through a proxy, are bounded per socket operation by the same
    number.) Its adapters have no urllib3 `Retry`: retries belong to `RetryingClient`.
    """

    def __init__(self, total_timeout: float):
        super().__init__()
        self.total_timeout = float(total_timeout)
        for prefix in ("http://", "https://"):
            self.mount(prefix, _DeadlineAdapter())

    def send(self, request: requests.PreparedRequest, **kwargs) -> requests.Response:
        if kwargs.get("stream"):
            raise ValueError("DeadlineSession reads whole bodies; stream=True is not supported")
        kwargs["timeout"] = self.total_timeout        # per connect and per read; the total is the watchdog's
        watch, outer = _Watch(), getattr(_in_flight, "watch", None)
        _in_flight.watch = watch
        timer = threading.Timer(self.total_timeout, watch.expire)
        timer.daemon = True
        timer.start()
        try:
            resp = super().send(request, **kwargs)   # stream=False: the body is read in here
        except requests.RequestException:
            if watch.fired:
                raise self._timeout(request) from None
            raise
        finally:
            timer.cancel()
            _in_flight.watch = outer
        if watch.fired:                              # a body cut short by the watchdog may look complete
            resp.close()
            raise self._timeout(request)
        return resp

    def _timeout(self, request: requests.PreparedRequest) -> requests.ReadTimeout:
        return requests.ReadTimeout(f"{request.url}: no complete answer within the total timeout of "
                                    f"{self.total_timeout:g}s", request=request)


class RetryingClient:
    """The bounded retry loop of one web service: `request(what, call)` runs `call` and

    - on `HTTPStatusError` 429 waits its Retry-After, unless that takes the total waited on 429s
      over `max_wait` seconds (over the client's life), then raises `rate_limit_error`;
    - on 5xx, timeouts, connection errors and `MalformedResponse` retries `retries` times with
      exponential backoff from `backoff` seconds, then raises `error`;
    - on any other status raises `error` at once (a 4xx will not get better by asking again).
    Other exceptions pass through: a caller raises its own clearer error inside `call`.
    """

    def __init__(self, service: str, max_wait: float = 60, retries: int = 3, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, error: type[WebServiceError] = WebServiceError,
                 rate_limit_error: type[WebServiceError] = RateLimitError, resume_hint: str = ""):
        self.service, self.max_wait, self.retries, self.backoff = service, max_wait, retries, backoff
        self.sleep, self.error, self.rate_limit_error, self.resume_hint = sleep, error, rate_limit_error, resume_hint
        self.n_requests = 0            # requests sent (a service's token requests not counted)
        self.rate_limit_waited = 0.0   # seconds slept on 429s so far; never more than max_wait

    def request(self, what: str, call: Callable[[], Any]) -> Any:
        failures = 0
        while True:
            try:
                self.n_requests += 1
                return call()
            except HTTPStatusError as e:
                if e.status == 429:
                    self._wait_for_rate_limit(what, retry_after(e.headers))
                    continue
                if e.status < 500:
                    raise self.error(f"{self.service} {what} failed with HTTP {e.status}: {e.message}") from None
                last = f"HTTP {e.status}"
            except (requests.Timeout, requests.ConnectionError) as e:
                last = f"{type(e).__name__} ({e})" if isinstance(e, requests.ReadTimeout) else type(e).__name__
            except (MalformedResponse, requests.exceptions.JSONDecodeError) as e:
                last = f"malformed response ({e})"
            failures += 1
            if failures > self.retries:
                raise self.error(f"{self.service} {what} failed {failures} times in a row; last: {last}")
            self.sleep(self.backoff * 2 ** (failures - 1))

    def _wait_for_rate_limit(self, what: str, delay: float) -> None:
        "Sleep `delay` seconds unless that takes the total 429 waiting over `max_wait`."
        delay = max(delay, 0.1)       # at least a little, so that the total grows and the loop ends
        if self.rate_limit_waited + delay > self.max_wait:
            raise self.rate_limit_error(
                f"{self.service} rate limit on {what}: asked to wait {delay:g}s more after {self.rate_limit_waited:g}s "
                f"already waited, over max_wait={self.max_wait:g}s. Finished batches are cached{self.resume_hint}; "
                "run again later to resume") from None
        self.sleep(delay)
        self.rate_limit_waited += delay
