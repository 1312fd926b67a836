"""Peak memory of whole requests through ``shared.http.handle``, measured in a fresh child process.

``measure(spec)`` runs ``python -m tests.memory_probe`` with ``spec`` (JSON) and returns what it
printed. The child serves each endpoint with an in-process adapter that answers the model's
declared output shapes at once (the model server is another process: its memory is not the
app's), warms every endpoint up with a small picture (imports, first-use allocations), then for
each round builds its pictures, resets the kernel's high-water mark (``/proc/self/clear_refs``)
and sends the round's requests at once, one thread each, released together by a barrier. It
reports per round the process's peak RSS growth over its RSS before the round, and each answer's
status and error code.

With ``"stages": true`` (rounds of one request) it also reports the peak of each stage of the
request (decode, preprocess, inference, postprocess, render, encode, and ``answer``: building
the HTTP answer after the last stage), each relative to the RSS before the request.

The budget (``MEMORY_BUDGET_MB``) and the other settings come from ``spec["env"]``.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def measure(spec: Mapping[str, Any], timeout: float = 600) -> Dict[str, Any]:
    """Run the probe in a fresh child with ``spec``; its JSON report."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in spec.get("env", {}).items()})
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "tests.memory_probe", json.dumps(spec)], cwd=str(ROOT),
                          env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"the probe died (exit {proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the child -------------------------------------------------------------------------------------

def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} missing from /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS


def _side_file(model: str, name: str) -> str:
    """A side file from the model search path (models/, $OVAAS_MODELS_DIR, ../shared)."""
    from scripts.tooling.modelsearch import find_side_file

    path = find_side_file(model, name)
    if path is None:
        raise FileNotFoundError(f"{model}/{name} is in no model folder")
    return str(path)


def _adapters() -> Dict[str, Any]:
    """Per settings prefix: an adapter answering that task's model with fixed outputs."""
    import numpy as np

    from shared.serving.base import InferenceAdapter, ModelMetadata, ModelStatus, TensorInfo

    class Fixed(InferenceAdapter):
        def __init__(self, meta: ModelMetadata, outputs: Dict[str, Any]) -> None:
            self.meta, self.outputs = meta, outputs

        def metadata(self) -> ModelMetadata:
            return self.meta

        def status(self) -> ModelStatus:
            return ModelStatus(self.meta.name, "1", True, "AVAILABLE")

        def infer(self, inputs):
            return {k: v.copy() for k, v in self.outputs.items()}

    def meta(name, inputs, outputs):
        return ModelMetadata(name, "1", {n: TensorInfo(n, s, "float32") for n, s in inputs},
                             {n: TensorInfo(n, s, "float32") for n, s in outputs})

    boxes = np.zeros((1, 1, 200, 7), np.float32)
    for i in range(200):  # 200 boxes drawn over the picture: the render's worst
        boxes[0, 0, i] = (0, 1, 0.9, (i % 20) / 20, (i // 20) / 10, (i % 20) / 20 + 0.05, (i // 20) / 10 + 0.1)
    rng = np.random.default_rng(5)
    return {
        "HUMANPOSE": Fixed(meta("human-pose-estimation", [("data", (1, 3, 256, 456))],
                                [("Mconv7_stage2_L1", (1, 38, 32, 57)), ("Mconv7_stage2_L2", (1, 19, 32, 57))]),
                           {"Mconv7_stage2_L1": rng.uniform(-1, 1, (1, 38, 32, 57)).astype(np.float32),
                            "Mconv7_stage2_L2": rng.uniform(0, 1, (1, 19, 32, 57)).astype(np.float32)}),
        "OBJECTDETECTION": Fixed(meta("object-detection", [("data", (1, 3, 320, 544))],
                                      [("detection_out", (1, 1, 200, 7))]), {"detection_out": boxes}),
        "HANDWRITTEN": Fixed(meta("handwritten-japanese-recognition", [("actual_input", (1, 1, 96, 2000))],
                                  [("output", (186, 1, 4442))]),
                             {"output": rng.uniform(0, 1, (186, 1, 4442)).astype(np.float32)}),
        "COLORIZATION": Fixed(meta("colorization", [("data_l", (1, 1, 256, 256))], [("color_ab", (1, 2, 256, 256))]),
                              {"color_ab": rng.uniform(-40, 40, (1, 2, 256, 256)).astype(np.float32)}),
    }


def _builders() -> Dict[str, Callable[[], bytes]]:
    from tests import hostile

    def photo(side: int = 6324) -> bytes:  # a real photo, grey, scaled to the pixel limit
        import cv2

        img = cv2.imread(str(SHARED / "images" / "ansel_adams2.jpg"), cv2.IMREAD_GRAYSCALE)
        big = cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR)
        return cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()

    def noise(side: int = 6324) -> bytes:  # grey noise at the pixel limit, just under the body limit
        import cv2
        import numpy as np

        img = np.random.default_rng(9).integers(0, 256, (side, side), dtype=np.uint8)
        return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 30])[1].tobytes()

    return {
        "noise_40mp": noise,
        "png_rgba_zeros": hostile.png_rgba_zeros,
        "png16_rgba": hostile.png16_rgba,
        "bmp_rle8_runs": hostile.bmp_rle8_runs,
        "tiff_deflate_rgba16": hostile.tiff_deflate_rgba16,
        "jpeg_progressive_444": hostile.jpeg_progressive_444,
        "photo_40mp": photo,
        "small_png": lambda: hostile.png_rgba_zeros(64),
    }


