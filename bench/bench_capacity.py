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

from bench.common import IMAGES, start_model_server  # noqa: E402

OUT = ROOT / "bench" / "capacity.json"


def _endpoints():
    """endpoint function -> (task, settings prefix, source model, served name, photos), from the
    catalog."""
    from shared import catalog
    return {e.function: (e.task, e.prefix, e.omz_model, e.model_name, list(e.sample_images))
            for e in catalog.ENDPOINTS}


ENDPOINTS = _endpoints()


def _side_files():
    """setting -> (source model, file name) of the side files the stack uploads beside a model."""
    from shared import catalog
    return {side.setting: (e.omz_model, side.filename) for e in catalog.ENDPOINTS for side in e.side_files
            if side.filename and side.where == catalog.BESIDE_MODEL}


SIDE_FILES = _side_files()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def type_name(value) -> str:
    """An OpenVINO element type as OpenVINO spells it (f32, bf16, f16)."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def summary(values: List[float]) -> Dict[str, float]:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return {"mean": round(statistics.fmean(values), 3), "median": round(statistics.median(values), 3),
            "p95": round(p95, 3), "n": len(values)}


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
    for _, (_, _, src, served, _) in ENDPOINTS.items():
        path = find_model(src)
        if path is None or not ovms_layout(path):
            raise SystemExit(f"{src}: no OVMS-layout copy found (see README: models/, $OVAAS_MODELS_DIR, ../shared)")
        models[served] = path
    server = start_model_server(models)
    try:
        for prefix in {e[1] for e in ENDPOINTS.values()}:
            os.environ[f"{prefix}_IPADDRESS"] = "127.0.0.1"
            os.environ[f"{prefix}_PORT"] = str(server.port)
            os.environ[f"{prefix}_MODEL_NAME"] = next(e[3] for e in ENDPOINTS.values() if e[1] == prefix)
        os.environ["OVMS_API"] = "kserve"
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
        for endpoint, (task, prefix, src, served, photos) in ENDPOINTS.items():
            serving.get_adapter = lambda settings: Recording(real_get_adapter(settings))
            per = {"json": [], "image": []}
            for photo in photos:
                current.update(endpoint=endpoint, photo=photo, record=False)
                body = (IMAGES / photo).read_bytes()
                for kind in ("json", "image"):
                    for i in range(warmup + repeat):
                        req = request(body, photo, kind == "image")
                        current["record"] = kind == "json" and i == 0
                        c0 = time.process_time()
                        resp = http.handle(req, task)
                        c1 = time.process_time()
                        if resp.status_code != 200:
                            raise SystemExit(f"{endpoint} {photo}: HTTP {resp.status_code} {resp.get_body()[:300]!r}")
                        if i >= warmup:
                            per[kind].append((c1 - c0) * 1000.0)
            results[endpoint] = {"app_cpu_ms": summary(per["json"]), "app_image_cpu_ms": summary(per["image"]),
                                 "photos": photos}
        serving.get_adapter = real_get_adapter
        inputs = {e: [sent[(e, photo)] for photo in ENDPOINTS[e][4]] for e in ENDPOINTS}
        return results, models, inputs
    finally:
        server.stop()


def measure_inference(models, inputs, precision: str, repeat: int, warmup: int) -> Dict[str, dict]:
    import openvino as ov
    core = ov.Core()
    out = {}
    for endpoint, (_, _, src, served, _) in ENDPOINTS.items():
        version_dir = sorted((p for p in models[served].iterdir() if p.name.isdigit()), key=lambda p: int(p.name))[-1]
        xml = next(version_dir.glob("*.xml"))
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
                         "precision_used": type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=20, help="measured requests per photo (default 20)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", default="f32", help="INFERENCE_PRECISION_HINT, as deploy/k8s pins it (f32)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    import openvino as ov
    default_precision = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    app, models, inputs = measure_app(args.repeat, args.warmup)
    inference = measure_inference(models, inputs, args.precision, args.repeat, args.warmup)
    endpoints = {e: {**inference[e], **app[e]} for e in ENDPOINTS}
    report = {
        "what": "per-request process CPU time, milliseconds (bench/bench_capacity.py)",
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(), "python": platform.python_version(),
                    "openvino": ov.__version__,
                    "cpu_default_inference_precision": type_name(default_precision),
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
