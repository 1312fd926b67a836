"""One error taxonomy for every endpoint.

Each class knows its HTTP status and its machine-readable error code; ``shared.http`` is the
only place that catches them and turns them into ``{"error": {"code", "message"}}`` bodies.
Messages are written for the API's user: they never contain image bytes, tracebacks or secrets.
"""
from __future__ import annotations

from typing import Dict, Optional

# Retry-After (seconds) by kind of fault: how soon a retry can succeed.
RETRY_TRANSIENT_S = 1  # model server unreachable, overloaded, not loaded yet
RETRY_STORAGE_S = 5  # side file storage unreachable or slow
RETRY_DEPLOYMENT_S = 30  # a setting or side file is wrong: an operator must act


class OvaasError(Exception):
    """Base of every error the app answers deliberately."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: Dict[str, str] = dict(headers or {})

    def to_dict(self) -> dict:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message}}


# ---- 4xx: the client's request -------------------------------------------------------------

class BadRequest(OvaasError):
    """Malformed request (400)."""

    status = 400
    code = "bad_request"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class MissingImage(BadRequest):
    code = "missing_image"


class InvalidBase64(BadRequest):
    code = "invalid_base64"


class InvalidOption(BadRequest):
    code = "invalid_option"


class MethodNotAllowed(OvaasError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str, allowed: tuple = ("POST",)) -> None:
        super().__init__(
            f"Method {method} is not allowed; use {', '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )


class PayloadTooLarge(OvaasError):
    """Body or pixel count over the configured limit (413)."""

    status = 413
    code = "payload_too_large"


class ImageTooLarge(PayloadTooLarge):
    code = "image_too_large"


class ImageTooComplex(PayloadTooLarge):
    """Within the byte and pixel limits, but asking for more decoding work than allowed (413):
    e.g. a JPEG with hundreds of scans, a PNG of a million chunks, a TIFF of tiny tiles."""

    code = "image_too_complex"


class UnsupportedMediaType(OvaasError):
    """Content type we do not read, or bytes that are not a decodable image (415)."""

    status = 415
    code = "unsupported_media_type"


class InvalidImage(UnsupportedMediaType):
    code = "invalid_image"


# ---- 5xx: the backend ------------------------------------------------------------------------

class InternalError(OvaasError):
    """A true bug: the body never carries the traceback."""

    status = 500
    code = "internal_error"


class BadModelOutput(OvaasError):
    """The model answered, but not with what the task expects (wrong model deployed, 502)."""

    status = 502
    code = "bad_model_output"


class ModelServerError(OvaasError):
    """The model server rejected our request or failed in a way that is not transient (502)."""

    status = 502
    code = "model_server_error"


class ModelUnavailable(OvaasError):
    """Model server unreachable, or the model is not loaded (503, with Retry-After)."""

    status = 503
    code = "model_unavailable"

    def __init__(self, message: str, *, retry_after: int = RETRY_TRANSIENT_S) -> None:
        super().__init__(message, headers={"Retry-After": str(int(retry_after))})


class ModelUnreachable(ModelUnavailable):
    """No connection to the model server within the connect timeout (503)."""


class ModelNotFound(ModelUnavailable):
    code = "model_not_found"


class Misconfigured(ModelUnavailable):
    """A setting or side file is wrong: 503 naming the setting (never its value) until an operator
    fixes it."""

    code = "misconfigured"

    def __init__(self, message: str, *, retry_after: int = RETRY_DEPLOYMENT_S) -> None:
        super().__init__(message, retry_after=retry_after)


class ServerBusy(OvaasError):
    """Too many large pictures are being decoded right now; try again shortly (503, Retry-After)."""

    status = 503
    code = "server_busy"

    def __init__(self, message: str, *, retry_after: int = RETRY_TRANSIENT_S) -> None:
        super().__init__(message, headers={"Retry-After": str(int(retry_after))})


class ModelTimeout(OvaasError):
    """The model server did not answer before the deadline (504)."""

    status = 504
    code = "model_timeout"
