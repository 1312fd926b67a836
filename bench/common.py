"""Shared helpers for the benchmarks: start the local stack, time things side by side, print.

Benchmarks are run by hand (``.venv/bin/python bench/bench_<x>.py``); they print ratios measured
in one run on one machine. Nothing here is imported by the app or by timed tests.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.tooling.azurite import free_port  # noqa: E402  (after the sys.path line)
from shared.allocator import keep_large_buffers  # noqa: E402

# The app and the model server keep their large buffers on the heap (shared/allocator.py): so does
# the benchmark process, whose in-process baseline would otherwise pay page faults the app does not.
keep_large_buffers()

PYTHON = sys.executable
IMAGES = ROOT.parent / "shared" / "images"


def _child_env(extra: Optional[Mapping[str, str]] = None, root: Path = ROOT) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


@dataclass
class Process:
    """A child process started by a benchmark, stopped with ``stop()``."""

    proc: subprocess.Popen
    port: int
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _spawn(args: Sequence[str], port: int, env: Mapping[str, str], name: str, cwd: Path = ROOT) -> Process:
    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    proc = subprocess.Popen([PYTHON, *args], cwd=cwd, env=dict(env), stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Process(proc, port, log)


def start_model_server(models: Mapping[str, Path], port: Optional[int] = None, nireq: Optional[int] = None,
                       timeout: float = 180.0,
                       plugin_configs: Optional[Mapping[str, Mapping[str, str]]] = None) -> Process:
    """Start ``python -m emulators.ovms`` serving ``{served name: base path}`` and wait until
    every model is ready (KServe ModelReady). Models without a ``plugin_configs`` entry get
    OpenVINO's defaults, as OVMS does (bf16 on CPUs with AMX)."""
    import tritonclient.grpc as grpcclient

    port = port or free_port()
    entries = []
    for name, base in models.items():
        cfg = {"name": name, "base_path": str(base)}
        if nireq:
            cfg["nireq"] = nireq
        if plugin_configs and name in plugin_configs:
            cfg["plugin_config"] = dict(plugin_configs[name])
        entries.append({"config": cfg})
    config = Path(tempfile.mkstemp(prefix="bench-ovms-", suffix=".json")[1])
    config.write_text(json.dumps({"model_config_list": entries}))
    p = _spawn(["-m", "emulators.ovms", "--config_path", str(config), "--port", str(port),
                "--log_level", "WARNING"], port, _child_env(), "ovms")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise RuntimeError(f"model server exited; see {p.log}")
        try:
            if all(client.is_model_ready(n) for n in models):
                client.close()
                return p
        except Exception:
            pass
        time.sleep(0.2)
    p.stop()
    raise TimeoutError(f"model server not ready in {timeout:.0f} s; see {p.log}")


