"""The one small interface every inference adapter implements."""
from __future__ import annotations

import abc
import threading
import time
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

    @property
    def key(self) -> tuple:
        """A hashable identity of this metadata version (tasks cache what they derive from it)."""
        return (self.name, self.version, tuple(self.inputs.values()), tuple(self.outputs.values()))

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
        """Run one inference: input name -> array in (cast to the dtype the metadata declares),
        output name -> array out (read-only views of the answer where the transport allows)."""


class CachedMetadataAdapter(InferenceAdapter):
    """An adapter whose metadata is fetched once and trusted for ``metadata_ttl_s`` seconds
    (a model redeployed with another signature is noticed after that)."""

    metadata_ttl_s: float = 300.0

    def __init__(self, metadata_ttl_s: float = 300.0) -> None:
        self.metadata_ttl_s = metadata_ttl_s
        self._meta: Optional[ModelMetadata] = None
        self._meta_time = 0.0
        self._meta_lock = threading.Lock()

    def metadata(self) -> ModelMetadata:
        meta = self._meta
        if meta is not None and time.monotonic() - self._meta_time < self.metadata_ttl_s:
            return meta
        with self._meta_lock:
            if self._meta is None or time.monotonic() - self._meta_time >= self.metadata_ttl_s:
                self._meta = self._fetch_metadata()
                self._meta_time = time.monotonic()
            return self._meta

    @abc.abstractmethod
    def _fetch_metadata(self) -> ModelMetadata:
        """Ask the server for the model's metadata (uncached)."""

    def _input_dtypes(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.dtype]:
        """The dtype each input is sent as: the one the metadata declares (tasks compute in
        float32; a model may take uint8, float16...), else its own. Names the metadata does not
        know are left to the server to refuse."""
        declared = self.metadata().inputs
        out: Dict[str, np.dtype] = {}
        for name, array in inputs.items():
            info = declared.get(name)
            dtype = _numpy_dtype(info.dtype) if info is not None else None
            out[name] = dtype if dtype is not None else array.dtype
        return out

    def _typed_inputs(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Each input as a C-contiguous array of the dtype it is sent as (``_input_dtypes``)."""
        dtypes = self._input_dtypes(inputs)
        out: Dict[str, np.ndarray] = {}
        for name, array in inputs.items():
            if array.dtype == dtypes[name] and array.flags.c_contiguous:
                out[name] = array
            else:
                out[name] = np.empty(array.shape, dtypes[name])
                copy_as(out[name], array)
        return out


def copy_as(dst: np.ndarray, src: np.ndarray) -> None:
    """Write ``src`` into ``dst`` (same shape) as ``dst``'s dtype; floats going to an integer type
    are rounded and clipped to its range, never truncated or wrapped."""
    if dst.dtype.kind in "iu" and src.dtype.kind == "f":
        limits = np.iinfo(dst.dtype)
        src = np.clip(np.rint(src), limits.min, limits.max)
    np.copyto(dst, src, casting="unsafe")


def _numpy_dtype(name: str) -> Optional[np.dtype]:
    try:
        return np.dtype(name)
    except TypeError:
        return None
