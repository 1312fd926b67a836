"""Per-stage wall-clock timings of one request (``timing_ms`` and the Server-Timing header)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Iterator


class Timings:
    """Milliseconds per stage; a stage that runs several times (one inference per text line)
    accumulates."""

    def __init__(self) -> None:
        self._ms: Dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as stage ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        """Add ``ms`` to stage ``name``."""
        self._ms[name] = self._ms.get(name, 0.0) + ms

    def to_dict(self) -> Dict[str, float]:
        """Stage -> milliseconds, rounded to microseconds, in the order the stages first ran."""
        return {k: round(v, 3) for k, v in self._ms.items()}
