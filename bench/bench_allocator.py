"""Bench: page faults per KServe call of a 2 MB tensor, glibc as it comes vs shared.allocator's tuning.

    .venv/bin/python bench/bench_allocator.py [--runs 6]

Runs tests/probes/kserve_page_faults.py (gRPC server and client in one fresh interpreter, 50
calls after 10 of warm-up) in its three modes, alternated run by run: ``plain`` (glibc's own
adaptive thresholds), ``tuned`` (what the app and the model server run) and ``fresh`` (the
control: every large block mapped afresh). The plain figure depends on the machine and the glibc
version (~1,400 to ~1,540 per call on an Intel Xeon, ~130 seen elsewhere), which is why the ratio
is printed here and not asserted by tests/test_allocator.py.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import machine, print_table  # noqa: E402

PROBE = ROOT / "tests" / "probes" / "kserve_page_faults.py"
MODES = ("plain", "tuned", "fresh")


def faults_per_call(mode: str) -> float:
    """One fresh interpreter's page faults per call in ``mode``."""
    out = subprocess.run([sys.executable, str(PROBE), mode], capture_output=True, text=True,
                         check=True, timeout=300)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["faults_per_call"])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="fresh interpreters per mode")
    args = parser.parse_args(argv)
    print(machine())
    samples: Dict[str, List[float]] = {m: [] for m in MODES}
    for _ in range(args.runs):
        for mode in MODES:  # alternated, so a change in the machine's load touches every mode alike
            samples[mode].append(faults_per_call(mode))
    rows = [(m, min(v), statistics.median(v), max(v)) for m, v in samples.items()]
    print_table(f"page faults per call ({args.runs} interpreters per mode)", rows,
                ("mode", "min", "median", "max"))
    plain, tuned = statistics.median(samples["plain"]), statistics.median(samples["tuned"])
    print(f"\nplain / tuned (medians): {plain / tuned:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
