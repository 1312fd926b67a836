"""The connection side of the local host's HTTP front: limits, timeouts, and JSON for what it refuses.

aiohttp's low-level server parses HTTP; this module gives it Kestrel's limits (the web server of
the real Functions host) and answers every request it refuses with the app's error shape
``{"error": {"code", "message"}}`` instead of aiohttp's plain-text pages (which echo the
offending input back, image data in a URL included):

====================================  ======  =====================================
request                               status  code
====================================  ======  =====================================
request line over 8 KB                414     ``uri_too_long``
a header over the limit, > 100         431     ``request_header_fields_too_large``
headers, headers over 32 KB in all
malformed request line, unknown        400     ``bad_request``
method token, bad header or framing
headers not complete within            408     ``request_timeout`` (then closed)
``headers_timeout`` of the first byte
body slower than ``min_body_rate``    408     ``request_timeout`` (then closed)
after ``body_grace`` seconds
====================================  ======  =====================================

An idle kept-alive connection is closed after ``keepalive_timeout``. The defaults are Kestrel's
(RequestHeadersTimeout 30 s, KeepAliveTimeout 130 s, MinRequestBodyDataRate 240 B/s after a 5 s
grace, MaxRequestLineSize 8 KB, MaxRequestHeadersTotalSize 32 KB, MaxRequestHeaderCount 100);
each is a command-line option and an environment variable so tests can use short ones.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, fields
from typing import Any, Dict, Optional, Tuple

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from emulators.functions_host.discovery import MAX_REQUEST_BODY_BYTES

log = logging.getLogger("functions_host")


@dataclass(frozen=True)
class FrontLimits:
    """Size and time limits of the HTTP front (defaults: Kestrel's, as the Functions host sets it)."""

    max_body_bytes: int = MAX_REQUEST_BODY_BYTES
    max_request_line: int = 8192
    max_header_bytes: int = 32768
    max_headers: int = 100
    headers_timeout: float = 30.0
    keepalive_timeout: float = 130.0
    min_body_rate: float = 240.0
    body_grace: float = 5.0
    max_form_fields: int = 1024

    @classmethod
    def from_env(cls, environ: Optional[Dict[str, str]] = None, **overrides: Any) -> "FrontLimits":
        """Defaults, then ``FUNCTIONS_HOST_<FIELD>`` variables, then non-None ``overrides``."""
        environ = os.environ if environ is None else environ
        values: Dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f"FUNCTIONS_HOST_{f.name.upper()}", "").strip()
            kind = int if f.type in ("int", int) else float
            if raw:
                try:
                    values[f.name] = kind(raw)
                except ValueError:
                    raise ValueError(f"FUNCTIONS_HOST_{f.name.upper()} must be a number") from None
            if overrides.get(f.name) is not None:
                values[f.name] = kind(overrides[f.name])
        return cls(**values)


def json_error(status: int, code: str, message: str,
               headers: Optional[Dict[str, str]] = None) -> web.Response:
    """The app's error shape."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers=headers)


def _raw_json_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error response (for answers written outside a request's life)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return head + body


def classify_parse_error(exc: Optional[BaseException], limits: FrontLimits
                         ) -> Tuple[int, str, str]:
    """(status, code, message) for a request the parser refused; never echoes the input."""
    if isinstance(exc, LineTooLong):
        limit = str(exc.args[1]) if len(exc.args) > 1 else ""
        if limit == str(limits.max_request_line):
            return 414, "uri_too_long", f"the request line is longer than {limits.max_request_line} bytes"
        return (431, "request_header_fields_too_large",
                f"a request header is longer than {limits.max_header_bytes} bytes")
    text = str(getattr(exc, "message", "") or exc or "")
    if "too many headers" in text.lower():
        return (431, "request_header_fields_too_large",
                f"more than {limits.max_headers} request headers")
    if type(exc).__name__ == "BadHttpMethod":
        return 400, "bad_request", "unsupported HTTP method"
    return 400, "bad_request", "malformed HTTP request"


class Protocol(RequestHandler):
    """aiohttp's request handler with header/idle timeouts and JSON parse-error answers."""

    def __init__(self, manager: Any, *, limits: FrontLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.limits = limits
        self._timer: Optional[asyncio.TimerHandle] = None
        self._in_request = False
        self._pending_bytes = False  # bytes of a request whose headers are not complete yet

    # -- idle and headers timeouts (Kestrel's model) ------------------------------------------
    # No byte of a next request yet: the connection is idle and closes silently after
    # keepalive_timeout. From its first byte until its headers are complete: headers_timeout, then
    # a 408. (aiohttp's own keep-alive timer is set later than both, as a backstop.)
    def _arm(self, seconds: float) -> None:
        self._disarm()
        if seconds > 0:
            self._timer = self._loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        transport = self.transport
        if self._in_request or transport is None or transport.is_closing():
            return
        if self._pending_bytes:
            log.info("Request refused: 408 request_timeout (headers not complete within %g s)",
                     self.limits.headers_timeout)
            transport.write(_raw_json_error(
                408, "Request Timeout", "request_timeout",
                f"the request headers did not arrive within {self.limits.headers_timeout:g} s"))
        self.force_close()
        transport.close()

    def request_started(self) -> None:
        """The front calls this when a request's headers are complete."""
        self._disarm()
        self._in_request = True
        self._pending_bytes = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self.limits.keepalive_timeout)

    def data_received(self, data: bytes) -> None:
        if data and not self._in_request and not self._pending_bytes:
            self._pending_bytes = True
            self._arm(self.limits.headers_timeout)
        super().data_received(data)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._disarm()
        super().connection_lost(exc)

    async def finish_response(self, request: Any, resp: Any, start_time: Any) -> Any:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._in_request = False
            if self.transport is not None:  # not after the client left (connection_lost)
                self._arm(self.limits.keepalive_timeout)

    # -- requests the parser refused ----------------------------------------------------------
    def handle_error(self, request: Any, status: int = 500, exc: Optional[BaseException] = None,
                     message: Optional[str] = None) -> web.StreamResponse:
        self.request_started()
        if status != 400 or not (exc is None or isinstance(exc, BadHttpMessage)):
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        status, code, text = classify_parse_error(exc, self.limits)
        log.info("Request refused: %d %s (%s)", status, code, type(exc).__name__)
        resp = json_error(status, code, text)
        resp.force_close()
        return resp


class Server(web.Server):
    """aiohttp's low-level server, creating :class:`Protocol` connections with the given limits."""

    def __init__(self, handler: Any, *, limits: FrontLimits, **kwargs: Any) -> None:
        super().__init__(handler,
                         keepalive_timeout=limits.keepalive_timeout + limits.headers_timeout + 5,
                         max_line_size=limits.max_request_line,
                         max_field_size=limits.max_header_bytes,
                         max_headers=limits.max_headers,
                         auto_decompress=False,  # Kestrel passes Content-Encoding'd bodies as they are
                         access_log=None, **kwargs)
        self.limits = limits

    def __call__(self) -> RequestHandler:
        return Protocol(self, loop=self._loop, limits=self.limits, **self._kwargs)
