"""The one admission rule: a memory budget per instance, reserved by each request before decoding.

Every endpoint documents its worst-case peak as ``a + b x megapixels`` (``shared.catalog``,
``Endpoint.memory``). ``shared.http`` reads the picture's header, then reserves that peak for the
request's whole life (decode, preprocess, model call, postprocess, render, encode) from
``BUDGET``, whose size is the setting ``MEMORY_BUDGET_MB`` or, by default, the instance's memory
less the app's resting size (``shared.config.memory_budget_bytes``). So whatever mix of requests
inside the limits arrives, what they hold at once stays within the budget:

- a request whose reservation fits the free budget is admitted at once;
- one that does not fit waits, using no CPU (a ``threading.Condition``), at most ``wait_s``, while
  a waiting place is free (every worker thread but one may wait); beyond either, 503
  ``server_busy`` with ``Retry-After: 1``;
- small pictures are never starved: requests for pictures under ``LARGE_PIXELS`` (4 MP) may use
  the whole budget, large ones all of it but ``small_reserve`` (room for a small request at the
  largest factor), so a small request never waits behind large ones;
- large requests are admitted first come, first served: a later one never overtakes a waiting
  one, so a 40 MP request is not starved by a stream of 10 MP ones;
- a reservation larger than the budget (settings that cannot fit, warned about at start-up) is
  clamped to it: that request runs alone, it does not block forever.

Large decodes also run on worker threads with a raised ``nice`` value (as many threads as the
worker has: a priority, not a second gate), so when CPUs are short the requests' own threads go
first. ``pause`` parks a thread for a moment before a refusal, on the same waiting places.

The budget is per process (each Functions worker process has its own; Flex runs one).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, List, Optional, TypeVar

from shared.errors import ServerBusy

T = TypeVar("T")

#: Pictures this large (4 MP) are "large": ~30-100 ms of CPU to decode; smaller ones may use the
#: small reserve and never queue behind large ones.
LARGE_PIXELS = 4_000_000
MB = 1 << 20


class MemoryBudget:
    """``total`` bytes shared by the requests in flight in this process (see the module doc)."""

    def __init__(self, total: int, wait_s: float, queue: int, small_reserve: int = 0,
                 nice: int = 10, workers: int = 4) -> None:
        self.total, self.wait_s, self.queue = max(1, int(total)), wait_s, queue
        self.small_reserve = max(0, min(int(small_reserve), self.total // 2))
        self.nice, self.workers = nice, max(1, workers)
        self._cond = threading.Condition()
        self._held = 0
        self._waiting = 0
        self._large_queue: List[int] = []  # tickets of waiting large requests, oldest first
        self._tickets = itertools.count()
        self._local = threading.local()
        self._pool: Optional[ThreadPoolExecutor] = None

    @property
    def held(self) -> int:
        """Bytes reserved right now."""
        return self._held

    @property
    def waiting(self) -> int:
        """Threads waiting for room (or pausing)."""
        return self._waiting

    @property
    def free(self) -> int:
        return self.total - self._held

    def holding(self) -> bool:
        """True when this thread holds a reservation."""
        return bool(getattr(self._local, "held", 0))

    @contextlib.contextmanager
    def reserve(self, nbytes: int, pixels: int) -> Iterator[int]:
        """Hold ``nbytes`` (for a picture of ``pixels``) for the ``with`` block: at once when it
        fits, else after a bounded wait, else 503 ``server_busy``. Re-entrant per thread (a
        nested reservation inside a held one is already counted)."""
        if self.holding():
            yield 0
            return
        large = pixels >= LARGE_PIXELS
        need = min(max(0, int(nbytes)), self.total - (self.small_reserve if large else 0))
        self._acquire(need, large)
        self._local.held = need or 1
        try:
            yield need
        finally:
            self._local.held = 0
            with self._cond:
                self._held -= need
                self._cond.notify_all()

    def run(self, pixels: int, work: Callable[[], T]) -> T:
        """``work()``; a large picture's on a low-priority worker thread (never a queue: there
        are as many such threads as worker threads)."""
        if pixels < LARGE_PIXELS:
            return work()
        with self._cond:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="decode",
                                                initializer=_lower_priority, initargs=(self.nice,))
        return self._pool.submit(work).result()

    def pause(self, seconds: float) -> None:
        """Park this thread ``seconds`` (no CPU) if a waiting place is free, else return at once:
        slows a client that loops on files refused as hostile without tying up more threads
        than the waiting places allow."""
        with self._cond:
            if self._waiting >= self.queue:
                return
            self._waiting += 1
        try:
            time.sleep(seconds)
        finally:
            with self._cond:
                self._waiting -= 1

    def _fits(self, need: int, large: bool, ticket: Optional[int]) -> bool:
        if large:
            if self._large_queue and self._large_queue[0] != ticket:
                return False  # first come, first served among large requests
            return self._held + need <= self.total - self.small_reserve
        return self._held + need <= self.total

    def _acquire(self, need: int, large: bool) -> None:
        busy = ServerBusy("the server is busy with large pictures right now; retry shortly",
                          retry_after=1)
        with self._cond:
            if self._fits(need, large, None):
                self._held += need
                return
            if self._waiting >= self.queue:
                raise busy
            ticket = next(self._tickets)
            if large:
                self._large_queue.append(ticket)
            self._waiting += 1
            try:
                deadline = time.monotonic() + self.wait_s
                while not self._fits(need, large, ticket):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise busy
                    self._cond.wait(left)
                self._held += need
            finally:
                self._waiting -= 1
                if large:
                    self._large_queue.remove(ticket)
                self._cond.notify_all()  # the next large request in line may fit now


def _lower_priority(nice: int) -> None:
    """Raise this thread's nice value by ``nice`` (Linux: per thread); elsewhere nothing."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (AttributeError, OSError):
        pass


