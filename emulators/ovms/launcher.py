"""Start ``python -m emulators.ovms`` as a subprocess for tests and scripts.

    from emulators.ovms.launcher import start_server
    with start_server(["--model_name", "pose", "--model_path", "/models/pose"]) as srv:
        client = ovmsclient.make_grpc_client(srv.address)   # srv.port, srv.url

The handle waits until ServerLive and every configured model is ready, and offers ``stop()``
(SIGTERM, graceful drain), ``kill()`` (SIGKILL), ``pause()``/``resume()`` (SIGSTOP/SIGCONT, to
simulate a stalled server) and ``restart()`` (same arguments, same port).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import grpc

log = logging.getLogger("ovms.launcher")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ServerStartError(RuntimeError):
    """The emulator exited or did not become ready in time; the message ends with its log tail."""


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when nothing listens on ``port`` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _arg(args: Sequence[str], name: str) -> Optional[str]:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def configured_models(args: Sequence[str]) -> List[str]:
    """Model names an OVMS command line serves (from --model_name or the config.json)."""
    name = _arg(args, "--model_name")
    if name:
        return [name]
    path = _arg(args, "--config_path")
    if path:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return [e["config"]["name"] for e in data.get("model_config_list", [])]
    return []


class ServerHandle:
    """A running emulator process."""

    def __init__(self, args: Sequence[str], port: int, env: Optional[Mapping[str, str]], log_path: Path) -> None:
        self.args = list(args)
        self.port = port
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None
        self.models = configured_models(self.args)

    # -- addresses
    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` (what ovmsclient.make_grpc_client and tritonclient take)."""
        return f"127.0.0.1:{self.port}"

    url = address

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, needle: str, count: int = 1, timeout: float = 60.0) -> str:
        """Wait until ``needle`` appears ``count`` times in the log and return the log. An event, not
        a clock: ``timeout`` only bounds a failure, and an exited process fails at once (with the
        log tail)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if text.count(needle) >= count:
                return text
            if self.proc is not None and self.proc.poll() is not None:
                text = self.log_text()  # what it wrote before exiting
                if text.count(needle) >= count:
                    return text
                raise ServerStartError(f"emulator exited with code {self.proc.returncode} before logging "
                                       f"{needle!r} x{count}:\n{self._tail()}")
            if time.monotonic() > deadline:
                raise ServerStartError(f"emulator did not log {needle!r} x{count} within {timeout:.0f} s:\n"
                                       f"{self._tail()}")
            time.sleep(0.02)

    # -- lifecycle
    def _spawn(self) -> None:
        if not port_is_free(self.port):  # else wait_ready could mistake another server for this one
            raise ServerStartError(f"port {self.port} is busy (another server listens on it)")
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(PROJECT_ROOT), env.get("PYTHONPATH", "")] if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        cmd = [sys.executable, "-m", "emulators.ovms", *self.args, "--port", str(self.port)]
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=str(PROJECT_ROOT),
                                         start_new_session=True)
        finally:
            logf.close()

    def wait_ready(self, timeout: float = 60.0, models: Optional[Sequence[str]] = None) -> "ServerHandle":
        """Block until ServerLive and every version of ``models`` (default: all configured) is AVAILABLE; raises
        ServerStartError with the log tail if the process exits or time runs out."""
        from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import model_service_pb2_grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        names = self.models if models is None else list(models)
        deadline = time.monotonic() + timeout
        channel = grpc.insecure_channel(self.address)
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
        try:
            pending = list(names)
            live = False
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise ServerStartError(f"emulator exited with code {self.proc.returncode}:\n{self._tail()}")
                try:
                    if not live:
                        live = stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=1).live
                    while live and pending:
                        if not self._all_versions_available(status_stub, pending[0]):
                            break
                        pending.pop(0)
                    if live and not pending:
                        return self
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerStartError(f"emulator not ready after {timeout:.0f} s (live={live}, waiting for "
                                           f"{pending}):\n{self._tail()}")
                time.sleep(0.05)
        finally:
            channel.close()

    @staticmethod
    def _all_versions_available(status_stub, name: str) -> bool:
        """Every served version of ``name`` is AVAILABLE (TFS GetModelStatus)."""
        from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import get_model_status_pb2

        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = name
        versions = status_stub.GetModelStatus(req, timeout=1).model_version_status
        return bool(versions) and all(v.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE for v in versions)

    def _tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        """SIGTERM (graceful: in-flight requests finish) and wait; SIGKILL after ``timeout``. Returns the exit code."""
        if self.proc is None:
            return None
        self._signal(signal.SIGCONT)  # a paused server could not handle SIGTERM
        self._signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait(10)

    def kill(self) -> Optional[int]:
        """SIGKILL (a crash): no draining."""
        if self.proc is None:
            return None
        self._signal(signal.SIGKILL)
        return self.proc.wait(10)

    def pause(self, timeout: float = 60.0) -> None:
        """SIGSTOP: the port stays open but nothing is answered (a stalled server). Returns once
        every thread of the process is stopped: the signal takes effect when each thread is next
        scheduled, and on a loaded machine a request sent right after ``kill`` was still answered."""
        self._signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout  # only bounds a failure
        while not self._all_threads_stopped():
            if time.monotonic() > deadline:
                raise ServerStartError(f"emulator not stopped {timeout:.0f} s after SIGSTOP")
            time.sleep(0.005)

    def _all_threads_stopped(self) -> bool:
        """Every thread in state T (stopped), from Linux ``/proc/<pid>/task/*/stat``."""
        try:
            tasks = list(Path(f"/proc/{self.pid}/task").iterdir())
            states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks]
        except (FileNotFoundError, ProcessLookupError):
            return self.proc is not None and self.proc.poll() is not None
        return bool(states) and all(s in ("T", "t") for s in states)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._signal(signal.SIGCONT)

    def restart(self, timeout: float = 60.0, wait: bool = True) -> "ServerHandle":
        """Stop (if running) and start again with the same arguments on the same port."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        deadline = time.monotonic() + 10
        while not port_is_free(self.port) and time.monotonic() < deadline:  # the old socket may linger
            time.sleep(0.1)
        self._spawn()
        return self.wait_ready(timeout) if wait else self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(args: Sequence[str], env: Optional[Mapping[str, str]] = None, timeout: float = 60.0,
                 port: Optional[int] = None, wait: bool = True, log_path: Optional[Path] = None) -> ServerHandle:
    """Start the emulator with OVMS arguments (without ``--port``) on ``port`` (default: a free one).

    With ``wait`` (default) returns once ServerLive and all configured models are ready. The process
    output goes to ``log_path`` (default: a temp file; ``handle.log_text()``).
    """
    if _arg(args, "--port") is not None:
        raise ValueError("pass the port as start_server(port=...), not in args")
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="ovms-emulator-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    handle = ServerHandle(args, port or free_port(), env, Path(log_path))
    handle._spawn()
    if wait:
        try:
            handle.wait_ready(timeout)
        except BaseException:
            handle.kill()
            raise
    return handle


def write_config(path: Path, models: Sequence[Dict]) -> Path:
    """Write an OVMS config.json: each item is the ``config`` object of a ``model_config_list`` entry."""
    path = Path(path)
    path.write_text(json.dumps({"model_config_list": [{"config": dict(m)} for m in models]}, indent=2))
    return path
