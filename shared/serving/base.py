"""The one small interface every inference adapter implements."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: its name, shape (-1 = dynamic) and numpy dtype name."""

    name: str
    shape: Tuple[int, ...]
    dtype: str  # numpy dtype name, e.g. "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": [int(d) for d in self.shape], "dtype": self.dtype}


@dataclass(frozen=True)
class ModelMetadata:
    """What a served model takes and returns. ``inputs``/``outputs`` keep the server's order."""

    name: str
    version: str
    inputs: Dict[str, TensorInfo] = field(default_factory=dict)
    outputs: Dict[str, TensorInfo] = field(default_factory=dict)

    def only_input(self) -> TensorInfo:
        """The single input of a one-input model (raises BadModelOutput otherwise)."""
        from shared.errors import BadModelOutput

        if len(self.inputs) != 1:
            raise BadModelOutput(
                f"model {self.name!r} has {len(self.inputs)} inputs; this endpoint expects one"
            )
        return next(iter(self.inputs.values()))


@dataclass(frozen=True)
class ModelStatus:
    """Readiness of one model on its server."""

    name: str
    version: Optional[str]
    ready: bool
    state: str  # "AVAILABLE", "LOADING", "UNAVAILABLE", "NOT_FOUND", "UNREACHABLE", ...
    message: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "ready": self.ready,
                "state": self.state, "message": self.message}


class InferenceAdapter(abc.ABC):
    """A model behind some transport: metadata, readiness and ``infer(dict) -> dict``.

    Implementations raise only ``shared.errors`` exceptions (mapped from their transport's
    errors) so the HTTP layer never sees a gRPC exception.
    """

    @abc.abstractmethod
    def metadata(self) -> ModelMetadata:
        """Input/output names, shapes and dtypes (cached after the first call)."""

    @abc.abstractmethod
    def status(self) -> ModelStatus:
        """Readiness of the model (never raises for an unreachable server)."""

    @abc.abstractmethod
    def infer(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one inference: input name -> array in, output name -> array out."""

    def close(self) -> None:  # pragma: no cover - default no-op
        """Release the transport."""
