"""openapi.yaml: the spec is valid OpenAPI 3.1, names every function, and real answers of the local
stack (model server with generated models + Functions host) validate against it.

The property-based API test (schemathesis) lives in ``test_openapi_fuzz.py``. The helpers here
(``spec()``, ``body_validator()``, ``generated_repo()``, ``four_model_env()``) are shared with the
other operations tests.
"""
from __future__ import annotations

import base64
import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import cv2
import jsonschema
import numpy as np
import pytest
import yaml

from emulators.ovms.launcher import free_port, start_server, write_config
from shared import catalog
from tests import modelgen
from tests.fixtures.functions_host import start_functions_host
from tests.frontend_requests import AXIOS_ACCEPT
from tests.precision import F32
from tests.settings import endpoint_env
from tests.httpclient import request as http_request

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "openapi.yaml"
SPEC_URI = "urn:ovaas:openapi"

POSE, HAND, COLOR, DETECT = ("/api/HttpTriggerHumanPose", "/api/HttpTriggerHandwritten",
                             "/api/HttpTriggerColorization", "/api/HttpTriggerObjectDetection")
ENDPOINTS = (POSE, HAND, COLOR, DETECT)
# served names = the app's default model names (so /api/health sees all four)
SERVED = {e.prefix: e.model_name for e in catalog.ENDPOINTS}
SSD_ROWS = [[0, 1, 0.8, 0.5, 0.5, 0.9, 0.9], [0, 2, 0.6, 0.1, 0.1, 0.3, 0.4]]
HAND_CHARS = [1, 2, 3]  # the generated handwriting model "writes" char-list entries 1, 2, 3


# ---- the spec and validators ------------------------------------------------------------------

@lru_cache(maxsize=1)
def spec() -> Dict[str, Any]:
    """openapi.yaml, parsed."""
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


#: the answer to a method a path does not list (described once, in info.description)
NOT_ALLOWED_POINTER = "/components/responses/MethodNotAllowed"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def listed_methods(path: str) -> Tuple[str, ...]:
    """The methods ``path`` lists as operations (lower-case)."""
    return tuple(m for m in spec()["paths"][path] if m in HTTP_METHODS)


def _response_pointer(path: str, method: str, status: int) -> str:
    """JSON pointer of the response object (following a ``$ref`` to components/responses). A
    method the path does not list has one documented answer, 405 MethodNotAllowed."""
    if method.lower() not in listed_methods(path):
        assert status == 405, f"openapi.yaml: {method.upper()} {path} is not listed, so it must answer 405"
        return NOT_ALLOWED_POINTER
    responses = spec()["paths"][path][method.lower()]["responses"]
    key = str(status)
    assert key in responses, f"openapi.yaml: {method.upper()} {path} does not declare status {status}"
    ref = responses[key].get("$ref")
    if ref:
        return ref[1:]
    return f"/paths/{_escape(path)}/{method.lower()}/responses/{key}"


