"""Logging: one naming scheme (``ovaas.<part>``) and the invocation id on every line.

``shared.http`` runs each request inside ``invocation(id)``; loggers from ``get_logger`` prefix
their lines with ``[<invocation id>]`` and put it on the record (``record.invocation_id``), and
the gRPC channel forwards it to the model server as the ``x-request-id`` metadata entry, so the
app's and the model server's logs can be joined. Outside a request the id is ``-``.
"""
from __future__ import annotations

import contextlib
import logging
from contextvars import ContextVar
from typing import Any, Iterator, MutableMapping, Optional, Tuple

#: gRPC metadata key carrying the invocation id to the model server
REQUEST_ID_METADATA = "x-request-id"
NO_INVOCATION = "-"

_invocation_id: ContextVar[str] = ContextVar("ovaas_invocation_id", default=NO_INVOCATION)


@contextlib.contextmanager
def invocation(invocation_id: str) -> Iterator[None]:
    """Run the ``with`` block as invocation ``invocation_id``."""
    token = _invocation_id.set(invocation_id)
    try:
        yield
    finally:
        _invocation_id.reset(token)


class _InvocationLogger(logging.LoggerAdapter):
    """Prefixes each message with the current invocation id."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> Tuple[Any, MutableMapping[str, Any]]:
        invocation_id = _invocation_id.get()
        kwargs.setdefault("extra", {})["invocation_id"] = invocation_id
        return f"[{invocation_id}] {msg}", kwargs


def get_logger(part: str) -> logging.LoggerAdapter:
    """The logger ``ovaas.<part>``, its lines carrying the invocation id."""
    return _InvocationLogger(logging.getLogger(f"ovaas.{part}"), {})


def request_metadata() -> Optional[Tuple[Tuple[str, str], ...]]:
    """gRPC call metadata forwarding the current invocation id (None outside a request)."""
    invocation_id = _invocation_id.get()
    if invocation_id == NO_INVOCATION:
        return None
    return ((REQUEST_ID_METADATA, invocation_id),)
