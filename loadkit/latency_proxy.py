"""An HTTP proxy that answers each request a set time late: a remote S3's round trip,
in front of the S3 server on this machine.

moto answers in a few milliseconds of CPU on the same cores, so a benchmark against it
cannot show what a worker waits for against AWS S3 or a MinIO across the network: tens
of milliseconds a request, during which a worker process that waits does nothing. This
proxy holds each request ``delay`` seconds, then forwards it to the S3 server as it came
(the Host header too, which the request's signature covers) and sends the answer back:
an object put through it is stored only once the delay is over, as a PUT to a remote
store is stored only once it has arrived. It also records when each request started and
ended, so a test can tell which requests were in flight at the same time.

Hand-written because it only needs the standard library's HTTP server and client (one
forwarding connection per client connection), and no proxy package offers both a fixed
delay and a record of the requests.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# Headers about one connection, not the request: never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    started: float  # time.monotonic(), once the request's headers were read
    ended: float  # when its answer was ready to send: before the client could have it


class DelayingProxy:
    """Use as a context manager; ``url`` is its endpoint while it runs.

    ``delayed(method, path)`` picks the requests to hold (all of them by default).
    """

    def __init__(
        self,
        upstream: str,
        delay: float,
        *,
        delayed: Callable[[str, str], bool] = lambda method, path: True,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError("the upstream must be an http:// URL")
        self._upstream = (parts.hostname, parts.port or 80)
        self.delay = delay
        self._delayed = delayed
        self._lock = threading.Lock()
        self.requests: list[ProxiedRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="latency-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> DelayingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _record(self, request: ProxiedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a client of S3 expects

            def _forward(self) -> None:
                started = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                }
                if proxy._delayed(self.command, self.path):
                    time.sleep(proxy.delay)
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    answer_headers = [
                        (name, value)
                        for name, value in response.getheaders()
                        if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
                    ]
                    status, reason = response.status, response.reason
                finally:
                    upstream.close()
                # Recorded before the answer goes out: the client cannot have it, and send
                # its next request, before this time.
                proxy._record(ProxiedRequest(self.command, self.path, started, time.monotonic()))
                self.send_response(status, reason)
                for name, value in answer_headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass  # the benchmark's and the tests' output stays theirs

        return Handler
