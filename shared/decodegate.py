"""Admission of large decodes: a few clients sending huge pictures cannot starve everyone else.

Decoding a picture of ``LARGE_PIXELS`` or more (4 MP: ~30-100 ms of CPU, up to ~1-3 s at the
40 MP limit) goes through ``DECODE_GATE``:

- at most ``slots`` such decodes run at once in this process (one per CPU but one: the other CPU
  keeps serving everyone else), on worker threads with a raised ``nice`` value, so when CPUs are
  short the requests' own threads go first;
- a large decode that finds every slot busy waits, using no CPU, while a worker thread can be
  spared (every thread of the Functions Python worker but the decoding ones and one kept for
  small requests), at most ``wait_s``; beyond that it is refused at once with 503 ``server_busy``
  and ``Retry-After: 1``;
- pictures under ``LARGE_PIXELS`` never wait: ordinary requests are never queued behind a flood of
  huge ones;
- ``pause`` parks a thread for a moment before a refusal, on the same budget of spare threads
  (``shared.imaging`` pauses 50 ms before answering a file refused as too complex).

The gate is per process (each Functions worker process has its own).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Optional, TypeVar

from shared.errors import ServerBusy

T = TypeVar("T")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (containers, taskset)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class DecodeGate:
    """At most ``slots`` decodes of large pictures at once in this process, at most ``queue`` more
    waiting (each up to ``wait_s``); a large decode beyond that is refused at once with 503
    ``server_busy`` and Retry-After, so waiting never ties up the host's worker threads.

    Pictures under ``large_pixels`` never wait: ordinary requests are never queued behind a flood
    of huge ones. ``run`` does a large decode on one of ``slots`` worker threads running at a lower
    CPU priority (``nice``), so when CPUs are short the requests' own threads go first.
    Re-entrant per thread (a caller may hold a slot around decode and more work).
    """

    def __init__(self, slots: int, queue: int, wait_s: float, large_pixels: int,
                 nice: int = 10) -> None:
        self.slots, self.queue, self.wait_s, self.large_pixels = slots, queue, wait_s, large_pixels
        self.nice = nice
        self._cond = threading.Condition()
        self._running = 0
        self._waiting = 0
        self._local = threading.local()
        self._workers: Optional[ThreadPoolExecutor] = None

    def run(self, pixels: int, work: Callable[[], T]) -> T:
        """``work()`` under ``admit(pixels)``; a large one on a low-priority worker thread."""
        if pixels < self.large_pixels or getattr(self._local, "held", False):
            return work()
        with self.admit(pixels):
            with self._cond:
                if self._workers is None:
                    self._workers = ThreadPoolExecutor(max_workers=max(1, self.slots),
                                                       thread_name_prefix="decode",
                                                       initializer=_lower_priority, initargs=(self.nice,))
            return self._workers.submit(work).result()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextlib.contextmanager
    def admit(self, pixels: int) -> Iterator[None]:
        """Hold a slot while decoding ``pixels`` pixels (no slot for small pictures)."""
        if pixels < self.large_pixels or getattr(self._local, "held", False):
            yield
            return
        self._acquire()
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = False
            with self._cond:
                self._running -= 1
                self._cond.notify()

    def pause(self, seconds: float) -> None:
        """Park this thread ``seconds`` (no CPU) if a place in the queue is free, else return at
        once: slows a client that loops on files refused as hostile without ever tying up more
        threads than the queue allows."""
        with self._cond:
            if self._waiting >= self.queue:
                return
            self._waiting += 1
        try:
            time.sleep(seconds)
        finally:
            with self._cond:
                self._waiting -= 1

    def _acquire(self) -> None:
        with self._cond:
            if self._running < self.slots:
                self._running += 1
                return
            if self._waiting >= self.queue:
                raise ServerBusy("too many large pictures are being decoded right now; retry shortly",
                                 retry_after=1)
            self._waiting += 1
            try:
                deadline = time.monotonic() + self.wait_s
                while self._running >= self.slots:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ServerBusy("too many large pictures are being decoded right now; "
                                         "retry shortly", retry_after=1)
                    self._cond.wait(left)
                self._running += 1
            finally:
                self._waiting -= 1


def _lower_priority(nice: int) -> None:
    """Raise this thread's nice value by ``nice`` (Linux: per thread); elsewhere nothing."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (AttributeError, OSError):
        pass


def _worker_threads() -> int:
    """Threads the Functions Python worker runs functions on (``shared.config.worker_threads``)."""
    from shared import config

    return config.worker_threads()


#: A picture this large takes ~30-100 ms of CPU to decode (4 MP); smaller ones never wait.
LARGE_PIXELS = 4_000_000
_SLOTS = max(1, _cpu_count() - 1)
#: One large decode per CPU but one (the other CPU keeps serving everyone else). Waiting for a
#: slot parks a worker thread without using CPU: every thread but the running ones and one (kept
#: for small requests) may wait, at most 10 s each; beyond that, 503 at once.
DECODE_GATE = DecodeGate(slots=_SLOTS, queue=max(1, _worker_threads() - _SLOTS - 1), wait_s=10.0,
                         large_pixels=LARGE_PIXELS)
