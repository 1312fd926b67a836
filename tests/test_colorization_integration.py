"""Colorization through the local model server (gRPC) and over HTTP through the Functions host.

Generated models (tests/modelgen/colorization_models.py) give known answers, so the colours the
endpoint returns are checked against the independent CIE maths of tests/test_colorization.py.
The placeholder-weight colorization-v2 from ../shared (real Caffe topology) is served too and
checked against an in-process OpenVINO run of the same file.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
import pytest

from emulators.ovms.launcher import start_server, write_config
from scripts.tooling.modelsearch import find_model, find_side_file, model_xml
from shared import config, resources, serving
from shared.tasks import colorization as col
from shared.timings import Timings
from tests.fixtures.functions_host import start_functions_host
from tests.httpclient import request
from tests.modelgen import colorization_models as gen
from tests.precision import F32, compile_f32
from tests.settings import endpoint_env
from tests.test_colorization import assert_close_colors, cie_l_of_gray, expected_colors

pytestmark = pytest.mark.slow

#: f32 inference everywhere (CPUs whose default is bf16 would blur the exact answers)
A0, B0, A_SLOPE = 12.0, 35.0, 0.4  # generated PyTorch variant: a = 0.4 (L - 50) + 12, b = 35
K_LEFT, K_MIX = (57, 250), (0.3, 0.7)  # generated Caffe variant: left half bin 57, right a mix


def caffe_probabilities() -> np.ndarray:
    probs = np.zeros((1, 313, 56, 56), np.float32)
    probs[0, K_LEFT[0], :, :28] = 1.0
    probs[0, K_LEFT[1], :, 28:] = K_MIX[0]
    probs[0, 10, :, 28:] = K_MIX[1]
    return probs


@pytest.fixture(scope="module")
def coefficients_path(tmp_path_factory) -> Path:
    found = find_side_file("colorization-v2", "colorization-v2.npy")
    if found is not None:
        return found
    path = tmp_path_factory.mktemp("coeffs") / "colorization-v2.npy"  # any 313x2 will do
    np.save(path, np.random.default_rng(0).uniform(-100, 100, (313, 2)))
    return path


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("colorization-models")
    models = [
        {"name": "color-pytorch", "base_path": str(gen.write(gen.pytorch_variant(A0, B0, A_SLOPE), root,
                                                             "color-pytorch")),
         "plugin_config": F32},
        {"name": "color-caffe", "base_path": str(gen.write(gen.caffe_variant(caffe_probabilities()), root,
                                                           "color-caffe")),
         "plugin_config": F32},
    ]
    synthetic = find_model("colorization-v2")
    if synthetic is not None:
        models.append({"name": "colorization", "base_path": str(synthetic), "plugin_config": F32})
    cfg = write_config(root / "config.json", models)
    server = start_server(["--config_path", str(cfg)], timeout=120)
    try:
        yield server
    finally:
        server.stop()


def settings_env(server, model: str, coeffs: Optional[Path] = None) -> Dict[str, str]:
    env = endpoint_env("COLORIZATION", server.port, model)
    if coeffs is not None:
        env[col.COEFFICIENTS_SETTING] = str(coeffs)
    return env


def gray_picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth grey picture (low-frequency, so JPEG-free PNG checks stay exact)."""
    yy, xx = np.mgrid[0:h, 0:w]
    values = (127.5 + 120 * np.sin(xx / 17.0 + seed) * np.cos(yy / 23.0)).round().astype(np.uint8)
    return cv2.cvtColor(values, cv2.COLOR_GRAY2BGR)


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def post(url: str, body: bytes, content_type: str = "image/png",
         headers: Optional[Dict[str, str]] = None, method: str = "POST") -> Tuple[int, str, bytes]:
    return request(url, body, method=method, content_type=content_type, headers=headers)[:3]


# ---- the task through the model server (in-process adapter, gRPC) -----------------------------

