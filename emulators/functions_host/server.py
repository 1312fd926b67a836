"""The HTTP side of the local Functions host: routing, CORS, limits, invocation, responses.

Invocation follows the Python worker (azure-functions-python-worker, v1 programming model):
each function is imported once as ``__app__.<Folder>`` (or ``__app__.<Folder>.<script>`` for a
``scriptFile``) with the app root on ``sys.path``; parameters are bound by name (the trigger
binding's ``name`` gets the ``azure.functions.HttpRequest``, ``context`` gets the Context, named
``http`` output bindings get an ``Out``); sync functions run in a thread pool, async ones on the
event loop; the result is encoded with azure.functions' own ``HttpResponseConverter``.
"""
from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import os
import sys
import threading
import time
import traceback
import types
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import azure.functions as func
from aiohttp import web
from azure.functions.http import HttpResponseConverter

from emulators.functions_host.context import (Context, Out, RetryContext,
                                              trace_context_from_headers)
from emulators.functions_host.discovery import (MAX_REQUEST_BODY_BYTES, FunctionSpec,
                                                discover, route_prefix)

log = logging.getLogger("functions_host")

_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class LoadedFunction:
    """A function spec with its imported entry point (or the import error)."""

    spec: FunctionSpec
    fn: Optional[Callable[..., Any]]
    error: Optional[str]
    is_async: bool = False
    wants_context: bool = False
    out_params: Tuple[str, ...] = ()


def _ensure_app_package(root: Path) -> None:
    """Make ``__app__`` the app root package, as the worker does, and put the root on sys.path."""
    root_s = str(root)
    if root_s not in sys.path:
        sys.path.insert(0, root_s)
    pkg = sys.modules.get("__app__")
    if pkg is None or list(getattr(pkg, "__path__", [])) != [root_s]:
        pkg = types.ModuleType("__app__")
        pkg.__path__ = [root_s]  # type: ignore[attr-defined]
        sys.modules["__app__"] = pkg


def load_function(root: Path, spec: FunctionSpec) -> LoadedFunction:
    """Import a function's script once and check its parameters against function.json."""
    _ensure_app_package(root)
    try:
        rel = spec.script_file.relative_to(root)
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = importlib.import_module(".".join(["__app__", *parts]))
        fn = getattr(module, spec.entry_point, None)
        if fn is None or not callable(fn):
            raise AttributeError(f"the script {rel} has no function '{spec.entry_point}'")
        declared = {b.get("name") for b in spec.bindings}
        params = inspect.signature(fn).parameters
        outs = tuple(p for p in params if p in declared and p != spec.trigger_name
                     and p != "$return")
        unknown = [p for p in params if p not in declared and p != "context"]
        if unknown:
            raise TypeError("the following parameters are declared in Python but not in "
                            f"function.json: {set(unknown)!r}")
        if spec.trigger_name not in params:
            raise TypeError(f"the trigger binding '{spec.trigger_name}' is not a parameter of "
                            f"{spec.entry_point}()")
        return LoadedFunction(spec, fn, None, inspect.iscoroutinefunction(fn), "context" in params,
                              outs)
    except Exception as exc:  # noqa: BLE001 - reported per function, like the host
        log.error("Worker failed to index function %s: %s\n%s", spec.name, exc,
                  traceback.format_exc())
        return LoadedFunction(spec, None, f"{type(exc).__name__}: {exc}")


def _datum_to_response(datum: Any) -> web.Response:
    """Turn HttpResponseConverter's datum into an aiohttp response."""
    if datum.type == "string":
        return web.Response(status=200, body=datum.value.encode("utf-8"),
                            headers={"Content-Type": "text/plain; charset=utf-8"})
    value = datum.value
    status = int(value["status_code"].value)
    resp = web.Response(status=status, body=value["body"].value or b"")
    for name, h in value["headers"].items():
        if name.lower() not in _HOP_BY_HOP:
            resp.headers.add(name, h.value)
    for cookie in value.get("cookies") or []:
        for morsel in cookie.values():
            resp.headers.add("Set-Cookie", morsel.OutputString())
    return resp


