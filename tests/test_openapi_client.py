"""Clients generated from openapi.yaml call every operation of the local stack.

openapi-python-client (the version pinned in requirements-dev.txt) generates a typed client once
for this module, as the README tells API users to; the tests import it and call each operation
through its generated functions against the model server (generated models) and the local
Functions host: the answers come back as the generator's typed models, errors included. The
generator must accept the whole description (nothing skipped, no warning), and every route the app
serves must have exactly one generated operation per method it accepts (the methods it refuses
answer the one documented 405). The web team's TypeScript client (openapi-typescript's types,
openapi-fetch) is type-checked and called too.
"""
from __future__ import annotations

import base64
import io
import json
import sys
from http import HTTPStatus
from typing import Any, Dict, Iterator, Set, Tuple

import pytest

from emulators.ovms.launcher import start_server
from shared import catalog
from tests.fixtures.functions_host import start_functions_host
from tests.httpclient import request as http_request
from tests.openapi_client import (GeneratedClient, function_routes, generate_python_client, run_typescript_calls,
                                  snake_case, typescript_client)
from tests.test_openapi import (HAND_CHARS, SPEC_PATH, body_validator, check_answer, four_model_env,
                                generated_repo, listed_methods, make_image, server_config, spec,
                                write_charlist)

#: (operation id, path) of every operation openapi.yaml describes
SPEC_OPERATIONS = {(op["operationId"], method.upper(), path)
                   for path, item in spec()["paths"].items() for method, op in item.items()
                   if method in ("get", "put", "post", "delete", "head", "patch")}
MODEL_OPERATIONS = ("humanPose", "handwritten", "colorization", "objectDetection", "humanPoseOriginal",
                    "handwrittenOriginal", "colorizationOriginal", "objectDetectionOriginal", "cvatDetector")
