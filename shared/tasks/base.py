"""What every task (one per model) provides, and the shared pipeline that drives it.

A task binds to a served model once per metadata version (``bind``: input and output names,
sizes, layout, variant, all derived from the metadata and cached), turns a decoded image into
model inputs (``preprocess``), model outputs into a frozen result dataclass (``postprocess``), and
a result into a picture (``render``). The default ``run`` is one ``preprocess -> infer ->
postprocess`` pass with per-stage timings; a task that needs several inferences per request (one
per text line) overrides ``run``. Inputs are float32 (or whatever the task computes in): the
adapter casts them to the dtypes the metadata declares.

Heavy modules (numpy, cv2) are imported by task modules, which ``shared.tasks.get_task`` imports
lazily on the first request, so importing a function module stays cheap (cold start).
"""
from __future__ import annotations

import abc
import threading
from collections import OrderedDict
from typing import Any, Dict, Generic, Mapping, Optional, Tuple, TypeVar

import numpy as np

from shared.serving.base import InferenceAdapter, ModelMetadata
from shared.timings import Timings

B = TypeVar("B")  # a task's binding: what it derived from one model's metadata

#: bindings kept per task (one per served model and metadata version; a handful at most)
MAX_BINDINGS = 8


class Task(abc.ABC, Generic[B]):
    """One model's pipeline. Subclasses set ``name`` (the catalog's task name)."""

    name: str = ""

    def __init__(self) -> None:
        self._bindings: "OrderedDict[tuple, B]" = OrderedDict()
        self._last: Optional[Tuple[ModelMetadata, B]] = None
        self._bind_lock = threading.Lock()

    def parse_options(self, raw: Mapping[str, Any]) -> Any:
        """Validate this task's options (raise ``InvalidOption``); unknown keys are ignored."""
        return None

    @abc.abstractmethod
    def bind(self, meta: ModelMetadata) -> B:
        """What this task needs to know about the served model, from its metadata (raise
        ``BadModelOutput`` when the model cannot serve this task). Called once per metadata
        version; use ``bound``."""

    def bound(self, meta: ModelMetadata) -> B:
        """``bind(meta)``, derived once per metadata version and cached."""
        last = self._last
        if last is not None and last[0] is meta:
            return last[1]
        key = meta.key
        with self._bind_lock:
            binding = self._bindings.get(key)
            if binding is None:
                binding = self.bind(meta)
                self._bindings[key] = binding
                while len(self._bindings) > MAX_BINDINGS:
                    self._bindings.popitem(last=False)
            self._last = (meta, binding)
        return binding

    @abc.abstractmethod
    def preprocess(self, image: np.ndarray, meta: ModelMetadata, options: Any
                   ) -> Tuple[Dict[str, np.ndarray], Any]:
        """BGR uint8 HxWx3 image -> (model inputs, context for postprocess)."""

    @abc.abstractmethod
    def postprocess(self, outputs: Mapping[str, np.ndarray], context: Any, meta: ModelMetadata,
                    options: Any) -> Any:
        """Model outputs -> a frozen result dataclass with ``to_dict()``."""

    @abc.abstractmethod
    def render(self, image: np.ndarray, result: Any, options: Any) -> np.ndarray:
        """The result drawn for people: a BGR uint8 image."""

    def render_owned(self, image: np.ndarray, result: Any, options: Any) -> np.ndarray:
        """``render`` of a picture the caller hands over (``shared.http``: the request's decoded
        picture, not used afterwards), so a task may draw on it instead of on a full-size copy.
        By default ``render``."""
        return self.render(image, result, options)

    def run_owned(self, image: np.ndarray, adapter: InferenceAdapter, options: Any, timings: Timings,
                  meta: Optional[ModelMetadata] = None) -> Any:
        """``run`` on a picture the caller hands over, so a task may write its answer into it
        instead of holding a second full-size picture (colorization does). By default ``run``."""
        return self.run(image, adapter, options, timings, meta=meta)

    def run(self, image: np.ndarray, adapter: InferenceAdapter, options: Any, timings: Timings,
            meta: Optional[ModelMetadata] = None) -> Any:
        """One ``preprocess -> infer -> postprocess`` pass, timed per stage (``meta``: the
        request's metadata when the caller has it already)."""
        meta = meta or adapter.metadata()
        with timings.stage("preprocess"):
            inputs, context = self.preprocess(image, meta, options)
        with timings.stage("inference"):
            outputs = adapter.infer(inputs)
        with timings.stage("postprocess"):
            return self.postprocess(outputs, context, meta, options)
