"""LaunchOVMS / LaunchALLOVMS: start OpenVINO Model Server reading models from ``az://``.

With a Docker engine (``docker info`` succeeds) the real ``openvino/model_server`` image runs;
without one, the local stand-in ``python -m emulators.ovms`` gets the same OVMS arguments.

Image tags are pinned (``PINNED_TAGS``) and matched to the API the app uses (``--api``):
OVMS 2026.3 removed the TensorFlow-Serving API, so ``--api tfs`` needs a tag of 2026.2 or older
(a newer one is refused, or replaced with ``--adjust-tag``). Devices: CPU; GPU (``-gpu`` image,
``--device /dev/dri``); FPGA = ``HETERO:FPGA,CPU``, which only OVMS/OpenVINO 2020.x images support.

    python -m scripts.tooling.ovms one <model> <ip> <port> [<ovms-version>] [CPU|GPU|FPGA] [--dry-run]
    python -m scripts.tooling.ovms all <ip> [--port 9000] [--per-model] [--dry-run]

``<ip>`` is the address of the Azurite blob service as seen from the model server (the original
OVaaS meaning); for a container, 127.0.0.1/localhost is rewritten to ``host.docker.internal``.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from scripts.tooling import azurite as az
from scripts.tooling.dockerutil import docker_available
from scripts.tooling.modelsearch import PROJECT_ROOT

log = logging.getLogger(__name__)

IMAGE = "openvino/model_server"
API_KSERVE, API_TFS = "kserve", "tfs"
#: Newest OVMS with the TensorFlow-Serving API (2026.3 removed it, model_server commit 10369c696).
LAST_TFS_TAG = "2026.2"
#: Pinned default tags per API (reproducible; override with <ovms-version>).
PINNED_TAGS = {API_KSERVE: "2026.3", API_TFS: LAST_TFS_TAG}
CONTAINER_PORT = 9000
CONFIG_PATH = PROJECT_ROOT / "models" / "config.json"
RUN_DIR = PROJECT_ROOT / ".run"
DEVICES = {"CPU": "CPU", "GPU": "GPU", "FPGA": "HETERO:FPGA,CPU"}
FPGA_WARNING = ("warning: FPGA means --target_device HETERO:FPGA,CPU. FPGA plugins were dropped from "
                "OpenVINO after 2020.x: current OVMS releases cannot load it; only the 2020.x "
                "openvino/model_server images with an FPGA-enabled runtime could.")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
#: --precision choices: "default" leaves OpenVINO's choice (bf16 on CPUs with AMX, f32 on most others)
PRECISIONS = ("default", "f32", "bf16", "f16")


class LaunchError(Exception):
    """A launch request that cannot be honoured (message is meant for the user)."""


def _version_tuple(tag: str) -> Optional[Tuple[int, ...]]:
    m = re.match(r"^(\d{4})\.(\d+)(?:\.(\d+))?", tag)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def resolve_tag(requested: Optional[str], api: str, adjust: bool = False) -> Tuple[str, List[str]]:
    """The image tag (without a device suffix) for ``requested`` and ``api``; plus notes to print.

    None/``default``/``pinned`` = the pinned tag. For the TFS API a tag newer than 2026.2
    (``latest`` included) is refused, or replaced by 2026.2 when ``adjust``.
    """
    if api not in PINNED_TAGS:
        raise LaunchError(f"--api must be kserve or tfs, not {api!r}")
    notes: List[str] = []
    tag = (requested or "default").strip()
    if tag.lower() in ("", "default", "pinned"):
        return PINNED_TAGS[api], notes
    tag = re.sub(r"-gpu$", "", tag)
    if api == API_TFS:
        version = _version_tuple(tag)
        too_new = version is None and tag in ("latest", "weekly", "nightly") or (
            version is not None and version[:2] > _version_tuple(LAST_TFS_TAG)[:2])
        if too_new:
            msg = (f"OVMS {tag} has no TensorFlow-Serving API (removed in 2026.3); "
                   f"the TFS API needs {LAST_TFS_TAG} or older")
            if not adjust:
                raise LaunchError(msg + f": use --api kserve, an older tag, or --adjust-tag to use "
                                        f"{LAST_TFS_TAG}")
            notes.append(msg + f": using {LAST_TFS_TAG} instead")
            return LAST_TFS_TAG, notes
    if tag == "latest":
        notes.append("note: 'latest' is not reproducible; the pinned tag is "
                     f"{PINNED_TAGS[api]}")
    return tag, notes


def image_for(tag: str, device: str) -> str:
    """``openvino/model_server:<tag>`` (``-gpu`` variant for GPU)."""
    return f"{IMAGE}:{tag}-gpu" if device == "GPU" else f"{IMAGE}:{tag}"


def storage_connection_string(ip: str, blob_port: int = 10000, for_container: bool = True,
                              override: Optional[str] = None) -> str:
    """Azurite connection string at ``ip`` (``host.docker.internal`` for a local IP in a container)."""
    if override:
        return override
    host = "host.docker.internal" if for_container and ip in LOCAL_HOSTS else ip
    return az.connection_string(host, blob_port)


def render_group_ids() -> List[str]:
    """Group ids of /dev/dri/render* (for ``--group-add``), empty when there is no GPU node."""
    gids = []
    for node in sorted(glob.glob("/dev/dri/render*")):
        try:
            gid = str(os.stat(node).st_gid)
        except OSError:
            continue
        if gid not in gids:
            gids.append(gid)
    return gids


@dataclass
class Launch:
    """One model-server process to start: the docker command and the local stand-in command.

    The storage connection string never appears in a command line (where ``ps`` would show
    it): ``docker run -e AZURE_STORAGE_CONNECTION_STRING`` takes it from ``docker_env``.
    """

    name: str
    port: int
    docker: List[str]
    local: List[str]
    local_env: Dict[str, str]
    docker_env: Dict[str, str] = field(default_factory=dict)


def _publish(port: int, bind: Optional[str]) -> str:
    """``docker run -p`` of the gRPC port: on ``bind`` of the host (all interfaces when None)."""
    if not bind or bind in ("0.0.0.0", "::"):
        return f"{port}:{CONTAINER_PORT}"
    host = f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind
    return f"{host}:{port}:{CONTAINER_PORT}"


def _docker_prefix(name: str, port: int, device: str, ip: str,
                   render_gids: Optional[Sequence[str]], bind: Optional[str] = None) -> List[str]:
    # A container's OVMS keeps its default --grpc_bind_address 0.0.0.0: Docker forwards a published
    # port to the container's own interface, so listening on the container's loopback would make
    # the port unreachable. Where the port is reachable from is chosen by -p (the host's address).
    cmd = ["docker", "run", "-d", "--rm", "--name", name, "-p", _publish(port, bind)]
    if ip in LOCAL_HOSTS:
        cmd += ["--add-host=host.docker.internal:host-gateway"]
    if device == "GPU":
        cmd += ["--device", "/dev/dri"]
        gids = render_group_ids() if render_gids is None else list(render_gids)
        for gid in gids:
            cmd += ["--group-add", gid]
    cmd += ["-e", "AZURE_STORAGE_CONNECTION_STRING"]  # value from docker_env, not the command line
    return cmd


def _ovms_args(port: int, log_level: str, bind: Optional[str] = None) -> List[str]:
    args = ["--port", str(port), "--log_level", log_level, "--file_system_poll_wait_seconds", "0"]
    return args + ["--grpc_bind_address", bind] if bind else args


def precision_plugin(precision: str = "default") -> Dict[str, str]:
    """The plugin_config entries that pin ``precision`` ({} for the device's default)."""
    if precision not in PRECISIONS:
        raise LaunchError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return {} if precision == "default" else {"INFERENCE_PRECISION_HINT": precision}


def plan_one(model: str, ip: str, port: int, ovms_version: Optional[str] = None,
             device: str = "CPU", api: str = API_KSERVE, adjust_tag: bool = False,
             connection_string: Optional[str] = None, blob_port: int = 10000,
             container: str = "ovms", log_level: str = "INFO",
             render_gids: Optional[Sequence[str]] = None,
             precision: str = "default",
             grpc_bind_address: Optional[str] = None) -> Tuple[Launch, List[str]]:
    """LaunchOVMS: one model from ``az://<container>/<model>`` on ``port``, listening on
    ``grpc_bind_address`` (OVMS's default, every interface, when None)."""
    device = device.upper()
    if device not in DEVICES:
        raise LaunchError(f"device must be CPU, GPU or FPGA, not {device!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", model):  # "$" would let "name\n" through
        raise LaunchError(f"invalid model name {model!r}")
    plugin = precision_plugin(precision)
    tag, notes = resolve_tag(ovms_version, api, adjust_tag)
    if device == "FPGA":
        notes.append(FPGA_WARNING)
    model_args = ["--model_name", model, "--model_path", f"az://{container}/{model}",
                  "--target_device", DEVICES[device]]
    if plugin:
        model_args += ["--plugin_config", json.dumps(plugin, separators=(",", ":"))]
    docker = _docker_prefix(f"ovaas-ovms-{model}", port, device, ip, render_gids, grpc_bind_address)
    docker_env = {"AZURE_STORAGE_CONNECTION_STRING":
                  storage_connection_string(ip, blob_port, True, connection_string)}
    docker += [image_for(tag, device), *model_args, *_ovms_args(CONTAINER_PORT, log_level)]
    local = [sys.executable, "-m", "emulators.ovms", *model_args,
             *_ovms_args(port, log_level, grpc_bind_address)]
    env = {"AZURE_STORAGE_CONNECTION_STRING":
           storage_connection_string(ip, blob_port, False, connection_string)}
    return Launch(model, port, docker, local, env, docker_env), notes


def config_models(config_path: Path = CONFIG_PATH) -> List[Dict]:
    """The ``config`` entries of an OVMS config.json."""
    data = json.loads(Path(config_path).read_text(encoding="utf-8"))
    return [entry["config"] for entry in data.get("model_config_list", [])]


def _derived_config(config_path: Path, device: str, plugin: Dict[str, str]) -> Path:
    """A copy of config.json with every model's target_device set (GPU/FPGA) and ``plugin`` merged
    into its plugin_config (--precision); entries the file already has for other keys are kept."""
    data = json.loads(Path(config_path).read_text(encoding="utf-8"))
    for entry in data.get("model_config_list", []):
        entry["config"]["target_device"] = DEVICES[device]
        if plugin:
            entry["config"]["plugin_config"] = {**entry["config"].get("plugin_config", {}), **plugin}
    RUN_DIR.mkdir(exist_ok=True)
    suffix = device.lower() + "".join(f".{v}" for v in plugin.values())
    out = RUN_DIR / f"ovms-config.{suffix}.json"
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out


def plan_all(ip: str, port: int = 9000, ovms_version: Optional[str] = None, device: str = "CPU",
             api: str = API_KSERVE, adjust_tag: bool = False, per_model: bool = False,
             config_path: Path = CONFIG_PATH, connection_string: Optional[str] = None,
             blob_port: int = 10000, log_level: str = "INFO",
             render_gids: Optional[Sequence[str]] = None,
             precision: str = "default",
             grpc_bind_address: Optional[str] = None) -> Tuple[List[Launch], List[str]]:
    """LaunchALLOVMS: every model of config.json on one port, or one container each (``per_model``),
    listening on ``grpc_bind_address`` (OVMS's default, every interface, when None)."""
    device = device.upper()
    if device not in DEVICES:
        raise LaunchError(f"device must be CPU, GPU or FPGA, not {device!r}")
    plugin = precision_plugin(precision)
    models = config_models(config_path)
    if per_model:
        launches, notes = [], []
        for i, m in enumerate(models):
            base = m["base_path"]
            container = base[len("az://"):].split("/", 1)[0] if base.startswith("az://") else "ovms"
            launch, n = plan_one(m["name"], ip, port + i, ovms_version, device, api, adjust_tag,
                                 connection_string, blob_port, container, log_level, render_gids,
                                 precision, grpc_bind_address)
            launches.append(launch)
            notes += [x for x in n if x not in notes]
        return launches, notes
    tag, notes = resolve_tag(ovms_version, api, adjust_tag)
    if device == "FPGA":
        notes.append(FPGA_WARNING)
    config = (Path(config_path).resolve() if device == "CPU" and not plugin
              else _derived_config(config_path, device, plugin))
    docker = _docker_prefix("ovaas-ovms", port, device, ip, render_gids, grpc_bind_address)
    docker_env = {"AZURE_STORAGE_CONNECTION_STRING":
                  storage_connection_string(ip, blob_port, True, connection_string)}
    docker += ["-v", f"{config}:/config/config.json:ro", image_for(tag, device),
               "--config_path", "/config/config.json", *_ovms_args(CONTAINER_PORT, log_level)]
    local = [sys.executable, "-m", "emulators.ovms", "--config_path", str(config),
             *_ovms_args(port, log_level, grpc_bind_address)]
    env = {"AZURE_STORAGE_CONNECTION_STRING":
           storage_connection_string(ip, blob_port, False, connection_string)}
    return [Launch("all", port, docker, local, env, docker_env)], notes


def start_local(launch: Launch, timeout: float = 60.0) -> subprocess.Popen:
    """Start the stand-in in the background (log and pid in .run/), wait until its port answers."""
    if az.port_in_use("127.0.0.1", launch.port):
        raise LaunchError(f"port {launch.port} is already in use")
    RUN_DIR.mkdir(exist_ok=True)
    log_path = RUN_DIR / f"ovms-{launch.name}.log"
    env = dict(os.environ)
    env.update(launch.local_env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(launch.local, cwd=str(PROJECT_ROOT), env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    (RUN_DIR / f"ovms-{launch.name}.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(f"the local model server exited with {proc.returncode}; see {log_path}")
        if az.port_in_use("127.0.0.1", launch.port):
            return proc
        time.sleep(0.2)
    raise LaunchError(f"the local model server did not listen on {launch.port} within "
                      f"{timeout:.0f} s; see {log_path}")


def redact(connection_string: str, keep_development_key: bool = True) -> str:
    """The connection string with its account key or SAS hidden; Azurite's public development key
    is kept when ``keep_development_key`` (a dry run's command then works as printed)."""
    if keep_development_key and az.ACCOUNT_KEY in connection_string:
        return connection_string
    return re.sub(r"(AccountKey|SharedAccessSignature)=[^;]*", r"\1=***", connection_string)


def run(launches: List[Launch], notes: List[str], dry_run: bool, use_docker: Optional[bool]) -> int:
    """Print notes; print (dry run) or run each launch with Docker or the stand-in."""
    for n in notes:
        print(n, file=sys.stderr)
    if dry_run:
        # The container command, unless --local asks for the stand-in's; without an engine the
        # stand-in command is shown on stderr too, since that is what a real run would start.
        engine = docker_available() if use_docker is None else use_docker
        for launch in launches:
            if use_docker is False:
                print(" ".join(f"{k}={shlex.quote(v)}" for k, v in launch.local_env.items()), end=" ")
                print(shlex.join(launch.local))
                continue
            print(shlex.join(launch.docker))
            for key, value in launch.docker_env.items():
                print(f"# with {key}={redact(value)} in the environment", file=sys.stderr)
            if not engine:
                print("# no Docker engine here: a real run starts the local stand-in instead: "
                      + shlex.join(launch.local), file=sys.stderr)
        return 0
    docker = docker_available() if use_docker is None else use_docker
    for launch in launches:
        cmd = launch.docker if docker else launch.local
        if docker:
            print("+ " + shlex.join(cmd), flush=True)
            rc = subprocess.run(cmd, env={**os.environ, **launch.docker_env}).returncode
            if rc != 0:
                print(f"error: docker run failed with exit code {rc}", file=sys.stderr)
                return rc
        else:
            print("No Docker engine (`docker info` failed): starting the local model server "
                  "stand-in", flush=True)
            print("+ " + shlex.join(cmd), flush=True)
            proc = start_local(launch)
            print(f"model server '{launch.name}' (pid {proc.pid}) listening on port {launch.port}; "
                  f"stop it with: kill {proc.pid}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", choices=(API_KSERVE, API_TFS),
                   default=os.environ.get("OVMS_API", API_KSERVE).lower() or API_KSERVE,
                   help="API the app uses (default $OVMS_API or kserve); picks a matching image tag")
    p.add_argument("--adjust-tag", action="store_true",
                   help=f"for --api tfs, replace a tag newer than {LAST_TFS_TAG} instead of refusing")
    p.add_argument("--connection-string", default=None,
                   help="storage connection string (default: Azurite at <ip>:--blob-port)")
    p.add_argument("--blob-port", type=int, default=10000)
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--grpc-bind-address", default=None, metavar="ADDRESS",
                   help="address the model server listens on (OVMS --grpc_bind_address; with Docker, "
                        "the host address the port is published on); default: OVMS's, every interface")
    p.add_argument("--precision", choices=PRECISIONS, default="default",
                   help="inference precision (plugin_config INFERENCE_PRECISION_HINT); default: the "
                        "device's own, as OVMS (bf16 on CPUs with AMX). f32 gives answers that match "
                        "an f32 reference on every CPU")
    p.add_argument("--dry-run", action="store_true", help="print the exact command, start nothing")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--docker", dest="use_docker", action="store_true", default=None,
                   help="use Docker even if `docker info` fails")
    g.add_argument("--local", dest="use_docker", action="store_false",
                   help="use the local stand-in (python -m emulators.ovms) even if Docker runs")


def main(argv: Optional[List[str]] = None) -> int:
    """CLI: ``one`` (LaunchOVMS) and ``all`` (LaunchALLOVMS)."""
    p = argparse.ArgumentParser(prog="python -m scripts.tooling.ovms", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    one = sub.add_parser("one", help="LaunchOVMS: one model")
    one.add_argument("model")
    one.add_argument("ip", help="address of Azurite's blob service")
    one.add_argument("port", type=int)
    one.add_argument("ovms_version", nargs="?", default="default",
                     help=f"image tag (default: pinned, {PINNED_TAGS})")
    one.add_argument("device", nargs="?", default="CPU", type=str.upper, choices=tuple(DEVICES))
    one.add_argument("--container", default="ovms")
    _common(one)
    all_ = sub.add_parser("all", help="LaunchALLOVMS: every model of models/config.json")
    all_.add_argument("ip", help="address of Azurite's blob service")
    all_.add_argument("--port", type=int, default=9000)
    all_.add_argument("--ovms-version", default="default")
    all_.add_argument("--device", default="CPU", type=str.upper, choices=tuple(DEVICES))
    all_.add_argument("--per-model", action="store_true",
                      help="one server per model on consecutive ports (as the original did)")
    all_.add_argument("--config", type=Path, default=CONFIG_PATH)
    _common(all_)
    args = p.parse_args(argv)
    try:
        if args.cmd == "one":
            launches_notes = plan_one(args.model, args.ip, args.port, args.ovms_version,
                                      args.device, args.api, args.adjust_tag,
                                      args.connection_string, args.blob_port, args.container,
                                      args.log_level, precision=args.precision,
                                      grpc_bind_address=args.grpc_bind_address)
            launches, notes = [launches_notes[0]], launches_notes[1]
        else:
            launches, notes = plan_all(args.ip, args.port, args.ovms_version, args.device,
                                       args.api, args.adjust_tag, args.per_model, args.config,
                                       args.connection_string, args.blob_port, args.log_level,
                                       precision=args.precision,
                                       grpc_bind_address=args.grpc_bind_address)
        return run(launches, notes, args.dry_run, args.use_docker)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
