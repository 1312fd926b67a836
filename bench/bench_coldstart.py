"""Cold start: import time and memory of each function module in a fresh interpreter.

Azure Functions imports a function's module when the worker starts (cold start). The original
OVaaS backend imported TensorFlow there (~2.7 s, ~650 MB). Goal here: well under 0.5 s and 100 MB.
Also reports the first request's extra cost (the heavy modules imported lazily on first use),
so the saving is not hidden: cold start total = import + first-use imports.

    .venv/bin/python bench/bench_coldstart.py [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import machine, print_table  # noqa: E402
from shared import catalog  # noqa: E402

FUNCTIONS = [e.function for e in catalog.ENDPOINTS]

PROBE = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
base = rss_mb()
t = time.perf_counter()
import {module}
t_import = time.perf_counter() - t
rss_import = rss_mb()
t = time.perf_counter()
from shared import imaging, serving, tasks        # what the first request imports
import shared.serving.kserve, shared.serving.tfs
tasks.get_task({task!r})
t_first = time.perf_counter() - t
print(json.dumps({{"import_s": t_import, "import_mb": rss_import - base,
                   "first_use_s": t_first, "first_use_mb": rss_mb() - rss_import}}))
"""

def measure(module: str, runs: int) -> dict:
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), module=module, task=catalog.by_function(module).task)],
                             capture_output=True, text=True, cwd=ROOT, check=True)
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for fn in FUNCTIONS:
        m = measure(fn, args.runs)
        rows.append([fn, m["import_s"] * 1000, m["import_mb"], m["first_use_s"] * 1000, m["first_use_mb"],
                     "yes" if m["import_s"] < 0.5 and m["import_mb"] < 100 else "NO"])
    print(f"machine: {machine()}; median of {args.runs} fresh interpreters each")
    print_table("Function module import (cold start) vs first-use imports",
                rows, ["function", "import ms", "import MB", "first use ms", "first use MB", "< 0.5 s & 100 MB"])


if __name__ == "__main__":
    main()