def start_functions_host(env: Mapping[str, str], port: Optional[int] = None,
                         timeout: float = 60.0, root: Path = ROOT) -> Process:
    """Start the local Functions host of the app in ``root`` (with its own emulator; default: this
    checkout) with ``env`` (settings) and wait until it answers."""
    port = port or free_port()
    p = _spawn(["-m", "emulators.functions_host", "--port", str(port)], port, _child_env(env, root), "host",
               cwd=root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise RuntimeError(f"functions host exited; see {p.log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return p
        except urllib.error.HTTPError:
            return p  # it answered (404 for /)
        except OSError:
            time.sleep(0.2)
    p.stop()
    raise TimeoutError(f"functions host not answering in {timeout:.0f} s; see {p.log}")


def model_env(prefix: str, port: int, model_name: str, api: str = "kserve",
              extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Settings that point endpoint ``prefix`` at a local model server."""
    env = {f"{prefix}_IPADDRESS": "127.0.0.1", f"{prefix}_PORT": str(port),
           f"{prefix}_MODEL_NAME": model_name, f"{prefix}_MODEL_VERSION": "latest", "OVMS_API": api}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def stack(models: Mapping[str, Path], prefix: str, model_name: str,
          extra_env: Optional[Mapping[str, str]] = None, api: str = "kserve") -> Iterator[Tuple[Process, Process]]:
    """Model server + functions host for one endpoint; yields (server, host)."""
    server = start_model_server(models)
    host = None
    try:
        host = start_functions_host(model_env(prefix, server.port, model_name, api, extra_env))
        yield server, host
    finally:
        if host:
            host.stop()
        server.stop()


def post(url: str, body: bytes, content_type: str = "image/jpeg", timeout: float = 60.0) -> Tuple[int, bytes]:
    """POST ``body``; (status, response body)."""
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class KeepAliveClient:
    """A persistent HTTP/1.1 connection (what a real client or load balancer keeps open)."""

    def __init__(self, port: int) -> None:
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: bytes, content_type: str = "image/jpeg") -> Tuple[int, bytes]:
        self.conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        r = self.conn.getresponse()
        return r.status, r.read()

    def close(self) -> None:
        self.conn.close()


def elapsed_ms(fn: Callable[[], object]) -> float:
    """Wall-clock milliseconds of one call of ``fn``."""
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000.0


def time_ms(fn: Callable[[], object], n: int, warmup: int = 3) -> List[float]:
    """Wall-clock milliseconds of ``n`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    return [elapsed_ms(fn) for _ in range(n)]


def interleaved_samples(fns: Mapping[str, Callable[[], float]], n: int, warmup: int = 3,
                        rng: Optional[random.Random] = None) -> Dict[str, List[float]]:
    """Call several functions in alternation, ``n`` rounds after ``warmup`` rounds, each returning
    its own sample (ms); with ``rng`` the order is shuffled each round, so no function always
    follows the same one (a call right after another may find a server idle or busy)."""
    order = list(fns)
    for _ in range(warmup):
        for k in order:
            fns[k]()
    out: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(n):
        if rng is not None:
            rng.shuffle(order)
        for k in order:
            out[k].append(fns[k]())
    return out


def interleaved_ms(fns: Mapping[str, Callable[[], object]], n: int, warmup: int = 3,
                   rng: Optional[random.Random] = None) -> Dict[str, List[float]]:
    """Time several functions in alternation (fairer on a busy machine than back to back)."""
    return interleaved_samples({k: (lambda fn=fn: elapsed_ms(fn)) for k, fn in fns.items()}, n, warmup, rng)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def p95(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def inprocess_model(xml: Path, hint: str = "LATENCY"):
    """Compile ``xml`` in-process with OpenVINO on CPU; returns the CompiledModel."""
    import openvino as ov

    core = ov.Core()
    return core.compile_model(core.read_model(str(xml)), "CPU", {"PERFORMANCE_HINT": hint})


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo)."""
    try:
        return next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    except OSError:
        return platform.processor()


def cpu_bf16_flags() -> List[str]:
    """Which of amx_bf16 / avx512_bf16 the CPU has (AMX makes OpenVINO default to bf16)."""
    try:
        flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    except OSError:
        flags = []
    return [f for f in ("amx_bf16", "avx512_bf16") if f in flags]


def default_precision(device: str = "CPU") -> str:
    """The inference precision OpenVINO uses on ``device`` when nothing pins it."""
    import openvino as ov

    return ov.Core().get_property(device, "INFERENCE_PRECISION_HINT").get_type_name()


def precision_line(in_force: Optional[str] = None) -> str:
    """One line: CPU model, its bf16 flags and the inference precision in force in this run."""
    flags = ", ".join(cpu_bf16_flags()) or "no bf16 flags"
    default = default_precision()
    force = in_force or default
    note = "OpenVINO's default" if force == default else f"pinned; OpenVINO's default here is {default}"
    return f"CPU {cpu_model()} ({flags}); inference precision {force} ({note})"


def machine() -> str:
    """One line describing this machine."""
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu_model()}), "
            f"Python {platform.python_version()}")


def print_table(title: str, rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    """A small aligned table on stdout."""
    cells = [[str(c) for c in header]] + [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
