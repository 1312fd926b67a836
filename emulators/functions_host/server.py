"""The HTTP side of the local Functions host: routing, CORS, limits, and calling the invoker.

One front for both invocation modes (invocation.py): it turns each request into an
:class:`HttpInvocation` as the real host builds its ``RpcHttp`` message (header names lower-cased,
repeated headers and query parameters joined with ",", the body as bytes, never decompressed) and
turns the :class:`HttpResult` back into HTTP. A function that fails gives an empty 500, as the
real host maps a failed invocation; everything the host itself refuses gets the app's JSON error
shape (front.py for what the HTTP parser refuses).
"""
from __future__ import annotations

import asyncio
import email.message
import hmac
import importlib
import importlib.util
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from emulators.functions_host.context import trace_context_from_headers
from emulators.functions_host.discovery import FunctionSpec, discover, route_prefix
from emulators.functions_host.front import FrontLimits, Protocol, Server, json_error
from emulators.functions_host.invocation import (HttpInvocation, HttpResult, InvocationFailed,
                                                 Invoker, LoadOutcome)

log = logging.getLogger("functions_host")

_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
_LOGGED_PATH_CHARS = 200


class Refused(Exception):
    """The host refuses the request (answered with the JSON error shape)."""

    def __init__(self, status: int, code: str, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.close = status, code, message, close


class ClientGone(Exception):
    """The client closed the connection (FIN or reset) while the host was reading its body.

    Nothing can be answered any more (asyncio closes the connection on the client's FIN), so the
    host drops the request without an answer, as Kestrel does on an unexpected end of request
    content (RFC 9112 section 6.3: the message is incomplete; close the connection). It logs one
    line, never a traceback or a 500.
    """

    def __init__(self, received: int, declared: Optional[int]) -> None:
        super().__init__(f"after {received} of {declared} body bytes" if declared is not None
                         else f"after {received} body bytes")
        self.received, self.declared = received, declared


@dataclass(frozen=True)
class BodyLimit:
    """A request body limit and the answer to a body over it (413 and an error code)."""

    max_bytes: int
    code: str
    status: int = 413

    def refuse(self, message: str) -> Refused:
        # The body is left unread: answer, then close (aiohttp discards what still arrives for
        # its lingering time first, so the client reads the answer rather than a reset).
        return Refused(self.status, self.code, message, close=True)


def app_body_limit(root: Path) -> Optional[BodyLimit]:
    """The app's own request body limit, when the app in ``root`` declares one.

    This app declares it in ``shared.config`` (``limits().max_body_bytes``, the ``MAX_BODY_BYTES``
    setting) and answers a body over it with ``shared.errors.PayloadTooLarge``; the host applies
    that same number and answer before reading the body. (The real host reads up to its own
    100 MB limit and leaves the rest to the app; see the package docstring.) None when the app has
    no such module; a malformed setting is left to the app, which answers 503 naming it.
    """
    root = root.resolve()
    try:
        package = importlib.util.find_spec("shared")
        if package is None or package.origin is None or \
                not Path(package.origin).resolve().is_relative_to(root) or \
                importlib.util.find_spec("shared.config") is None or \
                importlib.util.find_spec("shared.errors") is None:
            return None
        config = importlib.import_module("shared.config")
        refusal = importlib.import_module("shared.errors").PayloadTooLarge
        limits = config.limits()
    except Exception as exc:  # noqa: BLE001 - the app's own problem: it reports it per request
        log.warning("The app's request body limit is not applied by the host (%s)",
                    type(exc).__name__)
        return None
    return BodyLimit(int(limits.max_body_bytes), str(refusal.code), int(refusal.status))


def loggable_path(path: str) -> str:
    """A request path for the log: control characters escaped, long paths cut (never the query)."""
    text = path.encode("unicode_escape").decode("ascii") if _CONTROL.search(path) or \
        not path.isascii() else path
    return text if len(text) <= _LOGGED_PATH_CHARS else text[:_LOGGED_PATH_CHARS] + "..."


def count_form_fields(content_type: str, body: bytes) -> int:
    """How many fields a form body would parse into (0 when it is not a form)."""
    msg = email.message.Message()
    msg["content-type"] = content_type
    media = msg.get_content_type()
    if media == "application/x-www-form-urlencoded":
        return body.count(b"&") + 1 if body else 0
    if media == "multipart/form-data":
        boundary = msg.get_param("boundary")
        if isinstance(boundary, str) and boundary:
            return max(0, body.count(b"--" + boundary.encode("latin-1", "replace")) - 1)
    return 0


class FunctionsHost:
    """Serves the HTTP-triggered functions of one app folder through an :class:`Invoker`."""

    def __init__(self, root: Path, port: int, invoker: Invoker, *,
                 cors: Optional[List[str]] = None, cors_credentials: bool = False,
                 require_keys: bool = False, limits: Optional[FrontLimits] = None,
                 invocation_id_header: str = "", function_key: Optional[str] = None) -> None:
        self.root = root.resolve()
        self.port = port
        self.invoker = invoker
        self.prefix = route_prefix(self.root)
        self.cors = cors or []
        self.cors_credentials = cors_credentials
        self.require_keys = require_keys
        # --enforce-keys: the one key function/admin-level routes accept (None: not enforced)
        self.function_key = function_key
        self.limits = limits or FrontLimits.from_env()
        # A test knob (FUNCTIONS_HOST_INVOCATION_ID_HEADER): take the invocation id from this
        # request header when it holds a UUID, so two hosts can be compared answer for answer.
        self.invocation_id_header = invocation_id_header.lower()
        self.functions: List[LoadOutcome] = []
        self.app_limit: Optional[BodyLimit] = None

    async def start(self) -> None:
        """Load every function of the app through the invoker, then read the app's body limit
        (after loading: the app's root is on ``sys.path`` then, as the functions import it)."""
        self.functions = await self.invoker.load(discover(self.root))
        self.app_limit = app_body_limit(self.root)
        limit = self.body_limit()
        log.info("Request bodies over %d bytes are refused before they are read (%s)",
                 limit.max_bytes, "the app's limit" if limit is self.app_limit else "the host's limit")

    def body_limit(self) -> BodyLimit:
        """The smaller of the host's limit (Kestrel's 100 MB) and the app's own, if any."""
        own = BodyLimit(self.limits.max_body_bytes, "request_entity_too_large")
        app = self.app_limit
        return app if app is not None and app.max_bytes <= own.max_bytes else own

    async def close(self) -> None:
        await self.invoker.close()

    # -- presentation -------------------------------------------------------------------------
    def url(self, spec: FunctionSpec, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}{spec.url_path(self.prefix)}"

    def banner(self) -> str:
        """The function list ``func start`` prints, and which worker runs them."""
        lines = ["", f"Worker: {self.invoker.describe()}", "", "Functions:", ""]
        for f in self.functions:
            lines.append(f"\t{f.spec.name}: [{','.join(f.spec.methods)}] {self.url(f.spec)}")
            if f.error:
                lines.append(f"\t\tERROR: {f.error}")
        if not self.functions:
            lines.append("\tNo HTTP-triggered functions found in " + str(self.root))
        lines.append("")
        return "\n".join(lines)

    def make_server(self) -> Server:
        return Server(self.handle, limits=self.limits)

    # -- CORS (ASP.NET Core CORS middleware as Core Tools configures it) ----------------------
    def _origin_allowed(self, origin: str) -> bool:
        return "*" in self.cors or origin.rstrip("/").lower() in (
            o.rstrip("/").lower() for o in self.cors)

    def _cors_headers(self, origin: Optional[str]) -> Dict[str, str]:
        if not origin or not self.cors or not self._origin_allowed(origin):
            return {}
        if "*" in self.cors and not self.cors_credentials:
            return {"Access-Control-Allow-Origin": "*"}
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if self.cors_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    def _preflight(self, request: web.BaseRequest) -> Optional[web.Response]:
        origin = request.headers.get("Origin")
        if (request.method != "OPTIONS" or not origin or not self.cors
                or "Access-Control-Request-Method" not in request.headers):
            return None
        headers = self._cors_headers(origin)
        if headers:
            headers["Access-Control-Allow-Methods"] = request.headers["Access-Control-Request-Method"]
            req_headers = request.headers.get("Access-Control-Request-Headers")
            if req_headers:
                headers["Access-Control-Allow-Headers"] = req_headers
        return web.Response(status=204, headers=headers)

    # -- routing ----------------------------------------------------------------------------
    def _match(self, path: str, method: str
               ) -> Tuple[Optional[LoadOutcome], Dict[str, str], List[str]]:
        """The function for path+method; else the first path match and the methods it allows."""
        path = path.strip("/")
        first: Optional[Tuple[LoadOutcome, Dict[str, str]]] = None
        allowed: List[str] = []
        for f in self.functions:
            params = f.spec.route_template.match(path)
            if params is None:
                continue
            if method in f.spec.methods:
                return f, params, list(f.spec.methods)
            first = first or (f, params)
            allowed += [m for m in f.spec.methods if m not in allowed]
        if first is None:
            return None, {}, []
        return first[0], first[1], allowed

    def _check_request(self, request: web.BaseRequest) -> None:
        """Refuse what no function should see (Kestrel refuses the same with 400 or 431): control
        characters or dot segments in the path, an invalid Host, header values that are not
        ASCII, header blocks over the total size."""
        raw_path = request.raw_path.split("?", 1)[0]
        decoded = unquote(raw_path, errors="replace")
        if _CONTROL.search(decoded) or _CONTROL.search(request.path):
            raise Refused(400, "bad_request", "the request path contains a control character")
        if any(seg in (".", "..") for seg in decoded.replace("\\", "/").split("/")):
            raise Refused(400, "bad_request", "the request path contains '.' or '..' segments")
        try:
            str(request.url)
        except ValueError:
            raise Refused(400, "bad_request", "invalid Host header") from None
        for _, value in request.raw_headers:
            if not value.isascii() or _CONTROL_BYTES.search(value.replace(b"\t", b" ")):
                raise Refused(400, "bad_request", "a request header value is not printable ASCII")
        size = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
        if size > self.limits.max_header_bytes:
            raise Refused(431, "request_header_fields_too_large",
                          f"the request headers are larger than {self.limits.max_header_bytes} "
                          "bytes in all")

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        """The whole body, within the size limit and Kestrel's minimum data rate.

        A declared ``Content-Length`` over the limit is refused before any of the body is read;
        a chunked body as soon as what arrived passes the limit (never buffered beyond it).
        """
        limit, rate = self.body_limit(), self.limits.min_body_rate
        length = request.content_length
        if length is not None and length > limit.max_bytes:
            raise limit.refuse(f"the request body is {length} bytes; the limit is "
                               f"{limit.max_bytes}")
        if request.transport is None and not request.content.is_eof():
            # the client left before this handler ran (aiohttp tells only a running handler)
            raise ClientGone(request.content.total_bytes, length)
        if request.version >= (1, 1) and \
                request.headers.get("Expect", "").strip().lower() == "100-continue":
            # What aiohttp's router (not used here) and Kestrel do once the body is wanted.
            try:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            except ConnectionError:
                raise ClientGone(request.content.total_bytes, length) from None
            request.writer.output_size = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        chunks: List[bytes] = []
        total = 0
        while True:
            timeout = None
            if rate > 0:
                timeout = start + max(self.limits.body_grace, (total + 1) / rate) - loop.time()
                if timeout <= 0:
                    raise self._too_slow()
            try:
                chunk = await asyncio.wait_for(request.content.readany(), timeout)
            except asyncio.TimeoutError:
                raise self._too_slow() from None
            except BadHttpMessage:
                raise Refused(400, "bad_request", "malformed request body framing",
                              close=True) from None
            except ConnectionError:  # aiohttp's "Connection lost" (FIN) or a reset
                raise ClientGone(request.content.total_bytes, length) from None
            if not chunk:
                break
            total += len(chunk)
            if total > limit.max_bytes:
                raise limit.refuse(f"the request body is over the limit of {limit.max_bytes} "
                                   "bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_slow(self) -> Refused:
        return Refused(408, "request_timeout",
                       f"the request body arrived slower than {self.limits.min_body_rate:g} "
                       "bytes/s", close=True)

    def _builtin(self, request: web.BaseRequest) -> Optional[web.Response]:
        path = request.path.rstrip("/").lower()
        if path == "" and request.method in ("GET", "HEAD"):
            return web.Response(text="Your Functions 4.0 app is up and running (local host)\n")
        if path == "/admin/host/status":
            return web.json_response({"state": "Running", "version": "local",
                                      "mode": self.invoker.mode,
                                      "processUptime": int(time.monotonic() * 1000)})
        if path == "/admin/functions":
            return web.json_response([{"name": f.spec.name, "invoke_url_template": self.url(f.spec),
                                       "isDisabled": False, "methods": list(f.spec.methods)}
                                      for f in self.functions])
        return None

    def _key_accepted(self, spec: FunctionSpec, request: web.BaseRequest) -> bool:
        """Whether the request may call ``spec``: anonymous routes always; function/admin ones
        with any key or none by default (Core Tools), a non-empty key with ``require_keys``, the
        host's key with ``function_key`` (the x-functions-key header, else ?code=, as the real host
        reads them)."""
        if spec.auth_level not in ("function", "admin"):
            return True
        given = request.headers.get("x-functions-key") or request.query.get("code") or ""
        if self.function_key is not None:
            return hmac.compare_digest(given.encode("utf-8", "replace"), self.function_key.encode("utf-8"))
        return bool(given) or not self.require_keys

    def key_notice(self) -> str:
        """The startup line that says whether keys are checked (Core Tools does not check them)."""
        keyed = [f.spec.name for f in self.functions if f.spec.auth_level in ("function", "admin")]
        if self.function_key is not None:
            return (f"Function keys are enforced on {len(keyed)} function(s) with authLevel function/admin "
                    "(--enforce-keys): pass the x-functions-key header or ?code=; anonymous routes stay open.")
        if self.require_keys:
            return ("Function keys are required but not checked (--require-keys): any non-empty "
                    "x-functions-key or ?code= is accepted.")
        return (f"Function keys are not checked locally (as with Core Tools): the {len(keyed)} function(s) "
                "with authLevel function/admin accept any key or none. --enforce-keys checks them.")

    def _invocation_id(self, request: web.BaseRequest) -> str:
        if self.invocation_id_header:
            given = request.headers.get(self.invocation_id_header, "")
            if _UUID.match(given):
                return given.lower()
        return str(uuid.uuid4())

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if isinstance(request.protocol, Protocol):
            request.protocol.request_started()
        started = time.perf_counter()
        invocation_id = self._invocation_id(request)
        origin = request.headers.get("Origin")
        fn: Optional[LoadOutcome] = None
        status, invoked = 500, False
        gone: Optional[ClientGone] = None
        try:
            self._check_request(request)
            resp = self._preflight(request)
            if resp is None:
                fn, route_params, methods = self._match(request.path, request.method)
                if fn is None:
                    resp = self._builtin(request) or json_error(
                        404, "not_found", "no function is served at this path")
                elif request.method not in methods:
                    resp = json_error(405, "method_not_allowed",
                                      f"{request.method} is not allowed for function "
                                      f"'{fn.spec.name}'; allowed: {', '.join(methods)}",
                                      {"Allow": ", ".join(methods)})
                elif not self._key_accepted(fn.spec, request):
                    resp = json_error(401, "unauthorized",
                                      f"function '{fn.spec.name}' has authLevel "
                                      f"'{fn.spec.auth_level}': pass ?code=<key> or the "
                                      "x-functions-key header")
                else:
                    body = await self._read_body(request)
                    fields = count_form_fields(request.headers.get("Content-Type", ""), body)
                    if fields > self.limits.max_form_fields:
                        raise Refused(413, "request_entity_too_large",
                                      f"the form has more than {self.limits.max_form_fields} fields")
                    invoked = True
                    resp = await self._invoke(fn.spec, request, route_params, body, invocation_id)
        except Refused as exc:
            resp = json_error(exc.status, exc.code, exc.message)
            if exc.close:
                resp.force_close()
        except ClientGone as exc:
            gone = exc
            resp = web.Response(status=400)  # aiohttp finds the connection closed: never sent
            resp.force_close()
        except InvocationFailed as exc:
            log.error("Executed 'Functions.%s' (Failed, Id=%s)\n%s",
                      fn.spec.name if fn else "?", invocation_id, exc.detail)
            resp = web.Response(status=500)
        except Exception:  # noqa: BLE001 - the host answers 500 and logs, never a traceback
            log.exception("Host error on %s %s (Id=%s)", request.method,
                          loggable_path(request.path), invocation_id)
            resp = web.Response(status=500)
        for k, v in self._cors_headers(origin).items():
            if k not in resp.headers:
                resp.headers[k] = v
        status = resp.status
        ms = (time.perf_counter() - started) * 1000
        if gone is not None:
            log.info("Request %s %s: the client closed the connection %s (not answered)",
                     request.method, loggable_path(request.path), gone)
        elif invoked and fn is not None:
            log.info("Executed 'Functions.%s' (%s, Id=%s, Duration=%.0fms) %s %s -> %d",
                     fn.spec.name, "Succeeded" if status < 500 else "Failed", invocation_id, ms,
                     request.method, loggable_path(request.path), status)
        else:
            log.info("Request %s %s -> %d (no function executed)", request.method,
                     loggable_path(request.path), status)
        return resp

    async def _invoke(self, spec: FunctionSpec, request: web.BaseRequest,
                      route_params: Dict[str, str], body: bytes, invocation_id: str
                      ) -> web.Response:
        headers: Dict[str, str] = {}
        for k, v in request.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]},{v}" if k in headers else v
        query: Dict[str, str] = {}
        for k, v in request.query.items():
            query[k] = f"{query[k]},{v}" if k in query else v
        trace = trace_context_from_headers(request.headers)
        inv = HttpInvocation(invocation_id=invocation_id, method=request.method,
                             url=str(request.url), headers=headers, query=query,
                             route_params=route_params, body=body,
                             trace_parent=trace.trace_parent, trace_state=trace.trace_state)
        result = await self.invoker.invoke(spec, inv)
        return _to_response(result)


def _to_response(result: HttpResult) -> web.Response:
    resp = web.Response(status=result.status, body=result.body)
    for name, value in result.headers:
        if name.lower() not in _HOP_BY_HOP:
            resp.headers.add(name, value)
    return resp


def describe(host: FunctionsHost) -> str:
    """JSON summary of the routes (for tooling)."""
    return json.dumps({f.spec.name: {"url": host.url(f.spec), "methods": list(f.spec.methods),
                                      "authLevel": f.spec.auth_level, "error": f.error}
                       for f in host.functions}, indent=2)
