"""OVMS status codes and messages (from OVMS ``src/status.cpp``), as exceptions."""
from __future__ import annotations

import grpc


class OvmsError(Exception):
    """An error with the gRPC status code and message OVMS would send."""

    def __init__(self, code: grpc.StatusCode, message: str, details: str = "") -> None:
        self.code = code
        self.message = f"{message} - {details}" if details else message
        super().__init__(self.message)


def model_name_missing() -> OvmsError:
    return OvmsError(grpc.StatusCode.NOT_FOUND, "Model with requested name is not found")


def model_version_missing() -> OvmsError:
    return OvmsError(grpc.StatusCode.NOT_FOUND, "Model with requested version is not found")


def model_version_retired() -> OvmsError:
    return OvmsError(grpc.StatusCode.NOT_FOUND, "Model with requested version is retired")


def model_version_not_loaded_yet() -> OvmsError:
    return OvmsError(grpc.StatusCode.UNAVAILABLE, "Model with requested version is not loaded yet")


def invalid(message: str, details: str = "") -> OvmsError:
    return OvmsError(grpc.StatusCode.INVALID_ARGUMENT, message, details)


INVALID_NO_OF_INPUTS = "Invalid number of inputs"
INVALID_MISSING_INPUT = "Missing input with specific name"
INVALID_NO_OF_SHAPE_DIMENSIONS = "Invalid number of shape dimensions"
INVALID_BATCH_SIZE = "Invalid input batch size"
INVALID_SHAPE = "Invalid input shape"
INVALID_PRECISION = "Invalid input precision"
INVALID_VALUE_COUNT = "Invalid number of values in tensor proto container"
INVALID_CONTENT_SIZE = "Invalid content size of tensor proto"
INVALID_MESSAGE_STRUCTURE = "Invalid message structure"
MODEL_SPEC_MISSING = "model_spec missing in request"
INVALID_SIGNATURE_DEF = "Invalid signature name"
INTERNAL_INFERENCE_ERROR = "Internal inference error"
