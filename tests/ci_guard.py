"""CI's rule on skips, as a pytest plugin (loaded by tests/conftest.py).

Under CI (``CI=true``) any test that did not run fails the session, whatever the reason: a test
skipped at run time (``pytest.skip``, ``skipif``), an expected failure (``xfail``), and a module
skipped at collection (``pytest.importorskip``, a module-level ``pytest.skip``), which makes every
test in the file vanish. CI must exercise real models, a real Azurite and every function module.
"""
from __future__ import annotations

import os
from typing import List

_not_run: List[str] = []


def in_ci() -> bool:
    """True when the CI variable says so (``CI=true``, ``1`` or ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _reason(report) -> str:
    longrepr = report.longrepr
    return str(longrepr[-1]) if isinstance(longrepr, tuple) else str(longrepr)


def pytest_runtest_logreport(report):
    if report.skipped:
        kind = "xfail" if hasattr(report, "wasxfail") else "skipped"
        _not_run.append(f"{report.nodeid} ({kind}): {_reason(report)}")


def pytest_collectreport(report):
    if report.skipped:
        _not_run.append(f"{report.nodeid} (whole module skipped at collection): {_reason(report)}")


def pytest_sessionfinish(session, exitstatus):
    if _not_run and in_ci() and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _not_run and in_ci():
        terminalreporter.section("CI: tests that did not run fail the session")
        for line in _not_run:
            terminalreporter.write_line(line)
