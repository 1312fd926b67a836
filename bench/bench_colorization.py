"""Bench: HttpTriggerColorization end to end vs the unavoidable work, in the same run.

    .venv/bin/python bench/bench_colorization.py [--iters 8] [--big]

For each model (the placeholder-weight colorization-v2 from ../shared: real Caffe topology and
compute; and a generated PyTorch-variant model: near-zero compute, so it shows our overhead
alone) and each picture, timed in alternation on the same model server:

- ``e2e``: POST the JPEG to the local Functions host, answer a JPEG (``render=true``, what the
  original OVaaS returned) over a kept-alive connection;
- ``e2e json``: the same, answered as JSON (picture base64 inside);
- ``unavoidable``: in this process, decode the JPEG, resize its grey channel to the model's input,
  one in-process OpenVINO inference of the same model (same compile config as the server), and
  encode a JPEG of the picture's size (the answer is a picture, so encoding it is unavoidable).

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

from bench.common import (IMAGES, KeepAliveClient, inprocess_model, interleaved_ms, machine,  # noqa: E402
                          median, p95, print_table, stack)
from scripts.tooling.modelsearch import find_model, find_side_file  # noqa: E402

ENDPOINT = "/api/HttpTriggerColorization"


def unavoidable_call(base: Path, shape, jpeg: bytes):
    """decode + resize + in-process inference + encode (what no implementation can avoid)."""
    compiled = inprocess_model(sorted(base.glob("*/*.xml"))[-1])
    request = compiled.create_infer_request()
    height, width = shape[2], shape[3]

    def call():
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        grey = cv2.resize(cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY), (width, height))
        request.infer({0: grey.astype(np.float32)[None, None] * (100.0 / 255.0)})
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

            unavoidable = unavoidable_call(base, input_shape, jpeg)
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


def pytorch_standin(base: Path) -> Path:
    """A stand-in with the PyTorch variant's signature (data_l [1,1,256,256] -> color_ab
    [1,2,256,256]; a 1x1 convolution), saved as ``base/1/model.xml``: the real weights of that
    variant are not available here. Returns ``base``."""
    import openvino as ov
    import openvino.opset8 as ops

    data = ops.parameter([1, 1, 256, 256], np.float32, name="data_l")
    weights = ops.constant(np.array([0.3, -0.2], np.float32).reshape(2, 1, 1, 1))
    conv = ops.convolution(data, weights, [1, 1], [0, 0], [0, 0], [1, 1])
    conv.output(0).get_tensor().set_names({"color_ab"})
    (base / "1").mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([ops.result(conv)], [data], "colorization-pytorch-standin"),
                  str(base / "1" / "model.xml"), compress_to_fp16=False)
    return base


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

    with tempfile.TemporaryDirectory() as tmp:
        base = pytorch_standin(Path(tmp) / "color-pytorch")
        bench_model("pytorch (generated)", "color-pytorch", base, (1, 1, 256, 256), "color_ab", {},
                    args.iters, args.big, rows, stage_rows)

    print_table("median ms (interleaved; ratio = e2e / unavoidable, goal <= 1.2 on the real topology)", rows,
                ["model", "picture", "path", "median", "p95", "unavoidable", "ratio"])
    print_table("server-side stages of one JSON answer (ms)", stage_rows,
                ["model", "picture", "decode", "preprocess", "inference", "postprocess", "total"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