def _json_error(status: int, code: str, message: str, headers: Optional[Dict[str, str]] = None
                ) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers=headers)


class FunctionsHost:
    """An aiohttp application serving the HTTP-triggered functions of one app folder."""

    def __init__(self, root: Path, port: int, *, cors: Optional[List[str]] = None,
                 cors_credentials: bool = False, require_keys: bool = False,
                 max_body_bytes: int = MAX_REQUEST_BODY_BYTES,
                 threads: Optional[int] = None) -> None:
        self.root = root.resolve()
        self.port = port
        self.prefix = route_prefix(self.root)
        self.cors = cors or []
        self.cors_credentials = cors_credentials
        self.require_keys = require_keys
        # FUNCTIONS_HOST_MAX_BODY_BYTES: a test knob only (the real host's limit is fixed at 100 MB)
        env_limit = os.environ.get("FUNCTIONS_HOST_MAX_BODY_BYTES", "")
        self.max_body_bytes = int(env_limit) if env_limit.isdigit() else max_body_bytes
        env_threads = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "")
        workers = threads or (int(env_threads) if env_threads.isdigit() and int(env_threads) > 0
                              else min(32, (os.cpu_count() or 1) + 4))
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="func")
        self.tls = threading.local()
        self.functions: List[LoadedFunction] = [load_function(self.root, s)
                                                for s in discover(self.root)]

    # -- presentation -------------------------------------------------------------------------
    def url(self, spec: FunctionSpec, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}{spec.url_path(self.prefix)}"

    def banner(self) -> str:
        """The function list ``func start`` prints."""
        lines = ["", "Functions:", ""]
        for f in self.functions:
            methods = ",".join(f.spec.methods)
            lines.append(f"\t{f.spec.name}: [{methods}] {self.url(f.spec)}")
            if f.error:
                lines.append(f"\t\tERROR: {f.error}")
        if not self.functions:
            lines.append("\tNo HTTP-triggered functions found in " + str(self.root))
        lines.append("")
        return "\n".join(lines)

    # -- aiohttp -----------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        # client_max_size is a backstop; the limit is enforced (with a clear 413) in _read_body.
        app = web.Application(client_max_size=self.max_body_bytes + 1)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _shutdown(self, _app: web.Application) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

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

    def _preflight(self, request: web.Request) -> Optional[web.Response]:
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
               ) -> Tuple[Optional[LoadedFunction], Dict[str, str], List[str]]:
        """The function for path+method; else the first path match and the methods it allows."""
        path = path.strip("/")
        first: Optional[Tuple[LoadedFunction, Dict[str, str]]] = None
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

    async def _read_body(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body_bytes, actual_size=length)
        chunks: List[bytes] = []
        total = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total > self.max_body_bytes:
                raise web.HTTPRequestEntityTooLarge(max_size=self.max_body_bytes, actual_size=total)
            chunks.append(chunk)
        return b"".join(chunks)

    def _builtin(self, request: web.Request) -> Optional[web.Response]:
        path = request.path.rstrip("/").lower()
        if path == "" and request.method in ("GET", "HEAD"):
            return web.Response(text="Your Functions 4.0 app is up and running (local host)\n")
        if path == "/admin/host/status":
            return web.json_response({"state": "Running", "version": "local",
                                      "processUptime": int(time.monotonic() * 1000)})
        if path == "/admin/functions":
            return web.json_response([{"name": f.spec.name, "invoke_url_template": self.url(f.spec),
                                       "isDisabled": False, "methods": list(f.spec.methods)}
                                      for f in self.functions])
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        invocation_id = str(uuid.uuid4())
        origin = request.headers.get("Origin")
        fn: Optional[LoadedFunction] = None
        status, outcome, invoked = 500, "Failed", False
        try:
            resp = self._preflight(request)
            if resp is None:
                fn, route_params, methods = self._match(request.path, request.method)
                if fn is None:
                    resp = self._builtin(request) or web.Response(status=404)
                elif request.method not in methods:
                    resp = _json_error(405, "method_not_allowed",
                                       f"{request.method} is not allowed for function "
                                       f"'{fn.spec.name}'; allowed: {', '.join(methods)}",
                                       {"Allow": ", ".join(methods)})
                elif self.require_keys and fn.spec.auth_level in ("function", "admin") and not (
                        request.query.get("code") or request.headers.get("x-functions-key")):
                    resp = _json_error(401, "unauthorized",
                                       f"function '{fn.spec.name}' has authLevel "
                                       f"'{fn.spec.auth_level}': pass ?code=<key> or the "
                                       "x-functions-key header")
                else:
                    body = await self._read_body(request)
                    invoked = True
                    resp = await self._invoke(fn, request, route_params, body, invocation_id)
            for k, v in self._cors_headers(origin).items():
                if k not in resp.headers:
                    resp.headers[k] = v
            status = resp.status
            outcome = "Succeeded" if status < 500 else "Failed"
            return resp
        except web.HTTPRequestEntityTooLarge:
            status, outcome = 413, "Failed"
            resp = _json_error(413, "request_entity_too_large",
                               f"request body larger than {self.max_body_bytes} bytes")
            resp.headers.update(self._cors_headers(origin))
            return resp
        except Exception:  # noqa: BLE001 - the host answers 500 and logs, never a traceback
            status = 500
            log.error("Executed 'Functions.%s' (Failed, Id=%s)\n%s",
                      fn.spec.name if fn else "?", invocation_id, traceback.format_exc())
            resp = web.Response(status=500)
            resp.headers.update(self._cors_headers(origin))
            return resp
        finally:
            ms = (time.perf_counter() - started) * 1000
            if invoked and fn is not None:
                log.info("Executed 'Functions.%s' (%s, Id=%s, Duration=%.0fms) %s %s -> %d",
                         fn.spec.name, outcome, invocation_id, ms, request.method,
                         request.path_qs, status)
            else:
                log.info("Request %s %s -> %d (no function executed)", request.method,
                         request.path_qs, status)

    async def _invoke(self, fn: LoadedFunction, request: web.Request, route_params: Dict[str, str],
                      body: bytes, invocation_id: str) -> web.Response:
        if fn.fn is None:
            raise RuntimeError(f"function {fn.spec.name} failed to load: {fn.error}")
        headers: Dict[str, str] = {}
        for k, v in request.headers.items():
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        params: Dict[str, str] = {}
        for k, v in request.query.items():
            params[k] = f"{params[k]},{v}" if k in params else v
        req = func.HttpRequest(request.method, str(request.url), headers=headers, params=params,
                               route_params=route_params, body=body)
        kwargs: Dict[str, Any] = {fn.spec.trigger_name: req}
        if fn.wants_context:
            kwargs["context"] = Context(fn.spec.name, str(fn.spec.directory), invocation_id,
                                        self.tls, trace_context_from_headers(request.headers),
                                        RetryContext())
        outs = {name: Out() for name in fn.out_params}
        kwargs.update(outs)
        if fn.is_async:
            result = await fn.fn(**kwargs)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self.executor, self._call_sync, fn.fn, kwargs,
                                                invocation_id)
        if fn.spec.return_binding and fn.spec.return_binding != "$return" \
                and fn.spec.return_binding in outs:
            result = outs[fn.spec.return_binding].get()
        if result is None:
            return web.Response(status=204)
        if isinstance(result, bytes):
            result = func.HttpResponse(result, mimetype="application/octet-stream")
        if not isinstance(result, (str, func.HttpResponse)):
            raise TypeError(f"function {fn.spec.name} returned {type(result).__name__}, "
                            "expected azure.functions.HttpResponse or str")
        datum = HttpResponseConverter.encode(result, expected_type=None)
        return _datum_to_response(datum)

    def _call_sync(self, fn: Callable[..., Any], kwargs: Dict[str, Any], invocation_id: str) -> Any:
        self.tls.invocation_id = invocation_id
        return fn(**kwargs)


def describe(host: FunctionsHost) -> str:
    """JSON summary of the routes (for tooling)."""
    return json.dumps({f.spec.name: {"url": host.url(f.spec), "methods": list(f.spec.methods),
                                      "authLevel": f.spec.auth_level, "error": f.error}
                       for f in host.functions}, indent=2)
