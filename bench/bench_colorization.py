"""Bench: HttpTriggerColorization end to end vs the unavoidable work, in the same run.

    .venv/bin/python bench/bench_colorization.py [--iters 8] [--big]

For each model (the placeholder-weight colorization-v2 from ../shared: real Caffe topology and
compute; and a generated PyTorch-variant model: near-zero compute, so it shows our overhead
alone) and each picture, timed in alternation on the same model server:

- ``e2e``: POST the JPEG to the local Functions host, answer a JPEG (``render=true``, what the
  original OVaaS returned) over a kept-alive connection;
- ``e2e json``: the same, answered as JSON (picture base64 inside);
- ``unavoidable``: in this process, decode the JPEG, one KServe gRPC inference of an input of
  the model's shape on the same server (tritonclient), encode a JPEG of the picture's size.

Prints medians and the ratio e2e / unavoidable (goal <= 1.2 for the real topology), then the
server's own per-stage timings from the JSON answer.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (IMAGES, KeepAliveClient, interleaved_ms, machine, median, p95,  # noqa: E402
                          print_table, stack)
from scripts.tooling.modelsearch import find_model, find_side_file  # noqa: E402

ENDPOINT = "/api/HttpTriggerColorization"


def unavoidable_call(port: int, model: str, input_name: str, shape, output_name: str, jpeg: bytes):
    """decode + one gRPC inference + encode, with a client of our own (not the app's adapter)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    tensor = np.random.default_rng(0).uniform(0, 100, shape).astype(np.float32)
    requested = [grpcclient.InferRequestedOutput(output_name)]

    def call():
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        inp = grpcclient.InferInput(input_name, list(shape), "FP32")
        inp.set_data_from_numpy(tensor)
        client.infer(model, [inp], outputs=requested).as_numpy(output_name)
        cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90])

    return call


def pictures(big: bool):
    out = []
    for name in ("ansel_adams2.jpg", "people1.jpeg"):
        path = IMAGES / name
        if path.is_file():
            out.append((name, path.read_bytes()))
    if big and out:
        img = cv2.imdecode(np.frombuffer(out[0][1], np.uint8), cv2.IMREAD_COLOR)
        img = cv2.resize(img, (4000, 3000), interpolation=cv2.INTER_CUBIC)
        out.append(("4000x3000 (upscaled)", cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()))
    return out


def bench_model(label: str, served: str, base: Path, input_shape, output_name: str,
                extra_env, iters: int, big: bool, rows, stage_rows) -> None:
    with stack({served: base}, "COLORIZATION", served, extra_env=extra_env) as (server, host):
        client = KeepAliveClient(host.port)
        for pic_name, jpeg in pictures(big):
            def e2e():
                status, body = client.post(ENDPOINT + "?render=true", jpeg)
                assert status == 200, body[:300]

            def e2e_json():
                status, body = client.post(ENDPOINT, jpeg)
                assert status == 200, body[:300]

            unavoidable = unavoidable_call(server.port, served, "data_l", input_shape, output_name, jpeg)
            ms = interleaved_ms({"e2e": e2e, "e2e json": e2e_json, "unavoidable": unavoidable},
                                n=iters, warmup=2)
            base_ms = median(ms["unavoidable"])
            for kind in ("e2e", "e2e json"):
                rows.append([label, pic_name, kind, median(ms[kind]), p95(ms[kind]), base_ms,
                             median(ms[kind]) / base_ms])
            status, body = client.post(ENDPOINT, jpeg)
            timing = json.loads(body)["timing_ms"]
            stage_rows.append([label, pic_name] + [float(timing.get(k, 0.0)) for k in
                                                   ("decode", "preprocess", "inference", "postprocess",
                                                    "total")])
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--big", action="store_true", help="also a 12-megapixel picture")
    args = ap.parse_args()
    print(machine())
    rows, stage_rows = [], []

    synthetic = find_model("colorization-v2")
    coeffs = find_side_file("colorization-v2", "colorization-v2.npy")
    if synthetic is None or coeffs is None:
        print("colorization-v2 (models-synthetic) not found: skipping the Caffe topology")
    else:
        bench_model("caffe (real topology)", "colorization", synthetic, (1, 1, 224, 224), "class8_313_rh",
                    {"COLORIZATION_COEFFICIENTS_PATH": str(coeffs)}, args.iters, args.big, rows, stage_rows)

    from tests.modelgen import colorization_models as gen

    with tempfile.TemporaryDirectory() as tmp:
        base = gen.write(gen.pytorch_variant(10.0, 20.0, 0.3), Path(tmp), "color-pytorch")
        bench_model("pytorch (generated)", "color-pytorch", base, (1, 1, 256, 256), "color_ab", {},
                    args.iters, args.big, rows, stage_rows)

    print_table("median ms (interleaved; ratio = e2e / unavoidable, goal <= 1.2 on the real topology)", rows,
                ["model", "picture", "path", "median", "p95", "unavoidable", "ratio"])
    print_table("server-side stages of one JSON answer (ms)", stage_rows,
                ["model", "picture", "decode", "preprocess", "inference", "postprocess", "total"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
