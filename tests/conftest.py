"""Test-session wiring: fixtures from tests/fixtures, and CI's rule on skips (tests/ci_guard.py:
under ``CI=true`` any skipped test, xfail or module skipped at collection fails the session)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = [
    "tests.ci_guard",
    "tests.fixtures.azurite",
    "tests.fixtures.ovms",
    "tests.fixtures.functions_host",
    "tests.fixtures.frontend",
]
