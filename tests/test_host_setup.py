"""Where the worker-backed functions host comes from: finding a Python 3.13, bootstrap's plain word
where there is none, how the host and the stack choose their mode, and the worker library's
one-app-per-process rule."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from emulators.functions_host import __main__ as host_main
from emulators.functions_host import worker
from emulators.functions_host.inhouse import InHouseInvoker
from scripts.tooling import stack
from scripts.tooling.modelsearch import PROJECT_ROOT
from tests.fixtures.functions_host import host_python

FIND = PROJECT_ROOT / "scripts" / "find_python313.sh"
BASE_PATH = "/usr/bin:/bin"


def _fake_python(path: Path, answers: int) -> Path:
    """An executable standing in for an interpreter: exits ``answers`` whatever it is asked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nexit {answers}\n")
    path.chmod(0o755)
    return path


def _find(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(FIND)], capture_output=True, text=True, timeout=30,
                          env={"PATH": BASE_PATH, "HOME": env.pop("HOME", "/nonexistent"), **env})


def test_finds_pyenvs_newest_313_and_skips_a_shim_that_does_not_run(tmp_path):
    pyenv = tmp_path / "pyenv"
    _fake_python(pyenv / "versions" / "3.13.2" / "bin" / "python3.13", 0)
    newest = _fake_python(pyenv / "versions" / "3.13.10" / "bin" / "python3.13", 0)
    _fake_python(pyenv / "versions" / "3.12.1" / "bin" / "python3.13", 0)  # not a 3.13 folder
    shims = tmp_path / "shims"
    _fake_python(shims / "python3.13", 127)  # a pyenv shim of a version that is not selected
    out = _find({"PYENV_ROOT": str(pyenv), "PATH": f"{shims}:{BASE_PATH}"})
    assert (out.returncode, out.stdout.strip()) == (0, str(newest))


def test_python313_on_path_and_the_explicit_setting_come_first(tmp_path):
    pyenv = tmp_path / "pyenv"
    _fake_python(pyenv / "versions" / "3.13.0" / "bin" / "python3.13", 0)
    on_path = _fake_python(tmp_path / "bin" / "python3.13", 0)
    out = _find({"PYENV_ROOT": str(pyenv), "PATH": f"{on_path.parent}:{BASE_PATH}"})
    assert out.stdout.strip() == str(on_path)
    chosen = _fake_python(tmp_path / "opt" / "py313", 0)
    out = _find({"PYENV_ROOT": str(pyenv), "OVAAS_PYTHON313": str(chosen)})
    assert out.stdout.strip() == str(chosen)


def test_pyenvs_default_root_is_under_home(tmp_path):
    found = _fake_python(tmp_path / ".pyenv" / "versions" / "3.13.1" / "bin" / "python3.13", 0)
    assert _find({"HOME": str(tmp_path)}).stdout.strip() == str(found)


def test_no_python313_is_exit_1(tmp_path):
    out = _find({"PYENV_ROOT": str(tmp_path)})
    assert (out.returncode, out.stdout) == (1, "")


def test_real_313_is_found_on_this_machine():
    """This machine image carries one under pyenv, so CI builds .venv313."""
    out = subprocess.run(["bash", str(FIND)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, "no Python 3.13 here: the worker-backed host cannot be built"
    version = subprocess.run([out.stdout.strip(), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("Python 3.13")


def test_bootstrap_says_plainly_when_there_is_no_313(tmp_path):
    if not (PROJECT_ROOT / ".venv" / ".requirements.sha256").is_file():
        pytest.fail(".venv is not bootstrapped")
    env = {"PATH": BASE_PATH, "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path)}
    out = subprocess.run(["bash", "scripts/bootstrap.sh"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "no Python 3.13 found" in out.stdout
    assert "in-house invocation path" in out.stdout and "Everything else works" in out.stdout


# --- choosing the mode ------------------------------------------------------------------------

def test_host_mode_choice(monkeypatch, capsys):
    monkeypatch.setattr(worker, "unavailable_reason", lambda: "needs Python 3.13+, this is 3.11")
    with pytest.raises(ValueError, match="--mode worker: needs Python 3.13"):
        host_main.choose_invoker("worker", PROJECT_ROOT)
    invoker = host_main.choose_invoker("auto", PROJECT_ROOT)
    assert isinstance(invoker, InHouseInvoker) and invoker.mode == "in-house"
    assert "Worker-backed mode unavailable: needs Python 3.13+" in capsys.readouterr().out
    assert isinstance(host_main.choose_invoker("in-house", PROJECT_ROOT), InHouseInvoker)


def test_stack_says_why_it_runs_the_in_house_host(monkeypatch):
    monkeypatch.setattr(worker, "unavailable_reason", lambda: "needs Python 3.13+")
    monkeypatch.setattr(worker, "worker_python", lambda root: None)
    python, mode, why = stack.host_python("auto")
    assert mode == "in-house" and "no .venv313" in why and "found no Python 3.13" in why
    with pytest.raises(stack.StackError, match="--host-mode worker"):
        stack.host_python("worker")
    monkeypatch.setattr(worker, "worker_python", lambda root: Path("/x/.venv313/bin/python"))
    assert stack.host_python("auto")[:2] == ("/x/.venv313/bin/python", "worker")
    assert stack.host_python("in-house")[1] == "in-house"


def test_worker_library_allows_one_app_per_process():
    python = host_python("worker")
    code = ("from pathlib import Path\n"
            "from emulators.functions_host.worker import WorkerInvoker\n"
            "WorkerInvoker(Path('.'))\n"
            "try:\n    WorkerInvoker(Path('.'))\nexcept RuntimeError as e:\n    print(e)\n")
    out = subprocess.run([python, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert out.returncode == 0, out.stderr
    assert "one app per process" in out.stdout
