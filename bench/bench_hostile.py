"""Bench: hostile pictures inside the limits through the local stack (issue 14), run by hand.

    .venv/bin/python bench/bench_hostile.py [--root PATH] [--repeat 2] [--load-seconds 20]
                                            [--kinds a,b] [--no-load] [--no-shapes] [--no-memory]
                                            [--memory-only]

One model server (a generated SSD detector with a constant answer: inference costs next to
nothing) and one local Functions host started from ``--root`` (default: this checkout; point it at
an export of an older commit to measure "before"). Two parts:

1. Shapes: each file of ``tests.hostile.KINDS`` (full size) posted ``--repeat`` times, one at a
   time. Per shape: the answer, the host's peak RSS growth during the request (Linux
   ``/proc/<pid>/clear_refs`` resets the high-water mark before each request, ``VmHWM`` after it),
   the decode time the answer reports (``timing_ms.decode``; a refusal has none: its whole latency
   is shown) and the client's latency.
2. Load: for each kind of ``tests.hostile.LOAD_KINDS``, 4 clients (another process) send that file
   back to back for ``--load-seconds`` while one normal client sends a 640x480 JPEG; its median
   latency against the quiet median just before and after. Three controls put the numbers in
   context: a flood of 11-byte junk (415), of 19 MB of junk (415: upload volume alone), and of
   the normal JPEG itself (an ordinary flood of the same 4 clients).

3. Memory (issue 25): each endpoint's whole request, stage by stage, for the worst pictures inside
   the limits (40 MP RGBA PNG, 16-bit RGBA PNG and TIFF, RLE8 BMP, progressive 4:4:4 JPEG, a grey
   photo, grey noise) and the answer forms (JSON, JSON with a PNG, rendered PNG), each in a fresh child process
   (``tests.memory_probe``: peak RSS growth per stage over the RSS once the body has arrived).
   Printed per endpoint: the peak per megapixel of each stage (the worst over the pictures), the
   whole request's, and the catalog's documented ``a + b x MP``; then the budget arithmetic for the
   settings (instance memory >= resting + concurrency x (largest peak + body)) and this machine's
   default budget. ``--memory-only`` runs just this part (no stack).

The machine may be shared: every ratio is measured side by side in one run; rerun when noisy.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Process, machine, model_env, start_functions_host, start_model_server  # noqa: E402
from tests import hostile, modelgen  # noqa: E402

PATH = "/api/HttpTriggerObjectDetection"
MODEL = "object-detection"
NORMAL = cv2.imencode(".jpg", np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8))[1].tobytes()
JUNK_19MB = bytes(np.random.default_rng(1).integers(0, 256, 19 << 20, dtype=np.uint8))
CONTROLS = [
    hostile.Kind("control_junk_11B", lambda: b"hello world", "image/jpeg", 4, "not an image", lambda: b"hello world"),
    hostile.Kind("control_junk_19MB", lambda: JUNK_19MB, "image/jpeg", 4, "19 MB not an image", lambda: JUNK_19MB),
    hostile.Kind("control_normal_flood", lambda: NORMAL, "image/jpeg", 2, "the normal JPEG", lambda: NORMAL),
]


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def post(port: int, body: bytes, ctype: str, timeout: float = 300):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        t = time.perf_counter()
        conn.request("POST", PATH, body=body, headers={"Content-Type": ctype})
        r = conn.getresponse()
        data = r.read()
        return r.status, data, (time.perf_counter() - t) * 1000.0
    finally:
        conn.close()


def shapes(host: Process, kinds: List[hostile.Kind], repeat: int) -> None:
    port, proc = host.port, host.proc
    post(port, NORMAL, "image/jpeg")  # warm-up: imports, model metadata
    post(port, hostile.png_rgba_zeros(64), "image/png")
    print(f"\n{'shape':22s} {'body':>8s}  {'answer':28s} {'host peak RSS growth':>21s} "
          f"{'decode ms':>10s} {'latency ms':>11s}")
    for kind in kinds:
        body = kind.build()
        for i in range(repeat):
            base = _status(proc.pid, "VmRSS")
            _reset_peak(proc.pid)
            try:
                status, data, ms = post(port, body, kind.content_type)
            except (OSError, http.client.HTTPException) as exc:
                status, data, ms = -1, str(exc).encode(), float("nan")
            growth = (_status(proc.pid, "VmHWM") - base) / 2 ** 20
            try:
                answer = json.loads(data)
            except ValueError:
                answer = {}
            code = answer.get("error", {}).get("code", "") if status >= 400 else "ok"
            decode = answer.get("timing_ms", {}).get("decode")
            decode_s = f"{decode:10.1f}" if decode is not None else f"{'-':>10s}"
            print(f"{kind.name if i == 0 else '':22s} {len(body) / 2 ** 20:6.2f}MB  {status} {code:24s} "
                  f"{growth:+17.0f} MB {decode_s} {ms:11.1f}", flush=True)
            if proc.poll() is not None:
                print(f"  the host died (exit {proc.returncode})")
                return


def load(port: int, kinds: List[hostile.Kind], seconds: float) -> None:
    quiet_s = max(2.0, seconds / 4)
    hostile.load_window(port, PATH, NORMAL, 2.0)
    quiet = hostile.load_window(port, PATH, NORMAL, quiet_s)
    print(f"\n4 hostile clients x {seconds:.0f} s per kind; normal client: 640x480 JPEG, one request after another")
    print(f"{'kind':22s} {'quiet ms':>9s} {'loaded ms':>10s} {'ratio':>6s} {'normal n':>9s}  hostile answers")
    for kind in kinds:
        loaded = hostile.load_window(port, PATH, NORMAL, seconds, kind)
        after = hostile.load_window(port, PATH, NORMAL, quiet_s)
        base = statistics.median(quiet.normal_ms + after.normal_ms)
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(loaded.hostile_statuses.items()))
        med = statistics.median(loaded.hostile_ms) if loaded.hostile_ms else float("nan")
        print(f"{kind.name:22s} {base:9.1f} {loaded.median_ms:10.1f} {loaded.median_ms / base:6.2f} "
              f"{len(loaded.normal_ms):9d}  {answers} (median {med:.0f} ms)", flush=True)
        quiet = after


MEMORY_INPUTS = ["png_rgba_zeros", "png16_rgba", "bmp_rle8_runs", "tiff_deflate_rgba16",
                 "jpeg_progressive_444", "photo_40mp", "noise_40mp"]
MEMORY_PIXELS = {"png16_rgba": 16384 * 2441, "tiff_deflate_rgba16": 16384 * 2441}
STAGES = ["decode", "preprocess", "inference", "postprocess", "render", "encode", "answer"]


def memory() -> None:
    """Part 3: peak per megapixel per endpoint and stage, and the budget arithmetic."""
    from shared import catalog, config
    from tests import memory_probe

    mib, rows = float(1 << 20), []
    print("\npeak RSS growth per megapixel (MiB/MP; the decoded picture itself is 2.86), worst over "
          f"{', '.join(MEMORY_INPUTS)}; JSON (with output_format=png too) and rendered PNG answers")
    print(f"{'endpoint':14s} " + " ".join(f"{s:>11s}" for s in STAGES) + f" {'request':>8s}  documented")
    for endpoint in catalog.ENDPOINTS:
        per_stage = {s: 0.0 for s in STAGES}
        whole = 0.0
        # output_format=png: a JSON answer carrying a full-size PNG (those tasks that have one)
        for params in ({}, {"output_format": "png"}, {"render": "true", "format": "png"}):
            rounds = [{"task": endpoint.task, "inputs": [name], "params": params} for name in MEMORY_INPUTS]
            report = memory_probe.measure({"stages": True, "rounds": rounds,
                                           "env": {"MEMORY_BUDGET_MB": "100000"}}, timeout=1800)
            for entry in report["rounds"]:
                mp = MEMORY_PIXELS.get(entry["inputs"][0], 6324 * 6324) / 1e6
                for stage, peak in entry["stages"].items():
                    per_stage[stage] = max(per_stage.get(stage, 0.0), peak / mib / mp)
                whole = max(whole, entry["growth"] / mib / mp)
        cost = endpoint.memory
        at_limit = cost.peak_bytes(40_000_000) / mib
        rows.append((endpoint.task, whole * 40, at_limit))
        print(f"{endpoint.task:14s} " + " ".join(f"{per_stage[s]:11.2f}" for s in STAGES) +
              f" {whole:8.2f}  {cost.a_mb:g} + {cost.b_mb_per_mp:g} x MP = {at_limit:.0f} MiB at 40 MP", flush=True)
    for task, measured, documented in rows:
        verdict = "OK" if measured <= documented else "OVER: raise the catalog's factor"
        print(f"  {task}: measured {measured:.0f} MiB at 40 MP, documented {documented:.0f} MiB: {verdict}")
    limits = config.limits()
    peak = catalog.largest_peak_bytes(limits.max_image_pixels) / mib
    body = limits.max_body_bytes / mib
    deployed = 4  # deploy/terraform's http_concurrency default (PYTHON_THREADPOOL_THREAD_COUNT follows it)
    for threads, what in ((deployed, "deployed default"), (config.worker_threads(), "this process's threads")):
        need = catalog.required_instance_mb(threads, limits.max_image_pixels, limits.max_body_bytes)
        print(f"\nbudget arithmetic ({what}): resting {catalog.APP_RESTING_MB} MiB + {threads} at once x "
              f"(largest peak {peak:.0f} MiB at {limits.max_image_pixels / 1e6:g} MP + body {body:.0f} MiB)"
              f" = {need:.0f} MiB")
        for size in (2048, 4096):
            print(f"  Flex instance {size} MB: {'fits' if need <= size else 'does NOT fit'} ({size - need:+.0f} MiB)")
    total, where = config.instance_memory_bytes()
    budget_mib = config.memory_budget_bytes() / mib
    print(f"this machine: instance memory {total / mib:.0f} MiB ({where}), default budget {budget_mib:.0f} MiB"
          f" = {int(budget_mib // (peak + body))} requests at the limits at once")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=ROOT, help="app folder to serve (default: this checkout)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--load-seconds", type=float, default=20.0)
    p.add_argument("--kinds", default="", help="comma-separated kind names (default: all)")
    p.add_argument("--no-load", action="store_true")
    p.add_argument("--no-shapes", action="store_true")
    p.add_argument("--controls", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-only", action="store_true", help="only part 3 (no stack)")
    args = p.parse_args(argv)
    if args.memory_only:
        memory()
        return 0
    names = [n for n in args.kinds.split(",") if n] or None
    work = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    base = work / "detect"
    modelgen.write_version(base, 1, modelgen.ssd_model, [[0, 1, 0.8, 0.5, 0.5, 0.9, 0.9]],
                           input_name="data", hw=(320, 544))
    server = start_model_server({MODEL: base})
    host = None
    try:
        env = model_env("OBJECTDETECTION", server.port, MODEL,
                        extra={"OBJECTDETECTION_LABELS_PATH": "", "OBJECTDETECTION_TIMEOUT_SECONDS": "60"})
        host = start_functions_host(env, timeout=90, root=args.root.resolve())
        print(f"{machine()}; app {args.root.resolve()}; load average {os.getloadavg()[0]:.1f}")
        if not args.no_shapes:
            shapes(host, hostile.kinds(names), args.repeat)
        if not args.no_load:
            kinds = [k for k in hostile.LOAD_KINDS if names is None or k.name in names]
            load(host.port, kinds + (CONTROLS if args.controls else []), args.load_seconds)
        if not args.no_memory:
            memory()
    finally:
        if host is not None:
            host.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
