"""Test-session wiring: fixtures from tests/fixtures, and CI's rule on skips.

Under CI (``CI=true``) a skipped test whose reason starts with ``needs_real_models`` or
``needs_azurite`` fails the session: CI must exercise real models and a real Azurite.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.ovms",
    "tests.fixtures.functions_host",
]

_REQUIRED_SKIP_PREFIXES = ("needs_real_models", "needs_azurite")
_bad_skips = []


def pytest_runtest_logreport(report):
    if report.skipped and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if any(p in reason for p in _REQUIRED_SKIP_PREFIXES):
            _bad_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if _bad_skips:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _bad_skips:
        terminalreporter.section("CI: required tests were skipped")
        for line in _bad_skips:
            terminalreporter.write_line(line)
