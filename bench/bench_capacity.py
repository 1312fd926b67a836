"""Measure the inputs of the capacity model (scripts/capacity.py) and write bench/capacity.json.

Run by hand: ``.venv/bin/python bench/bench_capacity.py [--repeat 20] [--precision f32]``.

Two per-request CPU times per endpoint, measured as process CPU time (``time.process_time``:
every thread of this process, user + system), not wall time:

- ``inference_cpu_ms``: one inference of the endpoint's model, in-process with the OpenVINO
  runtime, compiled as OVMS runs it in deploy/k8s (CPU, INFERENCE_PRECISION_HINT pinned, one
  inference thread, latency hint), on the exact tensors the app sends for each photo;
- ``app_cpu_ms``: the app's own work for one request, through ``shared.http.handle`` exactly as
  the Function runs it: request parsing, image decode, preprocessing, the gRPC client (tensor
  serialisation and deserialisation), postprocessing and JSON encoding (``app_image_cpu_ms``:
  the same with a rendered picture as the answer). The model server is the local stand-in
  (``emulators.ovms``) in another process, so its inference does not count here.

Photos: ../shared/images. Models: found as scripts/stack.sh finds them; the handwriting and
colorization models in ../shared are topology-exact with placeholder weights (recorded in the
JSON: inference cost follows the topology, but postprocessing of placeholder outputs may differ).
The machine's CPU model, core count, OpenVINO version, its default inference precision and the
one used are recorded with the figures.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import IMAGES, cpu_model, default_precision, model_env, p95, start_model_server  # noqa: E402
from shared import catalog  # noqa: E402

OUT = ROOT / "bench" / "capacity.json"
#: endpoint function -> its catalog entry
ENDPOINTS = {e.function: e for e in catalog.ENDPOINTS}
#: setting -> (source model, file name) of the side files the stack uploads beside a model
SIDE_FILES = {side.setting: (e.omz_model, side.filename) for e in catalog.ENDPOINTS for side in e.side_files
              if side.filename and side.where == catalog.BESIDE_MODEL}


def summary(values: List[float]) -> Dict[str, float]:
    return {"mean": round(statistics.fmean(values), 3), "median": round(statistics.median(values), 3),
            "p95": round(p95(values), 3), "n": len(values)}


def request(body: bytes, name: str, render: bool):
    import azure.functions as func
    mime = "image/png" if name.endswith(".png") else "image/jpeg"
    headers = {"Content-Type": mime}
    if render:
        headers["Accept"] = "image/jpeg"
    return func.HttpRequest(method="POST", url="http://localhost/api/bench", headers=headers, body=body)


def measure_app(repeat: int, warmup: int) -> Dict[str, dict]:
    """App CPU per request (JSON and picture answers), and the tensors it sends per photo."""
    from scripts.tooling.modelsearch import find_model, find_side_file, ovms_layout
    from shared import http, serving

    models = {}
    for e in ENDPOINTS.values():
        path = find_model(e.omz_model)
        if path is None or not ovms_layout(path):
            raise SystemExit(f"{e.omz_model}: no OVMS-layout copy found "
                             "(see README: models/, $OVAAS_MODELS_DIR, ../shared)")
        models[e.model_name] = path
    server = start_model_server(models)
    try:
        for e in ENDPOINTS.values():
            os.environ.update(model_env(e.prefix, server.port, e.model_name))
        for setting, (src, fname) in SIDE_FILES.items():
            side = find_side_file(src, fname)
            if side is None:
                raise SystemExit(f"{src}: side file {fname} not found")
            os.environ[setting] = str(side)

        sent: Dict[tuple, list] = {}  # (endpoint, photo) -> every input sent for one request
        current = {}
        real_get_adapter = serving.get_adapter

        class Recording:
            def __init__(self, inner):
                self.inner = inner

            def __getattr__(self, name):
                return getattr(self.inner, name)

            def infer(self, inputs):
                if current["record"]:  # a request may infer several times (one per text line)
                    key = (current["endpoint"], current["photo"])
                    sent.setdefault(key, []).append({k: v.copy() for k, v in inputs.items()})
                return self.inner.infer(inputs)

        results = {}
        for endpoint, e in ENDPOINTS.items():
            serving.get_adapter = lambda settings: Recording(real_get_adapter(settings))
            per = {"json": [], "image": []}
            photos = list(e.sample_images)
            for photo in photos:
                current.update(endpoint=endpoint, photo=photo, record=False)
                body = (IMAGES / photo).read_bytes()
                for kind in ("json", "image"):
                    for i in range(warmup + repeat):
                        req = request(body, photo, kind == "image")
                        current["record"] = kind == "json" and i == 0
                        c0 = time.process_time()
                        resp = http.handle(req, e.task)
                        c1 = time.process_time()
                        if resp.status_code != 200:
                            raise SystemExit(f"{endpoint} {photo}: HTTP {resp.status_code} {resp.get_body()[:300]!r}")
                        if i >= warmup:
                            per[kind].append((c1 - c0) * 1000.0)
            results[endpoint] = {"app_cpu_ms": summary(per["json"]), "app_image_cpu_ms": summary(per["image"]),
                                 "photos": photos}
        serving.get_adapter = real_get_adapter
        inputs = {f: [sent[(f, photo)] for photo in e.sample_images] for f, e in ENDPOINTS.items()}
        return results, inputs
    finally:
        server.stop()


def measure_inference(inputs, precision: str, repeat: int, warmup: int) -> Dict[str, dict]:
    import openvino as ov

    from scripts.tooling.modelsearch import model_xml
    core = ov.Core()
    out = {}
    for endpoint, e in ENDPOINTS.items():
        src, served = e.omz_model, e.model_name
        xml = model_xml(src)
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": 1}
        compiled = core.compile_model(core.read_model(xml), "CPU", config)
        request_ = compiled.create_infer_request()
        cpu, wall = [], []
        calls_per_request = []
        for calls in inputs[endpoint]:  # one photo: every inference its request makes
            feeds = [{compiled.input(name): value for name, value in tensors.items()} for tensors in calls]
            calls_per_request.append(len(feeds))
            for i in range(warmup + repeat):
                c0, w0 = time.process_time(), time.perf_counter()
                for feed in feeds:
                    request_.infer(feed)
                c1, w1 = time.process_time(), time.perf_counter()
                if i >= warmup:
                    cpu.append((c1 - c0) * 1000.0)
                    wall.append((w1 - w0) * 1000.0)
        synthetic = "models-synthetic" in str(xml)
        out[endpoint] = {"model": served, "source_model": src,
                         "weights": "placeholder (topology-exact, ../shared/models-synthetic)" if synthetic else "real",
                         "inference_calls_per_request": calls_per_request,
                         "inference_cpu_ms": summary(cpu), "inference_wall_ms": summary(wall),
                         "precision_used": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=20, help="measured requests per photo (default 20)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", default="f32", help="INFERENCE_PRECISION_HINT, as deploy/k8s pins it (f32)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    import openvino as ov
    cpu_default = default_precision()
    app, inputs = measure_app(args.repeat, args.warmup)
    inference = measure_inference(inputs, args.precision, args.repeat, args.warmup)
    endpoints = {e: {**inference[e], **app[e]} for e in ENDPOINTS}
    report = {
        "what": "per-request process CPU time, milliseconds (bench/bench_capacity.py)",
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(), "python": platform.python_version(),
                    "openvino": ov.__version__,
                    "cpu_default_inference_precision": cpu_default,
                    "inference_precision_hint": args.precision},
        "method": {"repeat_per_photo": args.repeat, "warmup_per_photo": args.warmup,
                   "inference": "in-process OpenVINO, CPU, 1 thread, PERFORMANCE_HINT=LATENCY",
                   "app": "shared.http.handle with the KServe gRPC adapter against emulators.ovms in another process"},
        "endpoints": endpoints,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'endpoint':28} {'infer CPU ms':>12} {'app CPU ms':>11} {'app+render':>11}")
    for e, r in endpoints.items():
        print(f"{e:28} {r['inference_cpu_ms']['mean']:12.1f} {r['app_cpu_ms']['mean']:11.1f} "
              f"{r['app_image_cpu_ms']['mean']:11.1f}")
    print(f"CPU: {report['machine']['cpu_model']}; default precision "
          f"{report['machine']['cpu_default_inference_precision']}, used {args.precision}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
