"""Keep large buffers on the heap instead of mapping them afresh for every request.

Each request moves a few megabytes at a time: the body, the decoded picture, the model inputs, the
raw tensor contents and the protobuf messages that carry them. glibc's allocator serves blocks of
128 KB and more with mmap and gives them back to the kernel on free (its dynamic threshold moves, but
not reliably for the sizes a request mixes), so the next request's buffers are page-faulted in again
and zeroed by the kernel: about 1,400 page faults for one 2 MB gRPC call, which took 8.9 ms where
3.8 ms sufficed with the buffers kept (measured side by side on loopback, both processes tuned).

``keep_large_buffers()`` raises glibc's mmap threshold to its documented 64-bit maximum (32 MiB) and
its trim threshold to 64 MiB, so such blocks come from the heap and are reused; pictures beyond
32 MiB are still mapped and returned. Elsewhere than glibc (musl, macOS, Windows) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading
from typing import Optional

log = logging.getLogger("ovaas.allocator")

M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD = 64 * 1024 * 1024

_done: Optional[bool] = None  # the outcome, once tried: tried once per process, whatever it was
_lock = threading.Lock()


def keep_large_buffers() -> bool:
    """Tune glibc's allocator, tried once per process (it is called on every request); True when
    it was tuned."""
    global _done
    if _done is not None:
        return _done
    with _lock:
        if _done is None:
            _done = _tune()
        return _done


def _tune() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("glibc malloc: mmap threshold %d, trim threshold %d: %s", MMAP_THRESHOLD, TRIM_THRESHOLD,
              "set" if tuned else "refused")
    return tuned
