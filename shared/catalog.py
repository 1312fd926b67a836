"""The endpoint catalog: every fact about each endpoint, in one place.

One record per endpoint holds its task (the pipeline in ``shared/tasks``), its function folder and
the original OVaaS route name, its settings prefix, the model name OVMS serves it under, the Open
Model Zoo model the local stack serves, and its side files with their settings and defaults.
The task registry, the settings defaults, health, the local stack, the benchmarks and the tests all
read this file; nothing else lists the endpoints.

Adding an endpoint is one task module, one function folder and one entry here (README: "Add your
own model").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

#: where the stack keeps side files: beside the model in the model search path, or in models/labels
BESIDE_MODEL = "model"
LABELS_FOLDER = "labels"

#: what the original OVaaS backend answered on an endpoint's compatibility route (/api/<compat_function>):
#: the rendered picture as a JPEG, or the result's ``to_original_dict()`` as JSON
ORIGINAL_PICTURE = "picture"
ORIGINAL_JSON = "json"


@dataclass(frozen=True)
class SideFile:
    """A file a task reads besides the model (char list, coefficients, labels, font).

    ``setting`` names its location (a local path or ``az://container/path``); ``default`` is used
    when the setting is absent. ``filename`` is what the local stack uploads beside the model
    (``{model}`` stands for the Open Model Zoo model name), found ``where`` says; None when the
    stack has nothing to upload.
    """

    setting: str
    description: str
    default: Optional[str] = None
    filename: Optional[str] = None
    where: str = BESIDE_MODEL


@dataclass(frozen=True)
class MemoryCost:
    """An endpoint's worst-case peak memory for one request, ``a_mb + b_mb_per_mp x megapixels``
    (MiB; a megapixel is 10^6 pixels), over the worker's memory when the request's body has
    arrived: the most its whole work holds at once (decode, preprocess, model call, postprocess,
    render, encode, the answer's bytes), for the worst picture inside the limits and the worst
    answer form. Measured by tests/test_memory_budget.py (``tests.memory_probe``, fresh child
    processes) and bench/bench_hostile.py, with a margin; the budget reserves it per request."""

    a_mb: float
    b_mb_per_mp: float

    def peak_bytes(self, pixels: int) -> int:
        """The reservation of a request for a picture of ``pixels`` pixels (bytes)."""
        return int((self.a_mb + self.b_mb_per_mp * pixels / 1e6) * (1 << 20))


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the app."""

    task: str  # task name, e.g. "pose"
    task_class: str  # "module:Class" of its Task
    function: str  # function folder, e.g. "HttpTriggerHumanPose" (route /api/<function>)
    compat_function: str  # the original OVaaS function name the web frontend calls (/api/<name>)
    prefix: str  # settings prefix: <PREFIX>_IPADDRESS, _PORT, _MODEL_NAME, ...
    model_name: str  # default name the model is served under
    omz_model: str  # Open Model Zoo model the local stack serves
    sample_images: Tuple[str, ...]  # pictures in ../shared/images that show it, the typical one first (benches)
    side_files: Tuple[SideFile, ...] = ()
    omz_precision: Optional[str] = "FP16"  # precision folder DownloadModel fetches (None: the only one)
    #: the task feeds whole 8-bit levels, so its model may take u8 (upload --u8-input): identical
    #: answers, a quarter of the bytes per request; the stack serves it so
    u8_input: bool = False
    original_answer: str = ORIGINAL_PICTURE  # what /api/<compat_function> answers by default
    original_options: Tuple[Tuple[str, str], ...] = ()  # option defaults of that answer
    #: worst-case peak memory of one request (README "Limits"; the budget reserves it); a task
    #: added without measuring gets the largest of the measured ones
    memory: MemoryCost = MemoryCost(32.0, 9.0)


ENDPOINTS: Tuple[Endpoint, ...] = (
    Endpoint(
        task="pose", task_class="shared.tasks.pose:PoseTask",
        function="HttpTriggerHumanPose", compat_function="humanpose", prefix="HUMANPOSE",
        model_name="human-pose-estimation", omz_model="human-pose-estimation-0001", u8_input=True,
        sample_images=("people1.jpeg", "baseball.jpg", "people2.jpeg", "people3.jpeg", "people4.jpeg"),
        # decode 8.6 MiB/MP (progressive JPEG), render 7.3 (limbs layer), heatmap decoding ~30 MiB
        memory=MemoryCost(a_mb=32.0, b_mb_per_mp=9.0)),
    Endpoint(
        task="handwriting", task_class="shared.tasks.handwriting:HandwritingTask",
        function="HttpTriggerHandwritten", compat_function="handwritten", prefix="HANDWRITTEN",
        model_name="handwritten-japanese-recognition", omz_model="handwritten-japanese-recognition-0001",
        sample_images=("handwritten_japanese_test.png", "japanese_handwriting_multiline.jpeg"),
        original_answer=ORIGINAL_JSON, u8_input=True,
        # decode 8.6 MiB/MP (progressive JPEG), render 6.8 (picture + text panel), font ~20 MiB
        memory=MemoryCost(a_mb=32.0, b_mb_per_mp=9.0),
        side_files=(
            SideFile("HANDWRITTEN_CHARLIST_PATH", "the model's character list (one class per character)",
                     default="az://ovms/handwritten-japanese-recognition/kondate_nakayosi.txt",
                     filename="kondate_nakayosi.txt"),
            SideFile("HANDWRITTEN_FONT_PATH", "a font with Japanese glyphs for the rendered text "
                     "(default: Noto Sans JP from the pylopdf-fonts-cjk package)"),
        )),
    Endpoint(
        task="colorization", task_class="shared.tasks.colorization:ColorizationTask",
        function="HttpTriggerColorization", compat_function="colorization", prefix="COLORIZATION",
        model_name="colorization", omz_model="colorization-v2", sample_images=("ansel_adams2.jpg", "ansel_adams3.jpg"),
        omz_precision=None,  # a public model: converted, not published per precision
        original_options=(("compare", "true"),),  # the original answered both pictures side by side
        # decode 8.6 MiB/MP (progressive JPEG); colorized over the picture in bands; a JSON answer
        # with the PNG of a noisy 40 MP picture peaks at 337-372 MiB while encoding (the picture
        # and OpenCV's growing PNG buffer; its base64 is made once the picture is let go of)
        memory=MemoryCost(a_mb=40.0, b_mb_per_mp=9.0),
        side_files=(
            SideFile("COLORIZATION_COEFFICIENTS_PATH", "the 313 ab bin centres (Caffe variant only)",
                     filename="colorization-v2.npy"),
        )),
    Endpoint(
        task="detection", task_class="shared.tasks.detection:DetectionTask",
        function="HttpTriggerObjectDetection", compat_function="objectdetection", prefix="OBJECTDETECTION",
        model_name="object-detection", omz_model="person-detection-retail-0013", u8_input=True,
        sample_images=("people1.jpeg", "people2.jpeg", "people3.jpeg", "people4.jpeg"),
        # decode 8.6 MiB/MP (progressive JPEG), preprocess 8.2 (float rows of the resize)
        memory=MemoryCost(a_mb=24.0, b_mb_per_mp=9.0),
        side_files=(
            SideFile("OBJECTDETECTION_LABELS_PATH", "label names, one per line or JSON {id: name}",
                     filename="{model}.txt", where=LABELS_FOLDER),
        )),
)
# -- end of ENDPOINTS --

#: The app's resting size on an instance (MiB): the Python worker with every module imported and
#: each endpoint warmed up (140 MiB measured, tests.memory_probe) and the Functions host beside it
#: (an allowance of about 200 MiB: the .NET host cannot run here). The default memory budget is
#: the instance's memory less this (``shared.config.memory_budget_bytes``).
APP_RESTING_MB = 350


def largest_peak_bytes(pixels: int) -> int:
    """The largest reservation any endpoint makes for a picture of ``pixels`` pixels (bytes)."""
    return max(endpoint.memory.peak_bytes(pixels) for endpoint in ENDPOINTS)


def required_instance_mb(concurrency: int, max_pixels: int, max_body_bytes: int = 0) -> float:
    """Instance memory (MiB) that fits ``concurrency`` requests at once at the limits: resting
    size + concurrency x (the largest per-request peak + the request body), README "Limits"."""
    per_request = largest_peak_bytes(max_pixels) + max_body_bytes
    return APP_RESTING_MB + concurrency * per_request / (1 << 20)


def _find(**fields: str) -> Optional[Endpoint]:
    for endpoint in ENDPOINTS:  # a handful of entries: a scan is cheaper than keeping indexes in step
        if any(getattr(endpoint, k) == v for k, v in fields.items()):
            return endpoint
    return None


def by_task(task: str) -> Endpoint:
    """The endpoint whose task is ``task`` (KeyError if none)."""
    endpoint = _find(task=task)
    if endpoint is None:
        raise KeyError(task)
    return endpoint


def by_name(name: str) -> Optional[Endpoint]:
    """The endpoint called ``name`` by its task, its function folder or its original OVaaS name."""
    return _find(task=name, function=name, compat_function=name)


def by_prefix(prefix: str) -> Optional[Endpoint]:
    """The endpoint with settings prefix ``prefix``, or None."""
    return _find(prefix=prefix.upper())


def by_function(name: str) -> Endpoint:
    """The endpoint served by function ``name`` (its folder, or its original OVaaS name)."""
    endpoint = _find(function=name, compat_function=name)
    if endpoint is None:
        raise KeyError(name)
    return endpoint


def side_file(setting: str) -> Optional[SideFile]:
    """The side file any endpoint reads from ``setting``, or None."""
    for endpoint in ENDPOINTS:
        for side in endpoint.side_files:
            if side.setting == setting:
                return side
    return None