def _resolve(pointer: str) -> Any:
    node: Any = spec()
    for token in pointer.strip("/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def resolve(node: Any) -> Any:
    """``node``, or what its ``$ref`` (into this document) points at."""
    while isinstance(node, dict) and "$ref" in node:
        node = _resolve(node["$ref"][1:])
    return node


def error_codes() -> Dict[str, Tuple[str, ...]]:
    """The error codes each ``Error*`` schema declares, by schema name."""
    schemas = spec()["components"]["schemas"]
    out = {}
    for name, schema in schemas.items():
        if name.startswith("Error") and not name.endswith("Detail") and "error" in schema.get("properties", {}):
            code = resolve(schema["properties"]["error"])["properties"]["code"]
            out[name] = tuple(code.get("enum", [code.get("const")]))
    return out


def response_content_types(path: str, method: str, status: int) -> Tuple[str, ...]:
    return tuple(_resolve(_response_pointer(path, method, status)).get("content", {}))


def body_validator(path: str, method: str, status: int,
                   content_type: str = "application/json") -> jsonschema.Draft202012Validator:
    """A JSON Schema (2020-12, what OpenAPI 3.1 uses) validator of the declared response body."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    pointer = f"{_response_pointer(path, method, status)}/content/{_escape(content_type)}/schema"
    _resolve(pointer)  # KeyError when the content type is not declared
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec(), DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry,
                                           format_checker=jsonschema.FormatChecker())


def check_answer(path: str, method: str, status: int, ctype: str, body: bytes) -> Any:
    """Assert the answer is declared in the spec (status, content type) and its JSON body validates."""
    media = ctype.split(";")[0].strip().lower()
    declared = response_content_types(path, method, status)
    assert media in declared, f"{method} {path} {status}: content type {media!r} not in {declared}"
    if media != "application/json":
        return body
    data = json.loads(body)
    errors = sorted(body_validator(path, method, status).iter_errors(data), key=str)
    assert not errors, f"{method} {path} {status}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
    return data


# ---- the local stack ------------------------------------------------------------------------------

def generated_repo(root: Path) -> Dict[str, Path]:
    """OVMS repositories of the four generated stand-ins under ``root``, by served name."""
    hand = modelgen.ctc_logits(HAND_CHARS)
    return {
        SERVED["HUMANPOSE"]: modelgen.write_version(root / "pose", 1, modelgen.pose_model),
        SERVED["HANDWRITTEN"]: modelgen.write_version(root / "hand", 1, modelgen.handwriting_model, hand),
        SERVED["COLORIZATION"]: modelgen.write_version(root / "color", 1, modelgen.colorization_model,
                                                        "pytorch"),
        SERVED["OBJECTDETECTION"]: modelgen.write_version(root / "detect", 1, modelgen.ssd_model, SSD_ROWS,
                                                           input_name="data", hw=(320, 544)),
    }


def base_path(version_xml: Path) -> Path:
    """``<base>/1/model.xml`` -> ``<base>``."""
    return Path(version_xml).parent.parent if Path(version_xml).suffix == ".xml" else Path(version_xml)


def server_config(root: Path, models: Dict[str, Path], only: Optional[Tuple[str, ...]] = None) -> Path:
    entries = [{"name": n, "base_path": str(base_path(p)), "plugin_config": F32}
               for n, p in models.items() if only is None or n in only]
    return write_config(root / f"config-{len(entries)}-{abs(hash(only)) % 1000}.json", entries)


def write_charlist(path: Path, n: int = 4441) -> Path:
    """A char list of ``n`` distinct CJK characters (class i = entry i-1)."""
    path.write_text("\n".join(chr(0x4E00 + i) for i in range(n)), encoding="utf-8")
    return path


def broken_env(port: int, charlist: Path) -> Dict[str, str]:
    """``four_model_env`` with settings that fail each way: detection names a model the server does
    not have (503), pose points at a port nothing listens on (503), colorization is given the
    detector (502: wrong model for the task)."""
    return four_model_env(port, charlist, OBJECTDETECTION_MODEL_NAME="no-such-model",
                          HUMANPOSE_PORT=str(free_port()), COLORIZATION_MODEL_NAME=SERVED["OBJECTDETECTION"])


def four_model_env(port: int, charlist: Path, **extra: str) -> Dict[str, str]:
    """Settings pointing all four endpoints at the model server on ``port``."""
    env = {"OVMS_API": "kserve", "HANDWRITTEN_CHARLIST_PATH": str(charlist),
           "OBJECTDETECTION_LABELS_PATH": "", "COLORIZATION_COEFFICIENTS_PATH": ""}
    for prefix, name in SERVED.items():
        env.update(endpoint_env(prefix, port, name))
    env.update(extra)
    return env


def request(url: str, body: Optional[bytes] = None, ctype: Optional[str] = None, method: str = "POST",
            headers: Optional[Dict[str, str]] = None, timeout: float = 60) -> Tuple[int, str, bytes, Dict]:
    """(status, content type, body, headers)."""
    r = http_request(url, body, method=method, content_type=ctype, headers=headers, timeout=timeout)
    return r.status, r.content_type, r.body, dict(r.headers)


def make_image(h: int = 120, w: int = 160, fmt: str = ".jpg") -> bytes:
    rng = np.random.default_rng(7)
    img = np.full((h, w, 3), 235, np.uint8)
    cv2.putText(img, "OVaaS", (5, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (20, 20, 20), 3)
    img = np.clip(img.astype(np.int16) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
    return cv2.imencode(fmt, img)[1].tobytes()


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG signature + IHDR claiming ``width`` x ``height`` (then a tiny, wrong IDAT)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) \
        + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, host_mode):
    """One model server (four generated models), a host pointed at it, and a "broken" host whose
    settings give 503 (unknown model / nothing listening) and 502 (wrong model for the task);
    once per host mode (in-house, Microsoft's worker)."""
    root = tmp_path_factory.mktemp(f"openapi-stack-{host_mode}")
    models = generated_repo(root / "models")
    charlist = write_charlist(root / "chars.txt")
    server = start_server(["--config_path", str(server_config(root, models))], timeout=120)
    broken = broken_env(server.port, charlist)
    started = []
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(start_functions_host, env=env, log_dir=root, timeout=90,
                                   mode=host_mode) for env in (four_model_env(server.port, charlist), broken)]
            for f in futures:
                if f.exception() is None:
                    started.append(f.result())
            for f in futures:
                f.result()  # raise the first start failure
        yield {"server": server, "host": started[0], "broken": started[1]}
    finally:
        for h in started:
            h.stop()
        server.stop()


# ---- the spec itself ------------------------------------------------------------------------------

def test_spec_is_valid_openapi_31():
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError  # noqa: F401

    assert spec()["openapi"].startswith("3.1")
    validate(spec())


def test_spec_documents_every_function_and_status():
    """Every function folder has a path (its route), each model endpoint declares the statuses
    of the README's table and its three request forms, and every error code the app can raise
    is in an error schema."""
    import shared.errors as errors

    routes = set()
    for fj in ROOT.glob("*/function.json"):
        binding = next(b for b in json.loads(fj.read_text())["bindings"] if b["type"] == "httpTrigger")
        routes.add("/api/" + binding.get("route", fj.parent.name))
    assert routes == set(spec()["paths"]), "openapi.yaml paths differ from the functions' routes"
    for path in ENDPOINTS:
        assert listed_methods(path) == ("post",), path
        post = spec()["paths"][path]["post"]
        assert {"200", "400", "413", "415", "500", "502", "503", "504"} <= set(post["responses"])
        assert set(resolve(post["requestBody"])["content"]) == {"application/json", "multipart/form-data",
                                                                "application/octet-stream"}
        assert set(response_content_types(path, "post", 200)) == {"application/json", "image/jpeg", "image/png"}
    declared = {code for codes in error_codes().values() for code in codes}
    raised = {cls.code for cls in vars(errors).values()
              if isinstance(cls, type) and issubclass(cls, errors.OvaasError) and cls.status not in (404, 406)}
    assert raised <= declared, f"error codes missing from openapi.yaml: {raised - declared}"


def test_spec_options_match_the_tasks():
    """Each endpoint's documented query options are what its task parses (plus render/format):
    the default of every documented option is accepted by the task, an out-of-range value is not."""
    from shared.errors import InvalidOption
    from shared.tasks import get_task

    tasks = {POSE: "pose", HAND: "handwriting", COLOR: "colorization", DETECT: "detection"}
    for path, name in tasks.items():
        task = get_task(name)
        params = {p["name"]: p for p in map(resolve, spec()["paths"][path]["post"]["parameters"])}
        options = {k for k in params if k not in ("render", "format")}
        assert options, path
        for opt in options:
            schema = resolve(params[opt]["schema"])
            if "default" in schema:
                task.parse_options({opt: schema["default"]})
            if "maximum" in schema:
                with pytest.raises(InvalidOption):
                    task.parse_options({opt: schema["maximum"] + 1})
            if "enum" in schema:
                for value in schema["enum"]:
                    task.parse_options({opt: value})
                with pytest.raises(InvalidOption):
                    task.parse_options({opt: "not-a-choice"})


def test_every_reference_names_a_whole_component():
    """Generators resolve a ``$ref`` to a component, not into one (``.../properties/x``)."""
    import re

    whole = re.compile(r"^#/components/(schemas|parameters|requestBodies|responses|headers)/[A-Za-z0-9_]+$")

    def refs(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(spec()))
    assert found and [r for r in found if not whole.match(r)] == []
    for ref in found:
        _resolve(ref[1:])  # KeyError when it names no component


def test_query_options_and_body_fields_share_one_schema():
    """Every operation's query parameters come from components/parameters, and each has the very
    schema (one ``$ref``) of the same-named field of its JSON and form bodies: one place per option."""
    for path, item in spec()["paths"].items():
        for method, op in item.items():
            refs = [p["$ref"] for p in op.get("parameters", [])]
            assert all(r.startswith("#/components/parameters/") for r in refs), (path, refs)
            if "requestBody" not in op:
                continue
            for media, content in resolve(op["requestBody"])["content"].items():
                schema = resolve(content["schema"])
                fields: Dict[str, Any] = dict(schema.get("properties", {}))
                for part in schema.get("allOf", []):
                    fields.update(resolve(part).get("properties", {}))
                for param in map(resolve, op.get("parameters", [])):
                    if media != "application/octet-stream":
                        assert fields[param["name"]] == param["schema"], (path, media, param["name"])


def test_validator_rejects_a_drifted_answer():
    """The schemas are strict enough to catch drift: a missing or an extra field fails."""
    good = {"detections": [{"label": "1", "label_id": 1, "confidence": 0.5, "points": [0, 0, 1, 1],
                            "type": "rectangle"}],
            "model": {"name": "m", "version": "1"}, "image": {"width": 2, "height": 2},
            "timing_ms": {"decode": 1, "preprocess": 1, "inference": 1, "postprocess": 1, "total": 4}}
    v = body_validator(DETECT, "post", 200)
    assert v.is_valid(good)
    assert not v.is_valid({k: x for k, x in good.items() if k != "timing_ms"})
    assert not v.is_valid({**good, "extra": 1})
    assert not v.is_valid({**good, "detections": [{**good["detections"][0], "points": [0, 0, 1]}]})
    assert not body_validator(DETECT, "post", 400).is_valid({"error": {"code": "model_timeout", "message": "x"}})


# ---- real answers against the spec ------------------------------------------------------------

def _multipart(image: bytes, fields: Dict[str, str]) -> Tuple[bytes, str]:
    boundary = "----ovaas-openapi-test"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
                 f"Content-Type: image/jpeg\r\n\r\n".encode() + image + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


OPTIONS = {POSE: {"threshold": "0.2"}, HAND: {"lines": "single", "top_k": "5"},
           COLOR: {"compare": "true", "output_format": "png"}, DETECT: {"threshold": "0.3", "max_detections": "5"}}


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("form", ["json", "multipart", "raw", "octet"])
def test_success_answers_validate(stack, path, form):
    host = stack["host"]
    image = make_image()
    opts = OPTIONS[path]
    query = ""
    if form == "json":
        body = json.dumps({"image": base64.b64encode(image).decode(),
                           **{k: (json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v)
                              for k, v in opts.items()}}).encode()
        ctype = "application/json"
    elif form == "multipart":
        body, ctype = _multipart(image, opts)
    else:
        body, ctype = image, ("image/jpeg" if form == "raw" else "application/octet-stream")
        query = "?" + "&".join(f"{k}={v}" for k, v in opts.items())
    status, rtype, data, headers = request(host.url(path + query), body, ctype)
    assert status == 200, data[:300]
    answer = check_answer(path, "post", 200, rtype, data)
    assert headers.get("x-invocation-id")
    assert answer["image"] == {"width": 160, "height": 120}
    if path == DETECT:
        assert [d["label_id"] for d in answer["detections"]] == [1, 2]
    if path == HAND:
        assert answer["text"] == "".join(chr(0x4E00 + i - 1) for i in HAND_CHARS)
    if path == COLOR:
        assert answer["colorized"]["mime_type"] == "image/png" and "comparison" in answer


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("how,expected", [("render=true", "image/jpeg"), ("render=true&format=png", "image/png"),
                                          ("accept:image/png", "image/png")])
def test_picture_answers_are_declared(stack, path, how, expected):
    url, headers = stack["host"].url(path), {}
    if how.startswith("accept:"):
        headers["Accept"] = how.split(":", 1)[1]
    else:
        url += "?" + how
    status, rtype, data, _ = request(url, make_image(), "image/jpeg", headers=headers)
    assert status == 200, data[:300]
    assert rtype.split(";")[0] == expected
    check_answer(path, "post", 200, rtype, data)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def _error_cases():
    big = png_header_claiming(60000, 60000)
    return [
        ("invalid_base64", 400, json.dumps({"image": "!!!not base64!!!"}).encode(), "application/json", "POST"),
        ("invalid_json", 400, b"{not json", "application/json", "POST"),
        ("missing_image", 400, b"", "image/jpeg", "POST"),
        ("invalid_option", 400, json.dumps({"image": base64.b64encode(make_image()).decode(),
                                            "render": "maybe"}).encode(), "application/json", "POST"),
        ("method_not_allowed", 405, None, None, "GET"),
        ("image_too_large", 413, big, "image/png", "POST"),
        ("invalid_image", 415, make_image()[:200], "image/jpeg", "POST"),
        ("unsupported_media_type", 415, b"hello", "text/plain", "POST"),
    ]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("code,status,body,ctype,method", _error_cases(), ids=[c[0] for c in _error_cases()])
def test_client_error_answers_validate(stack, path, code, status, body, ctype, method):
    got, rtype, data, headers = request(stack["host"].url(path), body, ctype, method=method)
    assert got == status, data[:300]
    answer = check_answer(path, method.lower(), status, rtype, data)
    assert answer["error"]["code"] == code
    if status == 405:
        assert headers.get("Allow") == "POST"


@pytest.mark.parametrize("path,status,code", [(DETECT, 503, "model_not_found"), (POSE, 503, "model_unavailable"),
                                              (COLOR, 502, "bad_model_output")])
def test_server_error_answers_validate(stack, path, status, code):
    got, rtype, data, headers = request(stack["broken"].url(path), make_image(), "image/jpeg")
    assert got == status, data[:300]
    assert check_answer(path, "post", status, rtype, data)["error"]["code"] == code
    if status == 503:
        assert headers.get("Retry-After", "").isdigit()


# ---- the original OVaaS routes and CVAT's --------------------------------------------------------

ORIGINAL = {f"/api/{e.function}": f"/api/{e.compat_function}" for e in catalog.ENDPOINTS}
AXIOS = {"Accept": AXIOS_ACCEPT}


@pytest.mark.parametrize("own", ENDPOINTS)
def test_original_answers_validate(stack, own):
    """The frontend's request gets the original answer; the JSON opt-ins get the app's JSON; both
    are declared."""
    path = ORIGINAL[own]
    body, ctype = _multipart(make_image(), {})
    status, rtype, data, headers = request(stack["host"].url(path), body, ctype, headers=AXIOS)
    assert status == 200, data[:300]
    answer = check_answer(path, "post", 200, rtype, data)
    assert headers.get("x-invocation-id")
    if own == HAND:
        assert set(answer) == {"count", "timecost", "text"} and answer["count"] == len(answer["text"]) > 0
    else:
        assert rtype.split(";")[0] == "image/jpeg"
    for how in ({"url": "?format=json", "headers": AXIOS}, {"url": "", "headers": {"Accept": "application/json"}}):
        if own == HAND and not how["url"]:
            continue  # handwriting's original answer is JSON already: only format=json opts in
        status, rtype, data, _ = request(stack["host"].url(path + how["url"]), body, ctype, headers=how["headers"])
        assert status == 200 and rtype.split(";")[0] == "application/json", data[:300]
        assert {"model", "image", "timing_ms"} <= set(check_answer(path, "post", 200, rtype, data))


@pytest.mark.parametrize("own,status,code", [(DETECT, 500, "model_not_found"), (POSE, 500, "model_unavailable"),
                                             (COLOR, 500, "bad_model_output")])
def test_original_server_errors_validate(stack, own, status, code):
    got, rtype, data, _ = request(stack["broken"].url(ORIGINAL[own]), make_image(), "image/jpeg", headers=AXIOS)
    assert got == status, data[:300]
    assert check_answer(ORIGINAL[own], "post", status, rtype, data)["error"]["code"] == code


def test_cvat_answers_validate(stack):
    path = "/api/cvat/detector"
    body = json.dumps({"image": base64.b64encode(make_image()).decode(), "threshold": 0.3}).encode()
    status, rtype, data, _ = request(stack["host"].url(path), body, "application/json")
    assert status == 200, data[:300]
    shapes = check_answer(path, "post", 200, rtype, data)
    assert [s["label"] for s in shapes] == ["1", "2"]  # the generated detector's label ids (no labels file)
    for body, want in ((b'{"image": "!!"}', 400), (json.dumps({"image": "aGVsbG8="}).encode(), 415)):
        status, rtype, data, _ = request(stack["host"].url(path), body, "application/json")
        assert status == want
        check_answer(path, "post", status, rtype, data)
    status, rtype, data, _ = request(stack["broken"].url(path), json.dumps(
        {"image": base64.b64encode(make_image()).decode()}).encode(), "application/json")
    assert status == 503
    assert check_answer(path, "post", 503, rtype, data)["error"]["code"] == "model_not_found"


def test_health_answers_validate(stack):
    status, rtype, data, _ = request(stack["host"].url("/api/health"), method="GET")
    assert status == 200, data[:500]
    assert check_answer("/api/health", "get", 200, rtype, data)["status"] == "ok"
    status, rtype, data, headers = request(stack["broken"].url("/api/health"), method="GET")
    assert status == 503, data[:500]
    body = check_answer("/api/health", "get", 503, rtype, data)
    assert body["status"] == "degraded" and not body["models"]["HttpTriggerObjectDetection"]["ready"]
    status, rtype, data, _ = request(stack["host"].url("/api/health"), b"", "application/json", method="POST")
    assert status == 405
    check_answer("/api/health", "post", 405, rtype, data)