_CTYPES = {b"\x89P": "image/png", b"BM": "image/bmp", b"II": "image/tiff", b"MM": "image/tiff",
           b"\xff\xd8": "image/jpeg"}
_TASKS = {"pose": "HttpTriggerHumanPose", "handwriting": "HttpTriggerHandwritten",
          "colorization": "HttpTriggerColorization", "detection": "HttpTriggerObjectDetection"}


def _request(task: str, body: bytes, params: Mapping[str, str]):
    import azure.functions as func

    return func.HttpRequest("POST", f"http://localhost/api/{_TASKS[task]}", body=body,
                            headers={"Content-Type": _CTYPES[body[:2]]}, params=dict(params))


def _answer(response) -> Dict[str, Any]:
    out: Dict[str, Any] = {"status": response.status_code}
    if response.status_code >= 400:
        out["code"] = json.loads(response.get_body())["error"]["code"]
        out["retry_after"] = response.headers.get("Retry-After")
    return out


def _child(spec: Dict[str, Any]) -> Dict[str, Any]:
    os.environ.setdefault("HANDWRITTEN_CHARLIST_PATH",
                          _side_file("handwritten-japanese-recognition-0001", "kondate_nakayosi.txt"))
    os.environ.setdefault("OBJECTDETECTION_LABELS_PATH", "")
    from shared import http, serving
    from shared.timings import Timings

    adapters = _adapters()
    serving.get_adapter = lambda settings: adapters[settings.prefix]
    builders = _builders()
    small = builders["small_png"]()
    for task in _TASKS:  # warm-up: lazy imports, side files, first-use buffers
        for params in ({}, {"render": "true"}, {"render": "true", "format": "png"}):
            http.handle(_request(task, small, params), task)

    stages: Dict[str, int] = {}
    base = {"rss": 0}
    if spec.get("stages"):
        original = Timings.stage

        @contextlib.contextmanager
        def stage(self, name):
            _reset_peak()
            with original(self, name):
                yield
            stages[name] = max(stages.get(name, 0), _status("VmHWM") - base["rss"])
            _reset_peak()
        Timings.stage = stage

    report: List[Dict[str, Any]] = []
    import ctypes
    trim = getattr(ctypes.CDLL("libc.so.6"), "malloc_trim", None)
    for round_ in spec["rounds"]:
        bodies = [builders[name]() for name in round_["inputs"]]
        tasks = round_.get("tasks") or [round_["task"]] * len(bodies)
        params = round_.get("params", {})
        requests = [_request(t, b, params) for t, b in zip(tasks, bodies)]
        answers: List[Any] = [None] * len(requests)
        start = threading.Barrier(len(requests) + 1)

        def run(i: int) -> None:
            start.wait()
            answers[i] = _answer(http.handle(requests[i], tasks[i]))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        gc.collect()
        if trim is not None:
            trim(0)  # freed heap back to the kernel: each round's growth starts from what is in use
        stages.clear()
        base["rss"] = _status("VmRSS")
        _reset_peak()
        start.wait()
        for t in threads:
            t.join()
        peak = _status("VmHWM") - base["rss"]
        entry: Dict[str, Any] = {"inputs": round_["inputs"], "tasks": tasks, "answers": answers,
                                 "growth": max([peak] + list(stages.values()))}
        if spec.get("stages"):
            entry["stages"] = dict(stages, answer=peak)
        report.append(entry)
        del bodies, requests
        gc.collect()
    return {"rounds": report}


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
