"""What every task (one per model) provides, and the shared pipeline that drives it.

A task turns a decoded image into model inputs (``preprocess``), model outputs into a frozen
result dataclass (``postprocess``), and a result into a picture (``render``). The default
``run`` is one ``preprocess -> infer -> postprocess`` pass with per-stage timings; a task that
needs several inferences per request (e.g. one per text line) overrides ``run``.

Heavy modules (numpy, cv2) are imported by task modules, which ``shared.tasks.get_task``
imports lazily on the first request, so importing a function module stays cheap (cold start).
"""
from __future__ import annotations

import abc
import math
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np

from shared.errors import InvalidOption
from shared.serving.base import InferenceAdapter, ModelMetadata


class Timings:
    """Per-stage wall-clock timings in milliseconds (stages may repeat and accumulate)."""

    def __init__(self) -> None:
        self._ms: Dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        self._ms[name] = self._ms.get(name, 0.0) + ms

    def get(self, name: str) -> float:
        return self._ms.get(name, 0.0)

    def to_dict(self) -> Dict[str, float]:
        return {k: round(v, 3) for k, v in self._ms.items()}


class Task(abc.ABC):
    """One model's pipeline. Subclasses set ``name`` and ``settings_prefix``."""

    name: str = ""
    settings_prefix: str = ""

    def parse_options(self, raw: Mapping[str, Any]) -> Any:
        """Validate this task's options (raise ``InvalidOption``); unknown keys are ignored."""
        return None

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

    def run(self, image: np.ndarray, adapter: InferenceAdapter, options: Any,
            timings: Timings) -> Any:
        """One ``preprocess -> infer -> postprocess`` pass, timed per stage."""
        meta = adapter.metadata()
        with timings.stage("preprocess"):
            inputs, context = self.preprocess(image, meta, options)
        with timings.stage("inference"):
            outputs = adapter.infer(inputs)
        with timings.stage("postprocess"):
            return self.postprocess(outputs, context, meta, options)


# ---- option parsing helpers (values arrive as JSON values or as form/query strings) ----------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def opt_bool(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    """A boolean option: JSON true/false or the strings 1/0, true/false, yes/no, on/off."""
    if name not in raw or raw[name] is None:
        return default
    value = raw[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidOption(f"option {name!r} must be a boolean (true/false), got {_show(value)}")


def opt_float(raw: Mapping[str, Any], name: str, default: float,
              lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite number option within [lo, hi]."""
    if name not in raw or raw[name] is None:
        return default
    value = raw[name]
    if isinstance(value, bool):
        raise InvalidOption(f"option {name!r} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidOption(f"option {name!r} must be a number, got {_show(value)}") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise InvalidOption(f"option {name!r} must be between {lo:g} and {hi:g}, got {_show(value)}")
    return number


def opt_int(raw: Mapping[str, Any], name: str, default: Optional[int],
            lo: int = -(2 ** 31), hi: int = 2 ** 31 - 1) -> Optional[int]:
    """An integer option within [lo, hi]."""
    if name not in raw or raw[name] is None:
        return default
    value = raw[name]
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise InvalidOption(f"option {name!r} must be an integer, got {_show(value)}")
    try:
        number = int(value) if not isinstance(value, str) else int(value.strip(), 10)
    except (TypeError, ValueError):
        raise InvalidOption(f"option {name!r} must be an integer, got {_show(value)}") from None
    if not lo <= number <= hi:
        raise InvalidOption(f"option {name!r} must be between {lo} and {hi}, got {number}")
    return number


def opt_choice(raw: Mapping[str, Any], name: str, default: str, choices: Sequence[str]) -> str:
    """A string option from a fixed set (case-insensitive)."""
    if name not in raw or raw[name] is None:
        return default
    value = raw[name]
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise InvalidOption(f"option {name!r} must be one of {', '.join(choices)}, got {_show(value)}")
    return value.strip().lower()


def opt_str(raw: Mapping[str, Any], name: str, default: Optional[str],
            max_len: int = 10000) -> Optional[str]:
    """A free string option of bounded length."""
    if name not in raw or raw[name] is None:
        return default
    value = raw[name]
    if not isinstance(value, str):
        raise InvalidOption(f"option {name!r} must be a string, got {_show(value)}")
    if len(value) > max_len:
        raise InvalidOption(f"option {name!r} is longer than {max_len} characters")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
