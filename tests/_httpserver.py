"""A scripted loopback HTTP server for download tests (127.0.0.1, port 0, its own thread).

Request k gets ``script[k]`` (the last reply repeats). The server records each request's path
and headers, and shuts itself down after ``lifetime`` seconds even if a test never closes it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``honor_range``: answer ``Range: bytes=N-`` on a 200 reply with 206 and the tail of ``body``.
    ``cut_after``: send only this many body bytes (Content-Length stays complete), then close.
    ``delay``: seconds to wait before answering.
    """

    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    honor_range: bool = True
    cut_after: int | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Seen:
    """A request the server received."""

    path: str
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that time out close their end early; that is expected here, not an error."""


class _Handler(BaseHTTPRequestHandler):
    timeout = 5.0

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        owner: LoopbackServer = self.server.owner  # type: ignore[attr-defined]
        reply = owner._next(Seen(self.path, dict(self.headers.items())))
        time.sleep(reply.delay)
        body, status, extra = reply.body, reply.status, {}
        wanted = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if wanted and reply.honor_range and status == 200:
            start = int(wanted.group(1))
            extra["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            body, status = body[start:], 206
        self.send_response(status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body if reply.cut_after is None else body[: reply.cut_after])
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep test output quiet."""


class LoopbackServer:
    """Context manager serving ``script`` on 127.0.0.1 at a free port."""

    def __init__(self, script: Sequence[Reply], *, lifetime: float = 20.0) -> None:
        if not script:
            raise ValueError("script needs at least one Reply")
        self.script = list(script)
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(lifetime, self._server.shutdown)
        self._timer.daemon = True

    def _next(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            return self.script[min(len(self.requests), len(self.script)) - 1]

    def url(self, path: str = "/file") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