@pytest.mark.parametrize("api", ["kserve", "tfs"])
def test_pytorch_variant_through_the_model_server(model_server, api):
    env = settings_env(model_server, "color-pytorch")
    env["OVMS_API"] = api
    adapter = serving.get_adapter(config.model_settings("COLORIZATION", env))
    task = col.ColorizationTask()
    image = gray_picture(256, 256)  # the model's size: L reaches the server unresized
    result = task.run(image, adapter, task.parse_options({}), Timings())
    lightness = cie_l_of_gray(image[:, :, 0])
    ab = np.stack([A_SLOPE * (lightness - 50) + A0, np.full_like(lightness, B0)], axis=-1)
    assert result.variant == "pytorch"
    assert_close_colors(result.colorized, expected_colors(image[:, :, 0], ab))


def test_caffe_variant_through_the_model_server(model_server, coefficients_path, monkeypatch):
    monkeypatch.setenv(col.COEFFICIENTS_SETTING, str(coefficients_path))
    resources.clear_cache()
    adapter = serving.get_adapter(config.model_settings("COLORIZATION",
                                                        settings_env(model_server, "color-caffe")))
    task = col.ColorizationTask()
    image = gray_picture(120, 224)
    result = task.run(image, adapter, task.parse_options({}), Timings())
    coeffs = np.load(coefficients_path)
    gray = image[:, :, 0]
    right = K_MIX[0] * coeffs[K_LEFT[1]] + K_MIX[1] * coeffs[10]
    assert result.variant == "caffe"
    assert_close_colors(result.colorized[:, :100], expected_colors(gray[:, :100], coeffs[K_LEFT[0]]))
    assert_close_colors(result.colorized[:, 124:], expected_colors(gray[:, 124:], right))


# ---- over HTTP --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pytorch_host(model_server, tmp_path_factory):
    host = start_functions_host(env=settings_env(model_server, "color-pytorch"),
                                log_dir=tmp_path_factory.mktemp("host-pytorch"))
    yield host
    host.stop()


@pytest.fixture(scope="module")
def caffe_host(model_server, coefficients_path, tmp_path_factory):
    if find_model("colorization-v2") is None:
        pytest.skip("needs_real_models: colorization-v2 (models-synthetic)")
    host = start_functions_host(env=settings_env(model_server, "colorization", coefficients_path),
                                log_dir=tmp_path_factory.mktemp("host-caffe"))
    yield host
    host.stop()


ENDPOINT = "/api/HttpTriggerColorization"


def test_http_pytorch_json_answer_has_the_exact_colours(pytorch_host):
    image = gray_picture(256, 256, seed=1)
    body = json.dumps({"image": base64.b64encode(png(image)).decode(), "output_format": "png"}).encode()
    status, ctype, raw = post(pytorch_host.url(ENDPOINT), body, "application/json")
    assert status == 200, raw[:500]
    payload = json.loads(raw)
    block = payload["colorized"]
    assert block["mime_type"] == "image/png" and (block["width"], block["height"]) == (256, 256)
    assert payload["variant"] == "pytorch"
    assert payload["model"]["name"] == "color-pytorch"
    assert payload["image"] == {"width": 256, "height": 256}
    assert payload["timing_ms"]["inference"] > 0
    lightness = cie_l_of_gray(image[:, :, 0])
    ab = np.stack([A_SLOPE * (lightness - 50) + A0, np.full_like(lightness, B0)], axis=-1)
    assert_close_colors(decode(base64.b64decode(block["data"])), expected_colors(image[:, :, 0], ab))


def test_http_pytorch_raw_picture_keeps_size_and_orientation(pytorch_host):
    # A JPEG that says "rotate 90° clockwise" (EXIF 6): the answer is the upright picture's size.
    import io

    from PIL import Image

    stored = gray_picture(90, 160)
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored[:, :, ::-1]).save(buf, "JPEG", quality=95, exif=exif)
    status, ctype, raw = post(pytorch_host.url(ENDPOINT) + "?render=true&format=png", buf.getvalue(),
                              "image/jpeg")
    assert status == 200 and ctype.startswith("image/png"), raw[:300]
    picture = decode(raw)
    assert picture.shape == (160, 90, 3)


