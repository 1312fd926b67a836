"""The worker-backed invocation path: Microsoft's Python worker, driven in-process.

PyPI ``azure-functions-runtime-v1`` is the v1-programming-model worker that Azure and Core Tools
run (Python >= 3.13, azure-functions 2.x), as a library. The real host talks to it over gRPC with
``StreamingMessage`` protobufs; this host hands the same messages straight to its async handlers,
in the order the host sends them:

1. ``worker_init_request`` (the worker answers with its capabilities, among them
   ``RawHttpBodyBytes``: HTTP bodies then travel as ``TypedData.bytes`` whatever the content type);
2. ``functions_metadata_request`` (the worker answers "use default indexing": the host reads
   function.json itself, which discovery.py does);
3. one ``function_load_request`` per function (``directory``, an absolute ``script_file``,
   ``entry_point`` where ``""`` means ``main``, and the bindings of function.json);
4. one ``invocation_request`` per call: the HTTP trigger as ``RpcHttp`` (lower-cased header names,
   the query, the route parameters, the body as bytes), the trace and retry context. The answer is
   the ``$return`` value or the named output binding; a failure becomes an empty 500.

Pitfalls this module handles: the library keeps its state in module globals (one app per process,
init first); its protobuf classes ship as a top-level ``tests.protos`` package, which a project's
own ``tests`` package shadows, so they are loaded by file path under a private name; its thread
pool must be started (``start_threadpool_executor()``, sized by ``PYTHON_THREADPOOL_THREAD_COUNT``).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional

from emulators.functions_host.discovery import FunctionSpec
from emulators.functions_host.invocation import (HttpInvocation, HttpResult, InvocationFailed,
                                                 Invoker, LoadOutcome, http_result,
                                                 render_set_cookie, text_result)

log = logging.getLogger("functions_host")

DISTRIBUTION = "azure-functions-runtime-v1"
MIN_PYTHON = (3, 13)
#: what the host reports as its version in WorkerInitRequest (Functions runtime v4)
HOST_VERSION = "4.0.0-local"
_PROTOS_MODULE = "_azure_functions_worker_protos"
_SAME_SITE = {1: "lax", 2: "strict", 3: "none"}  # RpcHttpCookie.SameSite (0 = not set)
_started = False


def unavailable_reason() -> Optional[str]:
    """Why the worker-backed mode cannot run in this interpreter (None when it can)."""
    v = sys.version_info
    if v[:2] < MIN_PYTHON:
        return (f"Microsoft's Python worker ({DISTRIBUTION}) needs Python "
                f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}+, this is {v.major}.{v.minor}.{v.micro}")
    if importlib.util.find_spec("azure_functions_runtime_v1") is None:
        return (f"{DISTRIBUTION} is not installed in this environment "
                "(bash scripts/bootstrap.sh builds .venv313 with it)")
    return None


def load_protos() -> ModuleType:
    """The worker's protobuf classes, from the wheel's ``tests/protos`` package, by file path."""
    if _PROTOS_MODULE in sys.modules:
        return sys.modules[_PROTOS_MODULE]
    dist = importlib.metadata.distribution(DISTRIBUTION)
    init = next((f for f in dist.files or [] if f.as_posix() == "tests/protos/__init__.py"), None)
    if init is None:
        raise RuntimeError(f"{DISTRIBUTION} {dist.version} does not ship tests/protos: "
                           "requirements-worker.txt pins the version this host was written for")
    path = Path(dist.locate_file(init))
    spec = importlib.util.spec_from_file_location(_PROTOS_MODULE, path,
                                                  submodule_search_locations=[str(path.parent)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PROTOS_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_PROTOS_MODULE]
        raise
    return module


class _Message:
    """What the handlers take: ``.request`` (a StreamingMessage) and ``.properties``."""

    def __init__(self, protos: ModuleType, **content: Any) -> None:
        self.request = protos.StreamingMessage(request_id=str(uuid.uuid4()), **content)
        self.properties = {"protos": protos, "host": "127.0.0.1"}


def _failure(result: Any) -> Optional[str]:
    """The message of a failed StatusResult (None on success)."""
    if result.status == result.Success:
        return None
    exc = result.exception
    return (exc.message or "failed") + ("\n" + exc.stack_trace if exc.stack_trace else "")


class WorkerInvoker(Invoker):
    """Loads and invokes the app's functions through azure-functions-runtime-v1."""

    mode = "worker"

    def __init__(self, root: Path) -> None:
        global _started
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        if _started:
            raise RuntimeError("the worker library keeps its state in module globals: "
                               "one app per process")
        _started = True
        import azure_functions_runtime_v1 as worker  # noqa: PLC0415 - Python 3.13+ only

        self.root = root
        self.protos = load_protos()
        self.worker = worker
        self.version = importlib.metadata.version(DISTRIBUTION)
        self._ids: Dict[str, str] = {}

    def describe(self) -> str:
        import azure.functions as func  # noqa: PLC0415

        v = sys.version_info
        return (f"Microsoft's Python worker ({DISTRIBUTION} {self.version}, azure-functions "
                f"{func.__version__}, Python {v.major}.{v.minor}.{v.micro})")

    def _msg(self, **content: Any) -> _Message:
        return _Message(self.protos, **content)

    async def load(self, specs: List[FunctionSpec]) -> List[LoadOutcome]:
        p = self.protos
        root = str(self.root)
        if root not in sys.path:
            sys.path.insert(0, root)
        init = await self.worker.worker_init_request(self._msg(
            worker_init_request=p.WorkerInitRequest(
                host_version=HOST_VERSION, function_app_directory=root,
                worker_directory=str(Path(self.worker.__file__).parent))))
        failed = _failure(init.result)
        if failed:
            raise RuntimeError(f"the worker refused to start: {failed}")
        log.debug("worker capabilities: %s", dict(init.capabilities))
        self.worker.start_threadpool_executor()
        await self.worker.functions_metadata_request(self._msg(
            functions_metadata_request=p.FunctionsMetadataRequest(function_app_directory=root)))
        outcomes = []
        for spec in specs:
            function_id = str(uuid.uuid4())
            answer = await self.worker.function_load_request(self._msg(
                function_load_request=p.FunctionLoadRequest(function_id=function_id,
                                                            metadata=self._metadata(spec))))
            failed = _failure(answer.result)
            if failed:
                log.error("Worker failed to load function %s: %s", spec.name, failed)
                outcomes.append(LoadOutcome(spec, failed.splitlines()[0]))
            else:
                self._ids[spec.name] = function_id
                outcomes.append(LoadOutcome(spec))
        return outcomes

    def _metadata(self, spec: FunctionSpec) -> Any:
        p = self.protos
        bindings = {}
        for b in spec.bindings:
            direction = str(b.get("direction", "in")).lower()
            data_type = str(b.get("dataType", "undefined")).lower()
            bindings[str(b.get("name"))] = p.BindingInfo(
                type=str(b.get("type", "")),
                direction=p.BindingInfo.Direction.Value(direction if direction in ("in", "out", "inout")
                                                        else "in"),
                data_type=p.BindingInfo.DataType.Value(
                    data_type if data_type in ("string", "binary", "stream") else "undefined"))
        entry = "" if spec.entry_point == "main" else spec.entry_point
        return p.RpcFunctionMetadata(
            name=spec.name, directory=str(spec.directory), script_file=str(spec.script_file),
            entry_point=entry, bindings=bindings, language="python",
            raw_bindings=[json.dumps(b) for b in spec.bindings])

    async def invoke(self, spec: FunctionSpec, inv: HttpInvocation) -> HttpResult:
        p = self.protos
        function_id = self._ids.get(spec.name)
        if function_id is None:
            raise InvocationFailed(f"function {spec.name} failed to load")
        http = p.RpcHttp(method=inv.method, url=inv.url, headers=inv.headers,
                         body=p.TypedData(bytes=inv.body), query=inv.query,
                         params=inv.route_params)
        request = p.InvocationRequest(
            invocation_id=inv.invocation_id, function_id=function_id,
            input_data=[p.ParameterBinding(name=spec.trigger_name, data=p.TypedData(http=http))])
        # (RpcTraceContext and RetryContext are not exported by the package: set them in place)
        request.trace_context.trace_parent = inv.trace_parent
        request.trace_context.trace_state = inv.trace_state
        request.retry_context.retry_count = 0
        request.retry_context.max_retry_count = 0
        answer = await self.worker.invocation_request(self._msg(invocation_request=request))
        failed = _failure(answer.result)
        if failed:
            raise InvocationFailed(failed.splitlines()[0], failed)
        if spec.return_binding == "$return":
            return self._result(answer.return_value if answer.HasField("return_value") else None)
        for binding in answer.output_data:
            if binding.name == spec.return_binding:
                return self._result(binding.data)
        return HttpResult(204)

    def _result(self, data: Any) -> HttpResult:
        kind = data.WhichOneof("data") if data is not None else None
        if kind == "string":
            return text_result(data.string)
        if kind != "http":
            raise InvocationFailed(f"the worker answered a {kind or 'missing'} value for an HTTP "
                                   "output")
        http = data.http
        body_kind = http.body.WhichOneof("data")
        body = (http.body.bytes if body_kind in ("bytes", "stream") else
                getattr(http.body, body_kind).encode("utf-8") if body_kind in ("string", "json")
                else b"")
        cookies = [render_set_cookie(
            c.name, c.value,
            domain=c.domain.value if c.HasField("domain") else None,
            path=c.path.value if c.HasField("path") else None,
            expires=(c.expires.value.ToDatetime() if c.HasField("expires") else None),
            max_age=c.max_age.value if c.HasField("max_age") else None,
            secure=c.HasField("secure") and c.secure.value,
            http_only=c.HasField("http_only") and c.http_only.value,
            same_site=_SAME_SITE.get(c.same_site)) for c in http.cookies]
        return http_result(http.status_code, dict(http.headers), body, cookies)

    async def close(self) -> None:
        pool = self.worker.get_threadpool_executor()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def worker_interpreter(project_root: Path) -> Optional[Path]:
    """The interpreter to run the worker-backed host: this one when it can, else
    :func:`worker_python` (None when there is none)."""
    return Path(sys.executable) if unavailable_reason() is None else worker_python(project_root)


def worker_python(project_root: Path) -> Optional[Path]:
    """The interpreter that runs the worker-backed host from outside it: ``$OVAAS_WORKER_PYTHON``,
    else the ``.venv313`` that scripts/bootstrap.sh built (only once its install completed)."""
    import os  # noqa: PLC0415

    given = os.environ.get("OVAAS_WORKER_PYTHON", "").strip()
    if given:
        return Path(given)
    venv = project_root / ".venv313"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if python.exists() and (venv / ".requirements.sha256").is_file():
        return python
    return None
