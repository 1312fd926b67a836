"""LaunchAzurite: starts Azurite from npm, a second call finds the running one; wrappers work."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from scripts.tooling import azurite as az
from scripts.tooling.modelsearch import PROJECT_ROOT


@pytest.mark.needs_azurite
def test_launch_azurite_is_idempotent(tmp_path):
    if az.find_binary("azurite-blob") is None:
        pytest.skip("needs_azurite: Azurite is not installed (run `bash scripts/bootstrap.sh`)")
    port = az.free_port()
    cmd = ["bash", str(PROJECT_ROOT / "scripts" / "LaunchAzurite.sh"), "--npm", "--blob-port",
           str(port), "--location", str(tmp_path / "data")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    pid_file = tmp_path / "data" / "azurite.pid"
    try:
        assert first.returncode == 0, first.stderr
        assert "Started Azurite" in first.stderr
        assert first.stdout.strip() == az.connection_string("127.0.0.1", port)
        assert az.blob_endpoint_answers("127.0.0.1", port)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert second.returncode == 0 and "already running" in second.stderr
        assert second.stdout == first.stdout
    finally:
        if pid_file.exists():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_port_taken_by_something_else_is_refused(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "scripts.tooling.azurite", "--npm",
                               "--blob-port", str(port), "--location", str(tmp_path)],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "not Azurite" in proc.stderr


def test_every_script_has_sh_and_bat_wrappers():
    """Each .sh wrapper reaches its Python command (run with --help: the usage names the module and
    sub-command). The .bat twins cannot run here (no cmd.exe), so only their target is checked."""
    scripts = PROJECT_ROOT / "scripts"
    env = {**os.environ, "PYTHONPATH": ""}
    for name, target in [("LaunchAzurite", "azurite"), ("GetModelList", "omz list"),
                         ("DownloadModel", "omz download"), ("LaunchOVMS", "ovms one"),
                         ("LaunchALLOVMS", "ovms all"), ("stack", "stack")]:
        assert os.access(scripts / f"{name}.sh", os.X_OK)
        proc = subprocess.run([str(scripts / f"{name}.sh"), "--help"], capture_output=True, text=True,
                              timeout=30, env=env, cwd="/")
        assert proc.returncode == 0, proc.stderr[-500:]
        assert proc.stdout.startswith(f"usage: python -m scripts.tooling.{target} "), (name, proc.stdout[:200])
        bat = (scripts / f"{name}.bat").read_text()
        assert f"-m scripts.tooling.{target}" in bat.replace(" %*", "")
    proc = subprocess.run(["bash", str(scripts / "LaunchALLOVMS.sh"), "10.0.0.5", "--dry-run",
                           "--docker"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("docker run -d --rm --name ovaas-ovms ")
