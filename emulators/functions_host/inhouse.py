"""The in-house invocation path (Python < 3.13, where Microsoft's worker library does not install).

It follows the Python worker (azure-functions-python-worker, v1 programming model) and is held to
the worker-backed path by tests/test_host_modes.py: each function is imported once as
``__app__.<Folder>`` (or ``__app__.<Folder>.<script>`` for a ``scriptFile``) with the app root on
``sys.path``; parameters are bound by name (the trigger binding's ``name`` gets the
``azure.functions.HttpRequest``, ``context`` the Context, named ``http`` output bindings an
``Out``); sync functions run in a thread pool (``PYTHON_THREADPOOL_THREAD_COUNT``), async ones on
the event loop; the result is encoded with azure.functions' own ``HttpResponseConverter``, and
what the worker refuses (no return binding but a value, a return value the HTTP binding cannot
encode, ``None`` for ``$return``) fails the same way.
"""
from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import sys
import threading
import traceback
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import azure.functions as func
from azure.functions.http import HttpResponseConverter

from emulators.functions_host.context import Context, Out, RetryContext, TraceContext
from emulators.functions_host.discovery import FunctionSpec
from emulators.functions_host.invocation import (HttpInvocation, HttpResult, InvocationFailed,
                                                 Invoker, LoadOutcome, http_result,
                                                 parse_cookie_expires, parse_cookie_max_age,
                                                 render_set_cookie, text_result)

log = logging.getLogger("functions_host")


@dataclass
class _Loaded:
    fn: Callable[..., Any]
    is_async: bool
    wants_context: bool
    out_params: Tuple[str, ...]


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


def _import(root: Path, spec: FunctionSpec) -> _Loaded:
    """Import a function's script and check its parameters against function.json."""
    _ensure_app_package(root)
    rel = spec.script_file.relative_to(root)
    if rel.suffix != ".py":
        raise RuntimeError(f"cannot load function {spec.name}: invalid Python filename {rel}")
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    module = importlib.import_module(".".join(["__app__", *parts]))
    fn = getattr(module, spec.entry_point, None)
    if fn is None or not callable(fn):
        raise RuntimeError(f"cannot load function {spec.name}: function {spec.entry_point}() is "
                           f"not present in {rel}")
    declared = {b.get("name") for b in spec.bindings} - {"$return"}
    params = [p for p in inspect.signature(fn).parameters if p != "context" or p in declared]
    unknown = set(params) - declared
    if unknown:
        raise RuntimeError(f"cannot load the {spec.name} function: the following parameters are "
                           f"declared in Python but not in function.json: {unknown!r}")
    missing = declared - set(params)
    if missing:
        raise RuntimeError(f"cannot load the {spec.name} function: the following parameters are "
                           f"declared in function.json but not in Python: {missing!r}")
    out_names = {b.get("name") for b in spec.bindings
                 if str(b.get("direction", "in")).lower() == "out"}
    outs = tuple(p for p in params if p in out_names)
    return _Loaded(fn, inspect.iscoroutinefunction(fn),
                   "context" in inspect.signature(fn).parameters and "context" not in declared,
                   outs)


def _cookie_headers(cookies: Any) -> List[str]:
    out: List[str] = []
    for cookie in cookies or []:
        for morsel in cookie.values():
            out.append(render_set_cookie(
                morsel.key, morsel.value, domain=morsel["domain"] or None,
                path=morsel["path"] or None, expires=parse_cookie_expires(morsel["expires"]),
                max_age=parse_cookie_max_age(morsel["max-age"]), secure=bool(morsel["secure"]),
                http_only=bool(morsel["httponly"]), same_site=(morsel["samesite"] or "").lower()))
    return out


def encode_result(value: Any) -> HttpResult:
    """A function's HTTP output through azure.functions' converter, as the worker encodes it."""
    try:
        datum = HttpResponseConverter.encode(value, expected_type=None)
    except NotImplementedError:
        raise InvocationFailed("unable to encode outgoing TypedData: unsupported type "
                               f"\"http\" for Python type \"{type(value).__name__}\"") from None
    if datum.type == "string":
        return text_result(datum.value)
    v = datum.value
    return http_result(v["status_code"].value, {k: h.value for k, h in v["headers"].items()},
                       v["body"].value or b"", _cookie_headers(v.get("cookies")))


class InHouseInvoker(Invoker):
    """Imports and calls the functions itself, with the real azure.functions objects."""

    mode = "in-house"

    def __init__(self, root: Path, threads: Optional[int] = None) -> None:
        self.root = root
        env_threads = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "")
        workers = threads or (int(env_threads) if env_threads.isdigit() and int(env_threads) > 0
                              else min(32, (os.cpu_count() or 1) + 4))
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="func")
        self.tls = threading.local()
        self._loaded: Dict[str, _Loaded] = {}

    def describe(self) -> str:
        v = sys.version_info
        return (f"in-house invocation path (Python {v.major}.{v.minor}.{v.micro}, azure-functions "
                f"{func.__version__})")

    async def load(self, specs: List[FunctionSpec]) -> List[LoadOutcome]:
        outcomes = []
        for spec in specs:
            try:
                self._loaded[spec.name] = _import(self.root, spec)
                outcomes.append(LoadOutcome(spec))
            except Exception as exc:  # noqa: BLE001 - reported per function, like the host
                log.error("Worker failed to load function %s: %s\n%s", spec.name, exc,
                          traceback.format_exc())
                outcomes.append(LoadOutcome(spec, f"{type(exc).__name__}: {exc}"))
        return outcomes

    async def invoke(self, spec: FunctionSpec, inv: HttpInvocation) -> HttpResult:
        loaded = self._loaded.get(spec.name)
        if loaded is None:
            raise InvocationFailed(f"function {spec.name} failed to load")
        req = func.HttpRequest(inv.method, inv.url, headers=inv.headers, params=inv.query,
                               route_params=inv.route_params, body=inv.body)
        kwargs: Dict[str, Any] = {spec.trigger_name: req}
        if loaded.wants_context:
            kwargs["context"] = Context(spec.name, str(spec.directory), inv.invocation_id, self.tls,
                                        TraceContext(inv.trace_parent, inv.trace_state, {}),
                                        RetryContext())
        outs = {name: Out() for name in loaded.out_params}
        kwargs.update(outs)
        try:
            if loaded.is_async:
                result = await loaded.fn(**kwargs)
            else:
                result = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self._call_sync, loaded.fn, kwargs, inv.invocation_id)
        except Exception as exc:  # noqa: BLE001 - the function's own failure
            raise InvocationFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc()) from exc
        returns = spec.return_binding == "$return"
        if result is not None and not returns:
            raise InvocationFailed(f"function {spec.name!r} without a $return binding returned a "
                                   "non-None value")
        if returns:
            return encode_result(result)
        value = outs[spec.return_binding].get() if spec.return_binding in outs else None
        return HttpResult(204) if value is None else encode_result(value)

    def _call_sync(self, fn: Callable[..., Any], kwargs: Dict[str, Any], invocation_id: str) -> Any:
        self.tls.invocation_id = invocation_id
        try:
            return fn(**kwargs)
        finally:
            self.tls.invocation_id = None

    async def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
