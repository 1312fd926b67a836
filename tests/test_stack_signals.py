"""The stack command's signal handling (scripts/tooling/stack.py): its handler never blocks, nothing
started can be left running unknown to the clean-up, and a second Ctrl+C cannot cut the clean-up
short. Each signal is sent by the test to itself at the moment it names: no clock."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from scripts.tooling import stack as stack_mod

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def interrupt():
    """The stack's handler installed for SIGTERM, as ``main`` installs it; restored after."""
    handler = stack_mod.Interrupt()
    old = signal.signal(signal.SIGTERM, handler)
    yield handler
    signal.signal(signal.SIGTERM, old)


def _signal_inside_popen(monkeypatch, started):
    """Popen that sends SIGTERM to this process the instant the child exists: the worst moment for
    a handler that raises."""
    real_popen = subprocess.Popen

    def popen_then_signal(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        os.kill(os.getpid(), signal.SIGTERM)
        return started[-1]

    monkeypatch.setattr(stack_mod.subprocess, "Popen", popen_then_signal)


def test_a_process_started_as_the_signal_comes_is_registered_and_stopped(monkeypatch, interrupt):
    stack, started = stack_mod.Stack(interrupt), []
    _signal_inside_popen(monkeypatch, started)
    try:
        with pytest.raises(KeyboardInterrupt):  # the signal is still taken, once the block ends
            stack.spawn("sleeper", SLEEPER, {})
        assert [(what, proc) for what, proc in stack.procs] == [("sleeper", started[0])]
        stack.stop()  # what main's clean-up does
        assert started[0].wait(30) == -signal.SIGTERM  # it took the stack's SIGTERM
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_control_a_handler_that_raises_at_once_orphans_the_process(monkeypatch):
    """The same moment with a handler that raises wherever it lands (the old one): the child is
    never registered. This is what ``Interrupt.deferred`` prevents."""

    def raise_at_once(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raise_at_once)
    stack, started = stack_mod.Stack(), []
    _signal_inside_popen(monkeypatch, started)
    try:
        with pytest.raises(KeyboardInterrupt):
            stack.spawn("sleeper", SLEEPER, {})
        assert stack.procs == [] and len(started) == 1 and started[0].poll() is None  # orphaned
    finally:
        signal.signal(signal.SIGTERM, old)
        for proc in started:
            proc.kill()
            proc.wait(10)


def test_only_the_first_signal_interrupts(interrupt):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as this call returns
    assert interrupt.taken
    os.kill(os.getpid(), signal.SIGTERM)  # during the clean-up: nothing raised
    with interrupt.deferred():
        os.kill(os.getpid(), signal.SIGTERM)  # nor here, nor at the end of the block


def test_a_signal_in_a_deferred_block_is_taken_when_it_ends(interrupt):
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            reached.append("end of block")  # not cut inside
    assert reached == ["end of block"] and interrupt.taken and not interrupt.pending


def test_a_failing_block_keeps_its_own_error(interrupt):
    with pytest.raises(FileNotFoundError):  # the caller reports the failure; the signal is kept
        with interrupt.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            raise FileNotFoundError("no such program")
    assert interrupt.pending and not interrupt.taken
