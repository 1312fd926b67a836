"""Bench: how far the detection endpoint's answers drift from Intel's model_api at the device's
default inference precision, against f32 on both sides.

    .venv/bin/python bench/bench_precision.py [--threshold 0.5]

For each real SSD detector (person-detection-0200, person-vehicle-bike-detection-2000,
person-detection-retail-0013) the local model server serves it twice: with OpenVINO's defaults
(bf16 on CPUs with AMX or avx512_bf16, Zen 4 EPYCs among them; f32 elsewhere) and with
``plugin_config {"INFERENCE_PRECISION_HINT": "f32"}``. The endpoint's pipeline (``DetectionTask``
through the KServe adapter) is compared with model_api's SSD wrapper run in-process at the same
precision, on every photo in ../shared/images, its mirror image and a centre crop. Each of our detections is matched to the nearest oracle box of
the same label; printed per detector and precision: detections compared, the worst box corner gap
(px), the worst score gap, and detections without a partner (both sides may drop a box whose score
is within the score gap of the threshold). These figures set the tolerance of
tests/test_detection_serving.py::test_real_detectors_at_device_default_precision.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import IMAGES, machine, precision_line, print_table, start_model_server  # noqa: E402
from scripts.tooling.modelsearch import find_model, model_xml  # noqa: E402

DETECTORS = ("person-detection-0200", "person-vehicle-bike-detection-2000", "person-detection-retail-0013")
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def photos() -> Dict[str, np.ndarray]:
    """Every photo, mirrored and centre-cropped too."""
    out: Dict[str, np.ndarray] = {}
    for path in sorted(IMAGES.glob("*.jp*g")):
        img = cv2.imread(str(path))
        if img is None or "handwrit" in path.name:
            continue
        h, w = img.shape[:2]
        out[path.name] = img
        out[path.name + " mirrored"] = np.ascontiguousarray(img[:, ::-1])
        out[path.name + " crop"] = np.ascontiguousarray(img[h // 8: h - h // 8, w // 6: w - w // 6])
    return out


def oracle(name: str, plugin: Dict[str, str], threshold: float):
    """model_api's SSD wrapper (stretch resize, BGR, no mean/scale) at ``plugin``'s precision."""
    from model_api.adapters import OpenvinoAdapter, create_core
    from model_api.models import SSD

    adapter = OpenvinoAdapter(create_core(), str(model_xml(name)), device="CPU", plugin_config=dict(plugin))
    model = SSD(adapter, {"resize_type": "standard", "reverse_input_channels": False, "mean_values": [],
                          "scale_values": [], "confidence_threshold": threshold}, preload=True)
    precision = adapter.compiled_model.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return model, precision


def ours(port: int, served: str, images: Dict[str, np.ndarray], threshold: float):
    """The endpoint's pipeline through the model server, in this process."""
    from shared import config, serving
    from shared.timings import Timings
    from shared.tasks.detection import DetectionTask

    env = {"OBJECTDETECTION_IPADDRESS": "127.0.0.1", "OBJECTDETECTION_PORT": str(port),
           "OBJECTDETECTION_MODEL_NAME": served, "OVMS_API": "kserve"}
    adapter = serving.get_adapter(config.model_settings("OBJECTDETECTION", env))
    task = DetectionTask()
    options = task.parse_options({"threshold": threshold})
    return {k: task.run(img, adapter, options, Timings()).detections for k, img in images.items()}


def gaps(mine, model, img, threshold: float) -> Tuple[int, float, float, int]:
    """(compared, worst box gap px, worst score gap, unmatched outside the threshold band)."""
    r = model(img)
    boxes = np.asarray(r.bboxes, np.float64).reshape(-1, 4)
    scores, labels = np.asarray(r.scores, np.float64), np.asarray(r.labels, np.int64)
    free = set(range(len(scores)))
    worst_box = worst_score = 0.0
    unmatched = 0
    for d in mine:
        cands = [i for i in free if labels[i] == d.label_id]
        if not cands:
            unmatched += 1
            continue
        p = np.array(d.points)
        j = min(cands, key=lambda i: np.abs(boxes[i] - p).max())
        free.remove(j)
        worst_box = max(worst_box, float(np.abs(boxes[j] - p).max()))
        worst_score = max(worst_score, abs(d.confidence - scores[j]))
    unmatched += len(free)
    return len(mine), worst_box, worst_score, unmatched


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threshold", type=float, default=0.5)
    args = p.parse_args()
    present = [n for n in DETECTORS if find_model(n)]
    if not present:
        print("no real detectors found (models/, $OVAAS_MODELS_DIR, ../shared/models-real)", file=sys.stderr)
        return 2
    print(machine())
    print(precision_line())
    images = photos()
    print(f"{len(images)} pictures from {IMAGES}")
    served = {n: find_model(n) for n in present}
    served.update({f"{n}-f32": find_model(n) for n in present})
    plugins = {f"{n}-f32": F32 for n in present}
    server = start_model_server(served, plugin_configs=plugins)
    rows: List[list] = []
    try:
        for name in present:
            for label, plugin, served_name in (("default", {}, name), ("f32", F32, f"{name}-f32")):
                model, precision = oracle(name, plugin, args.threshold)
                answers = ours(server.port, served_name, images, args.threshold)
                total, box, score, unmatched = 0, 0.0, 0.0, 0
                for key, img in images.items():
                    n, b, s, u = gaps(answers[key], model, img, args.threshold)
                    total, box, score, unmatched = total + n, max(box, b), max(score, s), unmatched + u
                rows.append([name, f"{label} ({precision})", total, round(box, 3), f"{score:.2e}", unmatched])
    finally:
        server.stop()
    print_table(f"endpoint vs model_api, threshold {args.threshold}", rows,
                ["detector", "precision", "detections", "worst box px", "worst score", "unpaired"])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OVMS_METADATA_TTL_SECONDS", "300")
    sys.exit(main())
