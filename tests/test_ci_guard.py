"""The CI guard fails a session in which any test did not run, however it was skipped."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "plain": "def test_ok():\n    assert 1 + 1 == 2\n",
    "skip_call": "import pytest\n\ndef test_a():\n    pytest.skip('any reason at all')\n",
    "skipif": "import pytest\n\n@pytest.mark.skipif(True, reason='x')\ndef test_a():\n    assert True\n",
    "importorskip": "import pytest\nmod = pytest.importorskip('no_such_module_ovaas')\n\n"
                    "def test_a():\n    assert mod\n",
    "module_skip": "import pytest\npytest.skip('later', allow_module_level=True)\n",
    "xfail": "import pytest\n\n@pytest.mark.xfail(reason='x')\ndef test_a():\n    assert False\n",
}


def _run(tmp_path: Path, name: str, ci: str) -> subprocess.CompletedProcess:
    (tmp_path / f"test_{name}.py").write_text(CASES[name])
    (tmp_path / "test_plain.py").write_text(CASES["plain"])  # the session has tests that run
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.ci_guard", "-p", "no:cacheprovider",
                           "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["skip_call", "skipif", "importorskip", "module_skip", "xfail"])
def test_any_test_that_did_not_run_fails_ci(tmp_path, name):
    proc = _run(tmp_path, name, "true")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "tests that did not run fail the session" in proc.stdout


@pytest.mark.parametrize("name", ["skip_call", "importorskip"])
def test_outside_ci_a_skip_is_only_reported(tmp_path, name):
    proc = _run(tmp_path, name, "")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "skipped" in proc.stdout


def test_a_clean_session_passes_in_ci(tmp_path):
    proc = _run(tmp_path, "plain", "true")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "1 passed" in proc.stdout and "skipped" not in proc.stdout
