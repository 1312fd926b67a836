"""A stand-in for a gRPC stub in unit tests: each plain method of the wrapped object becomes a
callable with gRPC's ``.future(request, timeout=...)`` as well, as the KServe adapter calls it."""
from __future__ import annotations

from typing import Any, Callable, Optional


class _Done:
    """A finished call, as ``grpc.Future``: ``result`` returns the answer or raises the error."""

    def __init__(self, fn: Callable[..., Any], request: Any, timeout: Optional[float]) -> None:
        self._value: Any = None
        self._error: Optional[BaseException] = None
        try:
            self._value = fn(request, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - handed back by result(), as gRPC does
            self._error = exc

    def result(self, timeout: Optional[float] = None) -> Any:
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self) -> bool:
        return False


class _Method:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def __call__(self, request: Any, timeout: Optional[float] = None) -> Any:
        return self._fn(request, timeout=timeout)

    def future(self, request: Any, timeout: Optional[float] = None) -> _Done:
        return _Done(self._fn, request, timeout)


class FutureStub:
    """``FutureStub(obj)``: ``obj``'s methods with ``.future`` added."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        return _Method(getattr(self._obj, name))
