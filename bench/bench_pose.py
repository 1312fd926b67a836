"""Pose endpoint benchmark: OpenPose decoding vs the model's inference, and HTTP latency vs the
unavoidable work, measured side by side in one run.

    PYTHONPATH=. .venv/bin/python bench/bench_pose.py [-n 30]

1. On each photo (people1.jpeg first: 10-11 people), the decoder (``PoseTask.postprocess``) vs an
   in-process OpenVINO inference of human-pose-estimation-0001 on the same preprocessed input,
   interleaved. Goal: decode <= 0.3x inference on people1.jpeg.
2. POST people1.jpeg to the endpoint (Functions host -> local model server, keep-alive), vs the
   unavoidable work done in this process: JPEG decode + resize/pad + in-process inference.
   Goal: HTTP <= 1.3x unavoidable.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from scripts.tooling.modelsearch import find_model  # noqa: E402
from shared.serving.base import ModelMetadata, TensorInfo  # noqa: E402
from shared.tasks.pose import PoseOptions, PoseTask  # noqa: E402

PHOTOS = ("people1.jpeg", "people2.jpeg", "people3.jpeg", "people4.jpeg", "baseball.jpg")
DECODE_GOAL, HTTP_GOAL = 0.3, 1.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="timed repetitions per measurement")
    args = parser.parse_args()

    base = find_model("human-pose-estimation-0001")
    if base is None:
        print("needs_real_models: human-pose-estimation-0001 not found", file=sys.stderr)
        return 2
    xml = next(base.glob("*/*.xml"))
    compiled = common.inprocess_model(xml)
    inp = compiled.inputs[0]
    meta = ModelMetadata("human-pose-estimation", "1",
                         {inp.get_any_name(): TensorInfo(inp.get_any_name(), tuple(inp.shape), "float32")}, {})
    task = PoseTask()
    opts = PoseOptions()
    print(common.machine())
    print(f"model: {xml}")

    # 1. decode vs inference ------------------------------------------------------------------
    rows = []
    ratios = {}
    for photo in PHOTOS:
        image = cv2.imread(str(common.IMAGES / photo))
        inputs, ctx = task.preprocess(image, meta, opts)
        outputs = {o.get_any_name(): np.asarray(v) for o, v in compiled(inputs).items()}
        people = len(task.postprocess(outputs, ctx, meta, opts).people)
        t = common.interleaved_ms({
            "inference": lambda: compiled(inputs),
            "decode": lambda: task.postprocess(outputs, ctx, meta, opts),
        }, args.n)
        inf, dec = common.median(t["inference"]), common.median(t["decode"])
        ratios[photo] = dec / inf
        rows.append([photo, people, inf, dec, common.p95(t["decode"]), dec / inf])
    common.print_table("Decoding vs in-process inference (median ms)", rows,
                       ["image", "people", "inference", "decode", "decode p95", "decode/inference"])
    print(f"goal: decode <= {DECODE_GOAL}x inference on people1.jpeg -> "
          f"{ratios['people1.jpeg']:.3f}x {'OK' if ratios['people1.jpeg'] <= DECODE_GOAL else 'MISSED'}")

    # 2. HTTP vs unavoidable work --------------------------------------------------------------
    data = (common.IMAGES / "people1.jpeg").read_bytes()

    def unavoidable():
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        inputs, _ = task.preprocess(image, meta, opts)
        return compiled(inputs)

    with common.stack({"human-pose-estimation": base}, "HUMANPOSE", "human-pose-estimation") as (_, host):
        client = common.KeepAliveClient(host.port)
        path = "/api/HttpTriggerHumanPose"
        status, body = client.post(path, data)
        if status != 200:
            print(f"endpoint answered {status}: {body[:300]!r}", file=sys.stderr)
            return 1
        answer = json.loads(body)

        def http():
            s, _ = client.post(path, data)
            assert s == 200

        t = common.interleaved_ms({"http": http, "unavoidable": unavoidable}, args.n)
        client.close()
    h, u = common.median(t["http"]), common.median(t["unavoidable"])
    common.print_table("people1.jpeg end to end (ms)", [
        ["HTTP POST (host -> gRPC model server)", h, common.p95(t["http"])],
        ["unavoidable: JPEG decode + resize + in-process inference", u, common.p95(t["unavoidable"])],
    ], ["", "median", "p95"])
    print(f"server-side stages of one request: {answer.get('timing_ms')}")
    print(f"goal: HTTP <= {HTTP_GOAL}x unavoidable -> {h / u:.3f}x {'OK' if h / u <= HTTP_GOAL else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
