"""Bench: HttpTriggerObjectDetection end to end vs the work no implementation can avoid.

    .venv/bin/python bench/bench_detection.py [--model person-detection-0200] [--image people1.jpeg]
                                              [--iters 60]

Starts the local model server (serving ``--model``) and the local Functions host pointed at it by
settings, then times, interleaved in one run on one machine:

- ``e2e``: POST the JPEG to /api/HttpTriggerObjectDetection over a kept-alive HTTP connection and
  read the JSON answer (request parsing, decode, preprocess, gRPC to the model server, inference,
  post-processing, JSON, the host's HTTP);
- ``unavoidable``: in this process, decode the same bytes (``shared.imaging.decode``, as the endpoint
  must), stretch-resize with cv2's plain uint8 bilinear and make the NCHW float32 blob, and run the
  model with in-process OpenVINO compiled like the server compiles it (CPU, PERFORMANCE_HINT=LATENCY).

Prints the medians and p95s, the ratio e2e / unavoidable (goal <= 1.5) and the endpoint's own
per-stage timings (``timing_ms``) so the overhead can be located.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (IMAGES, KeepAliveClient, inprocess_model, interleaved_ms, machine,  # noqa: E402
                          median, p95, print_table, stack)
from scripts.tooling.modelsearch import find_model, model_xml  # noqa: E402

GOAL = 1.5
PATH = "/api/HttpTriggerObjectDetection"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="person-detection-0200")
    ap.add_argument("--image", default="people1.jpeg")
    ap.add_argument("--iters", type=int, default=60)
    args = ap.parse_args()

    import cv2

    from shared import config, imaging

    base = find_model(args.model)
    if base is None:
        print(f"model {args.model} not found (models/, $OVAAS_MODELS_DIR, ../shared)", file=sys.stderr)
        return 2
    data = (IMAGES / args.image).read_bytes()
    limits = config.limits({})
    compiled = inprocess_model(model_xml(args.model), "LATENCY")
    port_in = compiled.inputs[0]
    _, _, h, w = (int(d) for d in port_in.shape)
    request = compiled.create_infer_request()

    parts = {"decode": [], "resize": [], "inference": []}

    def unavoidable() -> None:
        t0 = time.perf_counter()
        pixels = imaging.decode(data, limits).pixels
        t1 = time.perf_counter()
        blob = np.ascontiguousarray(
            cv2.resize(pixels, (w, h), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)[None],
            dtype=np.float32)
        t2 = time.perf_counter()
        request.infer({0: blob})
        t3 = time.perf_counter()
        for k, a, b in (("decode", t0, t1), ("resize", t1, t2), ("inference", t2, t3)):
            parts[k].append((b - a) * 1000.0)

    print(machine())
    print(f"model {args.model} (input {w}x{h}), image {args.image} ({len(data)} bytes), {args.iters} iterations")
    with stack({args.model: base}, "OBJECTDETECTION", args.model) as (_server, host):
        client = KeepAliveClient(host.port)
        stages = []

        def e2e() -> None:
            status, body = client.post(PATH, data)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            stages.append(json.loads(body)["timing_ms"])

        e2e()
        first = json.loads(client.post(PATH, data)[1])
        print(f"{len(first['detections'])} detections, best {first['detections'][0] if first['detections'] else None}")
        times = interleaved_ms({"e2e": e2e, "unavoidable": unavoidable}, args.iters, warmup=5)
        client.close()

    rows = [(k, median(v), p95(v)) for k, v in times.items()]
    print_table("latency (ms)", rows, ("what", "median", "p95"))
    print_table("unavoidable, by part (median)", [(k, median(v)) for k, v in parts.items()], ("part", "ms"))
    keys = ("decode", "preprocess", "inference", "postprocess", "total")
    print_table("endpoint timing_ms (median over the e2e calls)",
                [(k, median([s.get(k, 0.0) for s in stages])) for k in keys], ("stage", "ms"))
    ratio = median(times["e2e"]) / median(times["unavoidable"])
    print(f"\nratio e2e / unavoidable (medians): {ratio:.2f}  (goal <= {GOAL})  "
          f"{'OK' if ratio <= GOAL else 'OVER GOAL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
