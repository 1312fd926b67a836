"""Waiting on a state in tests: an event, not a clock."""
from __future__ import annotations

import threading
import time
from typing import Callable

#: The ceiling of a state wait: it only bounds a failure, and passing never depends on it.
CEILING_S = 60.0


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = CEILING_S) -> None:
    """Return as soon as ``predicate()`` holds (polled every 10 ms); AssertionError naming ``what``
    if it still does not after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        threading.Event().wait(0.01)
