"""The whole local stack in one command: storage, models, model server, functions host.

1. ``bash scripts/bootstrap.sh`` (``--no-bootstrap`` skips it);
2. Azurite (LaunchAzurite logic: reuse a running one, else Docker image or npm);
3. the four models uploaded to container ``ovms`` in OVMS layout (found with modelsearch; a
   missing one is downloaded with DownloadModel; offline, it stops saying what to do);
4. the model server, listening on 127.0.0.1 only: the real OVMS container where a Docker engine
   runs (port published on 127.0.0.1), else ``python -m emulators.ovms --config_path
   models/config.json --port 9000 --grpc_bind_address 127.0.0.1``;
5. the functions host: ``func start`` if Core Tools are installed, else
   ``python -m emulators.functions_host --port 7071``: worker-backed (Microsoft's Python worker,
   in .venv313) when scripts/bootstrap.sh found a Python 3.13, else its in-house path; the output
   says which.

Ctrl+C (or SIGTERM) stops every process it started.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Optional, Tuple

from scripts.tooling import azurite as az
from scripts.tooling import ovms
from scripts.tooling.dockerutil import docker_available
from scripts.tooling.modelsearch import PROJECT_ROOT, find_model, find_side_file, ovms_layout
from scripts.tooling.upload import UploadError
from shared import catalog
#: Where the stack's model server listens: this machine only.
LOOPBACK = "127.0.0.1"
OFFLINE_HINT = ("Offline? Point the search path at local model copies, e.g.\n"
                "  export OVAAS_MODELS_DIR=../shared/models-real:../shared/models-synthetic\n"
                "or put them in models/<name>/1/ (OVMS layout) or models/<intel|public>/<name>/<FP16>/.")


class StackError(Exception):
    """The stack cannot come up (message is meant for the user)."""


def _say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def check_ports(ports: Dict[str, int]) -> None:
    """Raise naming every port that is already in use."""
    busy = [f"{what} port {port}" for what, port in ports.items() if az.port_in_use("127.0.0.1", port)]
    if busy:
        raise StackError("in use: " + ", ".join(busy) + " (stop what uses it or pick another port)")


def locate_models(detection_model: str, release: str, download: bool = True) -> List[dict]:
    """Find (or download) each catalog endpoint's model and side files; raise with instructions
    if one is missing (an optional side file, such as a labels file, may be absent)."""
    found, missing = [], []
    for endpoint in catalog.ENDPOINTS:
        served = endpoint.model_name
        src = detection_model if endpoint.task == "detection" else endpoint.omz_model
        path = find_model(src)
        if path is None and download:
            from scripts.tooling import omz
            try:
                _say(f"{src} not found locally: trying DownloadModel {src} {release}")
                omz.download_model(src, release, endpoint.omz_precision)
                path = find_model(src)
            except omz.DownloadError as exc:
                _say(f"download failed: {exc}")
        side_paths = []
        for side in endpoint.side_files:
            if side.filename is None:  # nothing to upload (e.g. the font)
                continue
            fname = side.filename.format(model=src)
            if side.where == catalog.LABELS_FOLDER:  # optional: label ids are shown without it
                labels = PROJECT_ROOT / "models" / "labels" / fname
                if labels.is_file():
                    side_paths.append((labels, side.setting))
                continue
            located = find_side_file(src, fname)
            if located is None:
                missing.append(f"{src}: side file {fname}")
            else:
                side_paths.append((located, side.setting))
        if path is None:
            missing.append(f"{src} (served as {served})")
            continue
        found.append({"source": src, "name": served, "path": path, "sides": side_paths,
                      "u8_input": endpoint.u8_input})
    if missing:
        raise StackError("missing: " + "; ".join(missing) + "\n" + OFFLINE_HINT)
    return found


def upload_models(cs, models: List[dict]) -> Dict[str, str]:
    """Upload every model to container ``ovms``; return the side-file settings (az:// paths)."""
    from scripts.tooling import modelprep
    from scripts.tooling.upload import upload_model
    settings = {}
    convert = modelprep.available()
    if not convert and any(m["u8_input"] for m in models):
        _say("the openvino package is not installed: models are uploaded as published (f32 image "
             "inputs: the same answers, four times the bytes per request)")
    for m in models:
        folder = m["path"]
        report = upload_model(cs, m["name"], folder=folder, extra_files=[p for p, _ in m["sides"]],
                              u8_input=m["u8_input"] and convert)
        layout = "OVMS" if ovms_layout(folder) else "OMZ"
        _say(f"{m['name']}: {len(report.uploaded)} uploaded, {len(report.skipped)} unchanged "
             f"(from {folder}, {layout} layout{', u8 image input' if m['u8_input'] and convert else ''})")
        for path, setting in m["sides"]:
            settings[setting] = f"az://ovms/{m['name']}/{path.name}"
    return settings


def upload_only(connection_string: Optional[str], detection_model: str, release: str,
                account_name: Optional[str] = None, auth_mode: str = "key") -> int:
    """Upload the four models and their side files, print the az:// side-file settings."""
    from scripts.tooling.upload import storage_target
    try:
        target = storage_target(connection_string, account_name, auth_mode)
        settings = upload_models(target, locate_models(detection_model, release))
    except (StackError, UploadError, RuntimeError) as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 2
    for name, value in sorted(settings.items()):
        print(f"{name}={value}")
    return 0


class Interrupt:
    """The stack's SIGINT/SIGTERM handler. It does nothing that can block (no lock, no I/O):

    - the first signal raises KeyboardInterrupt, which stops the start-up or the wait and runs the
      clean-up;
    - inside :meth:`deferred` it only notes the signal, and the KeyboardInterrupt is raised when the
      block ends: a block that starts a process and registers it is never cut between the two, so
      nothing started is left running unknown to :meth:`Stack.stop`;
    - a later signal does nothing, so that the clean-up runs to its end.

    (Blocking the signals with ``pthread_sigmask`` instead would hand the blocked mask on to every
    child, which would then ignore the SIGTERM that stops it.)
    """

    def __init__(self) -> None:
        self.taken = False
        self.pending = False
        self.held = 0

    def __call__(self, signum: int, frame: object) -> None:
        if self.taken:
            return
        if self.held:
            self.pending = True
            return
        self.taken = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block that a signal does not cut: one that comes during it is taken when it ends."""
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1
        if self.pending and not self.held and not self.taken:
            self.pending, self.taken = False, True
            raise KeyboardInterrupt


class Stack:
    """Processes started by the stack command, stopped in reverse order."""

    def __init__(self, interrupt: Optional[Interrupt] = None) -> None:
        self.procs: List[Tuple[str, subprocess.Popen]] = []
        self.containers: List[str] = []
        self.interrupt = interrupt or Interrupt()

    def spawn(self, what: str, cmd: List[str], env: Dict[str, str]) -> subprocess.Popen:
        _say(f"starting {what}: {' '.join(cmd)}")
        full = dict(os.environ)
        full.update(env)
        full["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), full.get("PYTHONPATH")) if p)
        with self.interrupt.deferred():  # started means registered: a signal cannot come between
            proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), env=full, start_new_session=True)
            self.procs.append((what, proc))
        return proc

    def stop(self) -> None:
        for what, proc in reversed(self.procs):
            if proc.poll() is None:
                _say(f"stopping {what} (pid {proc.pid})")
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    proc.kill()
        for name in reversed(self.containers):
            _say(f"stopping container {name}")
            subprocess.run(["docker", "stop", name], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


def wait_port(port: int, proc: Optional[subprocess.Popen], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode}")
        if az.port_in_use("127.0.0.1", port):
            return
        time.sleep(0.3)
    raise StackError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def host_python(requested: str = "auto") -> Tuple[str, str, str]:
    """(interpreter, mode, why) for the local functions host."""
    from emulators.functions_host import worker  # noqa: PLC0415

    python = worker.worker_interpreter(PROJECT_ROOT)
    if requested == "in-house":
        return sys.executable, "in-house", "asked for with --host-mode in-house"
    if python is not None:
        return (str(python), "worker", f"Microsoft's Python worker {worker.DISTRIBUTION} on "
                f"Python 3.13, {'this interpreter' if str(python) == sys.executable else python}")
    if requested == "worker":
        raise StackError("--host-mode worker: no Python 3.13 environment; bootstrap builds "
                         ".venv313 where it finds a Python 3.13")
    return (sys.executable, "in-house",
            "no .venv313: scripts/bootstrap.sh found no Python 3.13, so Microsoft's Python worker "
            "(it needs 3.13) is not installed; the host's own binding code runs the functions")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.tooling.stack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-bootstrap", action="store_true")
    p.add_argument("--blob-port", type=int, default=10000)
    p.add_argument("--ovms-port", type=int, default=9000)
    p.add_argument("--http-port", type=int, default=7071)
    p.add_argument("--release", default="2021.1", help="OMZ release for missing models")
    p.add_argument("--detection-model", default=os.environ.get("OVAAS_DETECTION_MODEL",
                                                               catalog.by_task("detection").omz_model))
    p.add_argument("--api", choices=("kserve", "tfs"), default=os.environ.get("OVMS_API", "kserve"))
    p.add_argument("--upload-only", metavar="CONNECTION_STRING", nargs="?", const="", default=None,
                   help="only find the models and upload them (with side files) to this storage "
                        "account, print the side-file settings and exit (deploy/docker-compose.yml); "
                        "without a value, to --account-name with --auth-mode login")
    p.add_argument("--account-name", default=None,
                   help="with --upload-only --auth-mode login: the storage account to upload to")
    p.add_argument("--auth-mode", choices=("key", "login"), default="key",
                   help="login: upload with your Azure CLI login (az login), no key")
    p.add_argument("--host-mode", choices=("auto", "worker", "in-house"), default="auto",
                   help="the local functions host's invocation mode (auto: the worker where "
                        ".venv313 exists)")
    args = p.parse_args(argv)
    if args.upload_only is not None:
        return upload_only(args.upload_only or None, args.detection_model, args.release,
                           args.account_name, args.auth_mode)

    # Ctrl+C or SIGTERM at any point (even while starting) stops what was started; SIGINT is
    # re-armed because a shell that starts us in the background (&) has it ignored.
    interrupt = Interrupt()
    stack = Stack(interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        azurite_running = az.blob_endpoint_answers("127.0.0.1", args.blob_port)
        ports = {"model server": args.ovms_port, "functions host": args.http_port}
        if not azurite_running:
            ports["Azurite blob"] = args.blob_port
        check_ports(ports)
        if not args.no_bootstrap:
            _say("bootstrap")
            if subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "bootstrap.sh")]).returncode:
                raise StackError("bootstrap failed")
        with interrupt.deferred():  # Azurite, once started, is registered before a signal is taken
            cs, started = az.ensure_running("127.0.0.1", args.blob_port)
            if started:
                pid_file = az.DATA_DIR / "azurite.pid"
                if pid_file.exists():
                    pid = int(pid_file.read_text())
                    stack.procs.append(("Azurite", _Adopted(pid)))  # type: ignore[arg-type]
                else:
                    stack.containers.append(az.DOCKER_NAME)
        _say(("started" if started else "reusing") + f" Azurite: {ovms.redact(cs, keep_development_key=False)}")
        models = locate_models(args.detection_model, args.release)
        side_settings = upload_models(cs, models)
        # a development stack listens on loopback only (OVMS itself would listen everywhere)
        launches, notes = ovms.plan_all("127.0.0.1", args.ovms_port, api=args.api,
                                        blob_port=args.blob_port, grpc_bind_address=LOOPBACK)
        for n in notes:
            _say(n)
        launch = launches[0]
        if docker_available():
            stack.containers.append("ovaas-ovms")  # registered first: stopped even if `docker run` is cut short
            subprocess.run(launch.docker, check=True, env={**os.environ, **launch.docker_env})
            proc = None
        else:
            proc = stack.spawn("model server (emulators.ovms)", launch.local, launch.local_env)
        wait_port(args.ovms_port, proc, "model server")
        wait_models_ready(args.ovms_port, [m["name"] for m in models], proc)
        env = {"AZURE_STORAGE_CONNECTION_STRING": cs, "OVMS_API": args.api, **side_settings}
        for endpoint in catalog.ENDPOINTS:
            env[f"{endpoint.prefix}_IPADDRESS"] = "127.0.0.1"
            env[f"{endpoint.prefix}_PORT"] = str(args.ovms_port)
        if shutil.which("func"):
            cmd = ["func", "start", "--port", str(args.http_port)]
            _say("functions host: Azure Functions Core Tools (func start)")
        else:
            python, mode, why = host_python(args.host_mode)
            _say(f"functions host mode: {mode} ({why})")
            cmd = [python, "-m", "emulators.functions_host", "--root", str(PROJECT_ROOT),
                   "--port", str(args.http_port), "--mode", mode]
        host = stack.spawn("functions host", cmd, env)
        wait_port(args.http_port, host, "functions host")
        from emulators.functions_host.discovery import discover, route_prefix
        prefix = route_prefix(PROJECT_ROOT)
        _say("endpoints:")
        for spec in discover(PROJECT_ROOT):
            print(f"    {spec.name}: http://localhost:{args.http_port}{spec.url_path(prefix)}")
        _say("running; Ctrl+C stops everything started here")
        while True:
            for what, proc in stack.procs:
                if proc.poll() is not None:
                    raise StackError(f"{what} exited with code {proc.returncode}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except (StackError, RuntimeError, TimeoutError, FileNotFoundError, UploadError,
            subprocess.CalledProcessError) as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 2
    finally:
        interrupt.taken = True  # a second Ctrl+C must not cut the clean-up short
        stack.stop()


def wait_models_ready(port: int, names: List[str], proc: Optional[subprocess.Popen],
                      timeout: float = 300) -> None:
    """Wait until the model server reports every model ready (KServe ModelReady)."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    pending = list(names)
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if proc is not None and proc.poll() is not None:
                raise StackError(f"model server exited with code {proc.returncode}")
            try:
                if stub.ModelReady(service_pb2.ModelReadyRequest(name=pending[0]), timeout=2).ready:
                    _say(f"model {pending.pop(0)} ready")
                    continue
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"models not ready within {timeout:.0f} s: {', '.join(pending)}")
            time.sleep(0.3)
    finally:
        channel.close()


class _Adopted:
    """A detached process started elsewhere (Azurite) that the stack still owns."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        try:  # our own child (started by ensure_running in this process): reap it, or it stays a zombie
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                return self.returncode
        except ChildProcessError:
            pass
        try:
            os.kill(self.pid, 0)
            return None
        except ProcessLookupError:
            self.returncode = self.returncode if self.returncode is not None else 0
            return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = time.monotonic() + (timeout or 0)
        while self.poll() is None:
            if timeout is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("azurite", timeout)
            time.sleep(0.1)
        return self.returncode or 0

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    sys.exit(main())
