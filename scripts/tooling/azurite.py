"""Start, find and wait for Azurite (local Azure Storage) from the project's own npm install."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional

from scripts.tooling.modelsearch import PROJECT_ROOT

# Azurite's well-known development account (public; documented by Microsoft). The app never needs
# it: the Azure SDK reads UseDevelopmentStorage=true itself.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def connection_string(host: str = "127.0.0.1", blob_port: int = 10000) -> str:
    """The connection string of the Azurite development account at ``host:blob_port``."""
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://{host}:{blob_port}/{ACCOUNT};")


def find_binary(name: str = "azurite") -> Optional[Path]:
    """``node_modules/.bin/<name>`` of the project, else one on PATH."""
    local = PROJECT_ROOT / "node_modules" / ".bin" / (name + (".cmd" if os.name == "nt" else ""))
    if local.exists():
        return local
    found = shutil.which(name)
    return Path(found) if found else None


def blob_endpoint_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something that speaks the Blob API answers at host:port."""
    url = f"http://{host}:{port}/{ACCOUNT}?comp=list"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError as exc:  # 403 without auth still means Azurite is there
        return exc.code in (400, 403)
    except (OSError, ValueError):
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def command(location: Path, host: str = "127.0.0.1", blob_port: int = 10000,
            blob_only: bool = True, debug_log: Optional[Path] = None) -> List[str]:
    """The Azurite command line (blob service only by default)."""
    binary = find_binary("azurite-blob" if blob_only else "azurite")
    if binary is None:
        raise FileNotFoundError("Azurite is not installed: run `bash scripts/bootstrap.sh` "
                                "(it runs `npm install` in the project)")
    cmd = [str(binary), "--blobHost", host, "--blobPort", str(blob_port),
           "--location", str(location), "--disableTelemetry", "--skipApiVersionCheck", "--loose"]
    if not blob_only:
        cmd += ["--queueHost", host, "--tableHost", host]
    if debug_log:
        cmd += ["--debug", str(debug_log)]
    return cmd


def start(location: Path, host: str = "127.0.0.1", blob_port: int = 10000, blob_only: bool = True,
          log_file: Optional[Path] = None, timeout: float = 30.0) -> subprocess.Popen:
    """Start Azurite and wait until its blob endpoint answers (raises on failure)."""
    location.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(command(location, host, blob_port, blob_only), stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Azurite exited with code {proc.returncode} (port {blob_port} in use?)")
        if blob_endpoint_answers(host, blob_port, timeout=0.5):
            return proc
        time.sleep(0.1)
    proc.terminate()
    raise TimeoutError(f"Azurite did not answer on {host}:{blob_port} within {timeout:.0f} s")


# --- LaunchAzurite ----------------------------------------------------------------------------

DATA_DIR = PROJECT_ROOT / ".azurite"
DOCKER_IMAGE = "mcr.microsoft.com/azure-storage/azurite"
DOCKER_NAME = "ovaas-azurite"


def docker_command(location: Path, host: str = "127.0.0.1", blob_port: int = 10000) -> List[str]:
    """``docker run`` of Azurite's image (blob service only), data in ``location``."""
    return ["docker", "run", "-d", "--rm", "--name", DOCKER_NAME, "-p", f"{host}:{blob_port}:10000",
            "-v", f"{location}:/data", DOCKER_IMAGE, "azurite-blob", "--blobHost", "0.0.0.0",
            "--blobPort", "10000", "--location", "/data", "--disableTelemetry",
            "--skipApiVersionCheck", "--loose"]


def ensure_running(host: str = "127.0.0.1", blob_port: int = 10000, location: Path = DATA_DIR,
                   use_docker: Optional[bool] = None, timeout: float = 60.0) -> tuple:
    """Find or start Azurite; returns ``(connection_string, started_now)``.

    Idempotent: an Azurite already answering at host:port is reused. Docker's image is used where
    a Docker engine runs (``docker info`` succeeds), else the project's npm install (detached,
    log and pid in ``location``).
    """
    from scripts.tooling.dockerutil import docker_available

    cs = connection_string(host, blob_port)
    if blob_endpoint_answers(host, blob_port):
        return cs, False
    if port_in_use(host, blob_port):
        raise RuntimeError(f"port {blob_port} on {host} is in use by something that is not Azurite")
    location.mkdir(parents=True, exist_ok=True)
    docker = docker_available() if use_docker is None else use_docker
    if docker:
        subprocess.run(docker_command(location.resolve(), host, blob_port), check=True,
                       stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if blob_endpoint_answers(host, blob_port, timeout=0.5):
                return cs, True
            time.sleep(0.3)
        raise TimeoutError(f"Azurite (docker) did not answer on {host}:{blob_port}")
    proc = start(location, host, blob_port, log_file=location / "azurite.log", timeout=timeout)
    (location / "azurite.pid").write_text(str(proc.pid))
    return cs, True


def main(argv: Optional[List[str]] = None) -> int:
    """LaunchAzurite: find or start Azurite, print its connection string."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m scripts.tooling.azurite",
                                description="Start Azurite (or find the running one) and print "
                                            "the connection string.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--blob-port", type=int, default=10000)
    p.add_argument("--location", type=Path, default=DATA_DIR)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--docker", dest="use_docker", action="store_true", default=None)
    g.add_argument("--npm", dest="use_docker", action="store_false")
    args = p.parse_args(argv)
    try:
        cs, started = ensure_running(args.host, args.blob_port, args.location, args.use_docker)
    except (RuntimeError, TimeoutError, FileNotFoundError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(("Started Azurite" if started else "Azurite is already running")
          + f" at http://{args.host}:{args.blob_port} (data in {args.location})", file=sys.stderr)
    print(cs)
    return 0


if __name__ == "__main__":
    import sys as _sys
    _sys.exit(main())
