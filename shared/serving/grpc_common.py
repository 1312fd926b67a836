"""What both gRPC adapters share: a long-lived channel that fails fast, and one status table.

The channel is created once per model-server address per worker and reused. Before each call
it is checked for readiness with a short connect timeout, so a model server that is down fails
a request in well under a second instead of waiting for the inference deadline; reconnect
back-off is capped low so the first request after the server returns gets through. Every call
carries the invocation id as ``x-request-id`` metadata (``shared.logs``).

The channel is plain (local, in-cluster) or TLS (``<PREFIX>_TLS`` / ``OVMS_TLS``): OVMS itself
serves plain gRPC, and a TLS-terminating ingress in front of it (Azure Container Apps) takes TLS on
443. TLS trusts the system's roots, or the PEM bundle named by ``OVMS_TLS_CA_FILE``. A certificate
the client does not trust never lets the channel become ready: the request gets the same fast 503
as an unreachable server, saying TLS is on.

Adapters do not log failures: they raise the app's error, and ``shared.http`` logs it once.
"""
from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Type

import grpc

from shared.errors import (ModelNotFound, ModelServerError, ModelTimeout, ModelUnavailable,
                           ModelUnreachable, OvaasError)
from shared.logs import request_metadata

if TYPE_CHECKING:  # pragma: no cover
    from shared.serving.base import ModelStatus

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: deadline of a readiness check (health): short, never an inference deadline
READINESS_DEADLINE_S = 1.0

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly once the server is back (gRPC's default back-off grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 5000),
]


# gRPC status -> (error class, message template). The one table both adapters use.
# {model} is "name" or "name version N"; {details} is the server's own message.
STATUS_TABLE: Dict[grpc.StatusCode, Tuple[Type[OvaasError], str]] = {
    grpc.StatusCode.UNAVAILABLE: (ModelUnavailable, "model {model} is unavailable: {details}"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (ModelTimeout, "model {model} did not answer within {timeout:g} s"),
    grpc.StatusCode.NOT_FOUND: (ModelNotFound, "model {model} is not served by the model server: {details}"),
    grpc.StatusCode.INVALID_ARGUMENT: (ModelServerError, "model {model} rejected the request: {details}"),
    grpc.StatusCode.FAILED_PRECONDITION: (ModelUnavailable, "model {model} is not ready: {details}"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (ModelUnavailable, "model server is overloaded ({model}): {details}"),
    grpc.StatusCode.CANCELLED: (ModelUnavailable, "request to model {model} was cancelled: {details}"),
    grpc.StatusCode.ABORTED: (ModelUnavailable, "request to model {model} was aborted: {details}"),
    grpc.StatusCode.UNIMPLEMENTED: (ModelServerError, "the model server does not implement this API "
                                    "(check the OVMS_API setting) for {model}: {details}"),
}
DEFAULT_ERROR: Tuple[Type[OvaasError], str] = (ModelServerError, "model server failed on {model}: {details}")


def error_from_status(code: Optional[grpc.StatusCode], details: str, model: str,
                      timeout: float) -> OvaasError:
    """Map a gRPC status to the app's error taxonomy."""
    cls, template = STATUS_TABLE.get(code, DEFAULT_ERROR) if code is not None else DEFAULT_ERROR
    details = (details or "").strip() or (code.name if code is not None else "unknown error")
    if len(details) > 300:
        details = details[:297] + "..."
    return cls(template.format(model=model, details=details, timeout=timeout))


# error class -> readiness state (the first class the error is an instance of wins)
_STATES: Tuple[Tuple[Type[OvaasError], str], ...] = (
    (ModelUnreachable, "UNREACHABLE"), (ModelNotFound, "NOT_FOUND"), (ModelTimeout, "TIMEOUT"))


def status_from_error(exc: OvaasError, name: str, version: Optional[str]) -> "ModelStatus":
    """The not-ready ModelStatus that a failed readiness call stands for."""
    from shared.serving.base import ModelStatus

    state = next((s for cls, s in _STATES if isinstance(exc, cls)), "UNAVAILABLE")
    return ModelStatus(name, version, False, state, exc.message)


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
        grpc.ClientCallDetails):
    """The details of one call, with metadata added."""


class _ForwardInvocationId(grpc.UnaryUnaryClientInterceptor):
    """Adds ``x-request-id: <invocation id>`` to every unary call made inside a request."""

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        extra = request_metadata()
        if extra:
            details = _CallDetails(details.method, details.timeout, tuple(details.metadata or ()) + extra,
                                   details.credentials, getattr(details, "wait_for_ready", None),
                                   getattr(details, "compression", None))
        return continuation(details, request)


def read_ca_file(path: str, setting: str = "OVMS_TLS_CA_FILE") -> bytes:
    """The PEM roots at ``path`` (relative paths from the app's root); a file that cannot be read
    or holds no certificate is a deployment fault naming the setting, never the path."""
    from shared.config import SettingsError
    from shared.resources import APP_ROOT

    file = Path(path)
    if not file.is_absolute():
        file = APP_ROOT / file
    try:
        data = file.read_bytes()
    except OSError:
        raise SettingsError(setting, "names a file that cannot be read") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise SettingsError(setting, "names a file with no PEM certificate")
    return data


def tls_channel_factory(root_certificates: Optional[bytes]) -> Callable[[str], grpc.Channel]:
    """A factory of TLS channels trusting ``root_certificates`` (None: the system's roots)."""
    credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
    return lambda address: grpc.secure_channel(address, credentials, options=CHANNEL_OPTIONS)


class ManagedChannel:
    """A gRPC channel to one address whose readiness is tracked and checked before calls.
    ``channel`` is the connection; stubs are built on ``calls``, which adds the request id.
    ``tls`` only words the 503 of a channel that never becomes ready (its factory makes it TLS)."""

    def __init__(self, address: str, connect_timeout_s: float,
                 channel_factory: Optional[Callable[[str], grpc.Channel]] = None, tls: bool = False) -> None:
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.tls = tls
        factory = channel_factory or (lambda a: grpc.insecure_channel(a, options=CHANNEL_OPTIONS))
        self.channel = factory(address)
        self.calls = grpc.intercept_channel(self.channel, _ForwardInvocationId())
        self._state: Optional[grpc.ChannelConnectivity] = None
        self._lock = threading.Lock()
        self.channel.subscribe(self._on_state, try_to_connect=True)

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        self._state = state

    @property
    def ready(self) -> bool:
        return self._state == grpc.ChannelConnectivity.READY

    def ensure_ready(self, what: str) -> None:
        """Return at once when connected; else wait up to the connect timeout, then 503."""
        if self._state == grpc.ChannelConnectivity.READY:
            return
        future = grpc.channel_ready_future(self.channel)
        try:
            future.result(timeout=self.connect_timeout_s)
        except grpc.FutureTimeoutError:
            future.cancel()
            hint = (" over TLS (check that it serves TLS with a certificate this app trusts: "
                    "system roots or OVMS_TLS_CA_FILE)") if self.tls else ""
            raise ModelUnreachable(f"model server for {what} is unreachable{hint}") from None

    def stop_watching(self) -> None:
        """Stop tracking connectivity (gRPC's polling thread exits within ~0.2 s)."""
        try:
            self.channel.unsubscribe(self._on_state)
        except ValueError:  # already closed
            pass

    def close(self, settle_s: float = 0.25) -> None:
        """Close the channel once gRPC's connectivity-polling thread has let go of it
        (closing under it makes that thread raise "Channel closed!")."""
        self.stop_watching()
        if settle_s:
            time.sleep(settle_s)
        self.channel.close()
