"""The invocation objects the Python worker hands to a function: Context, TraceContext, RetryContext.

Plain classes with the worker's properties, like the worker's own (azure_functions_runtime_v1
.bindings): they are not subclasses of ``azure.functions.Context``, so ``isinstance`` checks see
the same thing in both host modes.
"""
from __future__ import annotations

import re
import secrets
import threading
from typing import Any, Dict, Optional, Type


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


class RpcException:
    """The exception of a failed earlier attempt (always empty for HTTP triggers)."""

    def __init__(self, source: str = "", stack_trace: str = "", message: str = "") -> None:
        self._source, self._stack_trace, self._message = source, stack_trace, message

    @property
    def source(self) -> str:
        return self._source

    @property
    def stack_trace(self) -> str:
        return self._stack_trace

    @property
    def message(self) -> str:
        return self._message


class TraceContext:
    """W3C trace context of the invocation."""

    def __init__(self, trace_parent: str, trace_state: str, attributes: Dict[str, str]) -> None:
        self._trace_parent, self._trace_state, self._attributes = trace_parent, trace_state, attributes

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        return self._trace_state

    @property
    def attributes(self) -> Dict[str, str]:
        return self._attributes


class RetryContext:
    """Retry state (HTTP triggers are never retried: 0 of 0)."""

    def __init__(self, retry_count: int = 0, max_retry_count: int = 0,
                 exception: Optional[RpcException] = None) -> None:
        self._retry_count, self._max_retry_count = retry_count, max_retry_count
        self._exception = exception if exception is not None else RpcException()

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def max_retry_count(self) -> int:
        return self._max_retry_count

    @property
    def exception(self) -> RpcException:
        return self._exception


class Context:
    """What ``main(req, context)`` receives: same properties as the worker's Context."""

    def __init__(self, function_name: str, function_directory: str, invocation_id: str,
                 thread_local_storage: threading.local, trace_context: TraceContext,
                 retry_context: RetryContext) -> None:
        self._function_name = function_name
        self._function_directory = function_directory
        self._invocation_id = invocation_id
        self._tls = thread_local_storage
        self._trace_context = trace_context
        self._retry_context = retry_context

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Type[threading.local]:  # typed as in azure.functions
        return self._tls  # type: ignore[return-value]

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> RetryContext:
        return self._retry_context


def trace_context_from_headers(headers: Any) -> TraceContext:
    """Continue the caller's W3C trace (``traceparent``/``tracestate``) or start a new one."""
    parent = (headers.get("traceparent") or "").strip().lower()
    trace_id = parent.split("-")[1] if _TRACEPARENT.match(parent) else secrets.token_hex(16)
    new_parent = f"00-{trace_id}-{secrets.token_hex(8)}-00"
    return TraceContext(new_parent, headers.get("tracestate") or "", {})


class Out:
    """A named output binding parameter (``func.Out[func.HttpResponse]``)."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value
