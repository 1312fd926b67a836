"""The stop signals, blocked in every thread so that only ``sigwait`` in the main thread takes them.

Kept free of heavy imports: ``python -m emulators.ovms`` blocks them before importing OpenVINO, whose
import starts a thread (a thread created earlier would keep them unblocked and could take SIGTERM
with its default action).
"""
from __future__ import annotations

import signal

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def block_stop_signals() -> None:
    """Block SIGTERM and SIGINT in this thread and in every thread it starts from now on."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