def fits(total: int, concurrency: int, max_pixels: int, max_body_bytes: int) -> bool:
    """True when ``concurrency`` requests at the limits fit in ``total`` bytes at once (each
    reserves its endpoint's peak and its body)."""
    from shared import catalog

    return concurrency * (catalog.largest_peak_bytes(max_pixels) + max_body_bytes) <= total


def from_settings() -> MemoryBudget:
    """The process's budget from the settings (``shared.config``) and the catalog's factors; a
    warning in the log when the settings cannot hold their own concurrency at the pixel limit
    (names the settings, never their values)."""
    from shared import catalog, config
    from shared.logs import get_logger

    threads = config.worker_threads()
    total = config.memory_budget_bytes()
    limits = config.limits()
    if not fits(total, threads, limits.max_image_pixels, limits.max_body_bytes):
        need = catalog.required_instance_mb(threads, limits.max_image_pixels, limits.max_body_bytes)
        get_logger("budget").warning(
            "the memory budget (MEMORY_BUDGET_MB, or the instance's memory less the app's resting "
            "size) cannot hold PYTHON_THREADPOOL_THREAD_COUNT requests at once at MAX_IMAGE_PIXELS: "
            "large pictures will wait or get 503 server_busy. An instance of %.0f MiB fits them "
            "(README, Limits); or lower MAX_IMAGE_PIXELS or the concurrency", need)
    return MemoryBudget(total=total, wait_s=10.0, queue=max(1, threads - 1),
                        small_reserve=catalog.largest_peak_bytes(LARGE_PIXELS - 1), workers=threads)


_budget: Optional[MemoryBudget] = None
_lock = threading.Lock()


def get() -> MemoryBudget:
    """This process's budget, made from the settings on first use."""
    global _budget
    if _budget is None:
        with _lock:
            if _budget is None:
                _budget = from_settings()
    return _budget


def set_budget(budget: Optional[MemoryBudget]) -> None:
    """Replace this process's budget (None: made again from the settings on next use)."""
    global _budget
    with _lock:
        _budget = budget
