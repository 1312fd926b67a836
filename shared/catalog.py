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


ENDPOINTS: Tuple[Endpoint, ...] = (
    Endpoint(
        task="pose", task_class="shared.tasks.pose:PoseTask",
        function="HttpTriggerHumanPose", compat_function="humanpose", prefix="HUMANPOSE",
        model_name="human-pose-estimation", omz_model="human-pose-estimation-0001", u8_input=True,
        sample_images=("people1.jpeg", "baseball.jpg", "people2.jpeg", "people3.jpeg", "people4.jpeg")),
    Endpoint(
        task="handwriting", task_class="shared.tasks.handwriting:HandwritingTask",
        function="HttpTriggerHandwritten", compat_function="handwritten", prefix="HANDWRITTEN",
        model_name="handwritten-japanese-recognition", omz_model="handwritten-japanese-recognition-0001",
        sample_images=("handwritten_japanese_test.png", "japanese_handwriting_multiline.jpeg"),
        original_answer=ORIGINAL_JSON, u8_input=True,
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
        side_files=(
            SideFile("COLORIZATION_COEFFICIENTS_PATH", "the 313 ab bin centres (Caffe variant only)",
                     filename="colorization-v2.npy"),
        )),
    Endpoint(
        task="detection", task_class="shared.tasks.detection:DetectionTask",
        function="HttpTriggerObjectDetection", compat_function="objectdetection", prefix="OBJECTDETECTION",
        model_name="object-detection", omz_model="person-detection-retail-0013", u8_input=True,
        sample_images=("people1.jpeg", "people2.jpeg", "people3.jpeg", "people4.jpeg"),
        side_files=(
            SideFile("OBJECTDETECTION_LABELS_PATH", "label names, one per line or JSON {id: name}",
                     filename="{model}.txt", where=LABELS_FOLDER),
        )),
)
# -- end of ENDPOINTS --

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
