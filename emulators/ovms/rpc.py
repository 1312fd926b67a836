"""Turns OvmsError (and unexpected exceptions) into gRPC statuses; nothing escapes a handler.

Each call's ``x-request-id`` metadata (the app sends its invocation id there) is named in the
log: every call at DEBUG, every failure at INFO, so the server's log joins the app's.
"""
from __future__ import annotations

import functools
import logging

import grpc

from .errors import OvmsError

log = logging.getLogger("ovms.rpc")

REQUEST_ID = "x-request-id"


def request_id(context) -> str:
    """The caller's ``x-request-id`` metadata entry ("-" without one)."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID:
            return value
    return "-"


def rpc(method):
    """Decorator for unary servicer methods."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self, request, context):
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s request %s", name, request_id(context))
        try:
            return method(self, request, context)
        except OvmsError as err:
            log.info("%s request %s -> %s: %s", name, request_id(context), err.code.name, err.message)
            code, message = err.code, err.message
        except Exception as exc:  # noqa: BLE001 - a malformed request must never crash the server
            log.exception("%s request %s failed", name, request_id(context))
            code, message = grpc.StatusCode.INTERNAL, f"Internal server error - {type(exc).__name__}: {exc}"
        context.abort(code, message)

    return wrapper
