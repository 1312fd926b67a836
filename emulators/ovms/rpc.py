"""Turns OvmsError (and unexpected exceptions) into gRPC statuses; nothing escapes a handler."""
from __future__ import annotations

import functools
import logging

import grpc

from .errors import OvmsError

log = logging.getLogger("ovms.rpc")


def rpc(method):
    """Decorator for unary servicer methods."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except OvmsError as err:
            log.debug("%s -> %s: %s", name, err.code.name, err.message)
            code, message = err.code, err.message
        except Exception as exc:  # noqa: BLE001 - a malformed request must never crash the server
            log.exception("%s failed", name)
            code, message = grpc.StatusCode.INTERNAL, f"Internal server error - {type(exc).__name__}: {exc}"
        context.abort(code, message)

    return wrapper