def test_http_pytorch_accept_image_and_compare(pytorch_host):
    image = gray_picture(200, 300)
    status, ctype, raw = post(pytorch_host.url(ENDPOINT) + "?compare=true", png(image), "image/png",
                              headers={"Accept": "image/png"})
    assert status == 200 and ctype.startswith("image/png")
    assert decode(raw).shape == (400, 1200, 3)
    # JSON with compare carries both pictures
    status, _, raw = post(pytorch_host.url(ENDPOINT) + "?compare=1", png(image), "image/png")
    payload = json.loads(raw)
    assert payload["comparison"]["width"] == 1200 and payload["colorized"]["width"] == 300


def test_http_colour_input_is_accepted(pytorch_host):
    rng = np.random.default_rng(4)
    image = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (256, 256),
                       interpolation=cv2.INTER_NEAREST)
    status, ctype, raw = post(pytorch_host.url(ENDPOINT) + "?format=png&render=1", png(image))
    assert status == 200
    gray = np.round(image[..., 2] * 0.299 + image[..., 1] * 0.587 + image[..., 0] * 0.114)
    lightness = cie_l_of_gray(gray)
    ab = np.stack([A_SLOPE * (lightness - 50) + A0, np.full_like(lightness, B0)], axis=-1)
    assert_close_colors(decode(raw), expected_colors(gray, ab))


@pytest.mark.parametrize("body,ctype,query,status,code", [
    (b"this is not an image", "image/jpeg", "", 415, "invalid_image"),
    (b"", "image/png", "", 400, "missing_image"),
    (b'{"image": "@@@"}', "application/json", "", 400, "invalid_base64"),
    (b"{not json", "application/json", "", 400, "invalid_json"),
    (None, "image/png", "?compare=maybe", 400, "invalid_option"),
    (None, "image/png", "?output_format=gif", 400, "invalid_option"),
    (None, "text/plain", "", 415, "unsupported_media_type"),
])
def test_http_bad_input_is_4xx_json(pytorch_host, body, ctype, query, status, code):
    if body is None:
        body = png(gray_picture(16, 16))
    got, got_type, raw = post(pytorch_host.url(ENDPOINT) + query, body, ctype)
    assert got == status, raw[:300]
    assert got_type.startswith("application/json")
    assert json.loads(raw)["error"]["code"] == code


def test_http_get_is_405_json(pytorch_host):
    got, got_type, raw = post(pytorch_host.url(ENDPOINT), b"", method="GET")
    assert got == 405 and json.loads(raw)["error"]["code"] == "method_not_allowed"


def test_http_synthetic_caffe_model_end_to_end(caffe_host, coefficients_path):
    """The real colorization-v2 topology (placeholder weights), checked against OpenVINO run
    in-process on the same L and the independent colour maths."""
    image = gray_picture(56, 56, seed=2)  # the output's size: ab is not resized
    status, ctype, raw = post(caffe_host.url(ENDPOINT) + "?render=true&format=png", png(image))
    assert status == 200 and ctype.startswith("image/png"), raw[:500]
    got = decode(raw)
    assert got.shape == (56, 56, 3)

    lightness = cie_l_of_gray(image[:, :, 0]).astype(np.float32)
    model_in = cv2.resize(lightness, (224, 224), interpolation=cv2.INTER_LINEAR)[None, None]
    compiled = compile_f32(model_xml("colorization-v2"))
    probs = compiled(model_in)[compiled.output("class8_313_rh")][0]  # [313,56,56]
    ab = np.einsum("khw,kc->hwc", probs.astype(np.float64), np.load(coefficients_path))
    assert_close_colors(got, expected_colors(image[:, :, 0], ab))

    status, _, raw = post(caffe_host.url(ENDPOINT), png(image))
    payload = json.loads(raw)
    assert payload["variant"] == "caffe" and payload["model"]["name"] == "colorization"
    assert payload["colorized"]["mime_type"] == "image/jpeg"