HAND_TEXT = "".join(chr(0x4E00 + i - 1) for i in HAND_CHARS)  # what the generated model "writes"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Iterator[GeneratedClient]:
    """The client, generated once into a temporary folder and importable while the module runs."""
    out = tmp_path_factory.mktemp("generated-client")
    client = generate_python_client(SPEC_PATH, out)
    sys.path.insert(0, str(out))
    try:
        yield client
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == client.name or m.startswith(client.name + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """One model server (the four generated models) and one Functions host pointed at it."""
    root = tmp_path_factory.mktemp("openapi-client-stack")
    server = start_server(["--config_path", str(server_config(root, generated_repo(root / "models")))],
                          timeout=120)
    try:
        handle = start_functions_host(env=four_model_env(server.port, write_charlist(root / "chars.txt")),
                                      log_dir=root, timeout=90)
        try:
            yield handle
        finally:
            handle.stop()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(generated, host):
    """The generated ``Client`` for the running host."""
    with generated.connect(host.url("/")) as client:
        yield client


def _typed(generated: GeneratedClient, response: Any, path: str, model: str) -> Any:
    """The parsed answer, after checking it is the generator's ``model`` and what the spec declares."""
    assert response.parsed is not None, f"{path}: the generated client did not parse {response.content[:200]!r}"
    assert isinstance(response.parsed, generated.model(model)), (path, type(response.parsed))
    check_answer(path, "post", int(response.status_code), response.headers.get("content-type", ""), response.content)
    return response.parsed


def _jpeg(generated: GeneratedClient) -> Any:
    return generated.types().File(payload=io.BytesIO(make_image()), file_name="a.jpg", mime_type="image/jpeg")


def _b64() -> str:
    return base64.b64encode(make_image()).decode()


# ---- the generator accepts the whole description ---------------------------------------------

def test_generator_accepts_every_operation(generated):
    """No operation skipped, no warning at all, and one generated function per described operation
    (the same operation ids: the module names are the generator's snake case of them)."""
    assert generated.skipped() == [], "\n".join(generated.skipped())
    assert not generated.warned(), generated.output
    ops = generated.operations()
    assert ops == {snake_case(op_id): (method, path) for op_id, method, path in SPEC_OPERATIONS}
    assert {snake_case(op_id) for op_id in MODEL_OPERATIONS} | {"health"} <= set(ops)
    assert len(MODEL_OPERATIONS) == 9 and all(m == "POST" for op_id in MODEL_OPERATIONS
                                               for m, _ in [ops[snake_case(op_id)]])


def test_every_served_route_has_one_operation_per_accepted_method(generated, host):
    """Each route the app serves (the catalog's eight, CVAT's, health) has exactly one generated
    operation per method its code accepts; every method it refuses answers the documented 405 with
    an ``Allow`` naming the methods the description lists."""
    routes = function_routes()
    catalog_routes = {f"/api/{e.function}" for e in catalog.ENDPOINTS} | \
                     {f"/api/{e.compat_function}" for e in catalog.ENDPOINTS}
    assert catalog_routes <= set(routes), catalog_routes - set(routes)
    generated_ops: Dict[Tuple[str, str], int] = {}
    for method, path in generated.operations().values():
        generated_ops[(method, path)] = generated_ops.get((method, path), 0) + 1
    for path, methods in routes.items():
        accepted: Set[str] = set()
        for method in methods:
            answer = http_request(host.url(path), b"", method=method, content_type="application/json")
            if answer.status != 405:
                accepted.add(method)
                continue
            assert set(answer.headers.get("Allow", "").replace(" ", "").split(",")) == \
                {m.upper() for m in listed_methods(path)}, (method, path)
            body_validator(path, method, 405).validate(json.loads(answer.body))
        assert accepted, f"{path}: no method accepted"
        assert {m: generated_ops.get((m, path), 0) for m in accepted} == {m: 1 for m in accepted}, path
        assert {m for (m, p) in generated_ops if p == path} == accepted, path
    assert {path for _, path in generated_ops} == set(routes)


# ---- every model operation through the generated functions ------------------------------------

def test_pose_raw_jpeg(generated, api):
    answer = generated.api("human_pose").sync_detailed(client=api, body=_jpeg(generated), threshold=0.2)
    assert answer.status_code == HTTPStatus.OK, answer.content[:300]
    pose = _typed(generated, answer, "/api/HttpTriggerHumanPose", "PoseAnswer")
    assert isinstance(pose.people, list) and (pose.image.width, pose.image.height) == (160, 120)
    assert pose.model.name == catalog.by_task("pose").model_name


def test_pose_json_base64(generated, api):
    body = generated.model("PoseJsonRequest")(image=_b64(), threshold=0.2)
    answer = generated.api("human_pose").sync_detailed(client=api, body=body)
    assert answer.status_code == HTTPStatus.OK, answer.content[:300]
    pose = _typed(generated, answer, "/api/HttpTriggerHumanPose", "PoseAnswer")
    assert (pose.image.width, pose.image.height) == (160, 120) and pose.timing_ms.total > 0


def test_detection_raw_jpeg(generated, api):
    answer = generated.api("object_detection").sync_detailed(client=api, body=_jpeg(generated), threshold=0.3)
    assert answer.status_code == HTTPStatus.OK, answer.content[:300]
    found = _typed(generated, answer, "/api/HttpTriggerObjectDetection", "DetectionAnswer")
    assert [d.label_id for d in found.detections] == [1, 2]  # the generated detector's two boxes
    assert all(len(d.points) == 4 for d in found.detections)


def test_detection_json_base64(generated, api):
    body = generated.model("DetectionJsonRequest")(image=_b64(), threshold=0.3, max_detections=1)
    answer = generated.api("object_detection").sync_detailed(client=api, body=body)
    assert answer.status_code == HTTPStatus.OK, answer.content[:300]
    found = _typed(generated, answer, "/api/HttpTriggerObjectDetection", "DetectionAnswer")
    assert [d.label_id for d in found.detections] == [1]


def test_handwriting_form(generated, api):
    form = generated.model("HandwritingFormRequest")(image=_jpeg(generated),
                                                     lines=generated.model("Lines").SINGLE, top_k=5)
    answer = generated.api("handwritten").sync_detailed(client=api, body=form)
    assert answer.status_code == HTTPStatus.OK, answer.content[:300]
    text = _typed(generated, answer, "/api/HttpTriggerHandwritten", "HandwritingAnswer")
    assert text.text == HAND_TEXT and [c.char for c in text.characters] == list(HAND_TEXT)


def test_colorization_json_base64(generated, api):
    body = generated.model("ColorizationJsonRequest")(image=_b64(), compare=True,
                                                      output_format=generated.model("OutputFormat").PNG)
    answer = generated.api("colorization").sync_detailed(client=api, body=body)
    assert answer.status_code == HTTPStatus.OK, answer.content[:300]
    color = _typed(generated, answer, "/api/HttpTriggerColorization", "ColorizationAnswer")
    assert color.colorized.mime_type.value == "image/png" and base64.b64decode(color.colorized.data)
    assert (color.colorized.width, color.colorized.height) == (160, 120)
    assert isinstance(color.comparison, generated.model("EncodedImage")) and color.comparison.width > 160


@pytest.mark.parametrize("operation,path,model", [
    ("human_pose_original", "/api/humanpose", "PoseAnswer"),
    ("handwritten_original", "/api/handwritten", "HandwritingAnswer"),
    ("colorization_original", "/api/colorization", "ColorizationAnswer"),
    ("object_detection_original", "/api/objectdetection", "DetectionAnswer"),
])
def test_original_routes_json(generated, api, operation, path, model):
    """The original routes answer the picture by default (a generated client types the JSON answer
    of a status only): ``format=json`` opts into this app's JSON, typed."""
    answer = generated.api(operation).sync_detailed(client=api, body=_jpeg(generated),
                                                    format_=generated.model("OriginalFormat").JSON)
    assert answer.status_code == HTTPStatus.OK, answer.content[:300]
    result = _typed(generated, answer, path, model)
    assert (result.image.width, result.image.height) == (160, 120)


def test_original_handwriting_answer(generated, api):
    """/api/handwritten's original answer is JSON: the generator types it as the original model."""
    body = generated.model("HandwritingOriginalJsonRequest")(image=_b64())
    answer = generated.api("handwritten_original").sync_detailed(client=api, body=body)
    assert answer.status_code == HTTPStatus.OK, answer.content[:300]
    original = _typed(generated, answer, "/api/handwritten", "OriginalHandwritingAnswer")
    assert original.text == HAND_TEXT and original.count == len(HAND_TEXT) and original.timecost >= 0


def test_cvat_detector(generated, api):
    body = generated.model("CvatRequest")(image=_b64(), threshold=0.3)
    answer = generated.api("cvat_detector").sync_detailed(client=api, body=body)
    assert answer.status_code == HTTPStatus.OK, answer.content[:300]
    assert answer.parsed is not None
    check_answer("/api/cvat/detector", "post", 200, answer.headers["content-type"], answer.content)
    shape = generated.model("CvatShape")
    assert [s.label for s in answer.parsed] == ["1", "2"] and all(isinstance(s, shape) for s in answer.parsed)


def test_health(generated, api):
    answer = generated.api("health").sync_detailed(client=api)
    assert answer.status_code == HTTPStatus.OK, answer.content[:300]
    health = answer.parsed
    assert isinstance(health, generated.model("Health")) and health.status.value == "ok"
    assert set(health.models.additional_properties) == {e.function for e in catalog.ENDPOINTS}
    assert all(m.ready for m in health.models.additional_properties.values())
    head = generated.api("health_head").sync_detailed(client=api)
    assert head.status_code == HTTPStatus.OK and head.content == b""


# ---- errors come back as the generated error models ----------------------------------------------

def test_error_model_parses_400(generated, api):
    body = generated.model("PoseJsonRequest")(image="!!! not base64 !!!")
    answer = generated.api("human_pose").sync_detailed(client=api, body=body)
    assert answer.status_code == HTTPStatus.BAD_REQUEST
    error = _typed(generated, answer, "/api/HttpTriggerHumanPose", "Error400")
    assert error.error.code == generated.model("Error400DetailCode").INVALID_BASE64 and error.error.message


def test_error_model_parses_415(generated, api):
    broken = generated.types().File(payload=io.BytesIO(make_image()[:200]), mime_type="image/jpeg")
    answer = generated.api("object_detection").sync_detailed(client=api, body=broken)
    assert answer.status_code == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    error = _typed(generated, answer, "/api/HttpTriggerObjectDetection", "Error415")
    assert error.error.code == generated.model("Error415DetailCode").INVALID_IMAGE and error.error.message
    cvat = generated.api("cvat_detector").sync_detailed(
        client=api, body=generated.model("CvatRequest")(image=base64.b64encode(b"hello").decode()))
    assert cvat.status_code == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    assert isinstance(cvat.parsed, generated.model("Error415"))


# ---- the web team's client: openapi-typescript's types, openapi-fetch ---------------------------

def test_typescript_client(host, tmp_path):
    """openapi-typescript (node_modules, package.json) turns the description into types without a
    warning; a web client using them with openapi-fetch type-checks under ``tsc --strict`` and its
    calls answer what the types say: JSON (base64 and raw JPEG), a picture, a 400, health."""
    generated, script = typescript_client(SPEC_PATH, tmp_path / "ts")
    assert "openapi-typescript" in generated and not any(w in generated.lower() for w in ("warn", "⚠", "error"))
    image = tmp_path / "a.jpg"
    image.write_bytes(make_image())
    out = run_typescript_calls(script, host.url("/"), image)
    assert out["poseJson"] == {"status": 200, "people": out["poseJson"]["people"], "width": 160,
                               "model": catalog.by_task("pose").model_name}
    assert isinstance(out["poseJson"]["people"], int)
    assert out["poseRaw"] == {"status": 200, "height": 120}
    assert out["detectionRaw"] == {"status": 200, "labelIds": [1, 2]}
    assert out["picture"] == {"status": 200, "type": "image/png", "magic": "PNG"}
    assert out["error400"] == {"status": 400, "code": "invalid_base64"}
    assert out["health"] == {"status": 200, "state": "ok", "models": sorted(e.function for e in catalog.ENDPOINTS)}
