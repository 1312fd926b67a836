"""Unit tests of the colorization pipeline (no model server).

Expected colours come from ``cie_*`` below: the sRGB / CIE Lab maths written from the published
formulas (IEC 61966-2-1 sRGB, CIE 1976 L*a*b*, D65 white) with numpy only, independent of the
OpenCV conversions the pipeline uses. Allowed error: 2 levels of 255.
"""
from __future__ import annotations

import base64
import json
from typing import Dict, Mapping

import cv2
import numpy as np
import pytest

from shared import resources
from shared.errors import BadModelOutput, InvalidOption, ModelUnavailable
from shared.serving.base import CachedMetadataAdapter, ModelMetadata, ModelStatus, TensorInfo
from shared.tasks import colorization as col
from shared.timings import Timings

# ---- independent colour maths (numpy, CIE formulas) ------------------------------------------

D65 = np.array([0.95047, 1.0, 1.08883])
XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986],
                        [-0.9689, 1.8758, 0.0415],
                        [0.0557, -0.2040, 1.0570]])
DELTA = 6.0 / 29.0


def cie_srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def cie_linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, None)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def cie_l_of_gray(gray: np.ndarray) -> np.ndarray:
    """L* of an 8-bit grey level (R = G = B, so Y is the linear value itself)."""
    y = cie_srgb_to_linear(np.asarray(gray, dtype=np.float64) / 255.0)
    f = np.where(y > DELTA ** 3, np.cbrt(y), y / (3 * DELTA ** 2) + 4.0 / 29.0)
    return 116.0 * f - 16.0


def cie_lab_to_bgr8(lab: np.ndarray) -> np.ndarray:
    """HxWx3 L*a*b* -> BGR uint8 (clipped to the sRGB gamut, rounded)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = fy - lab[..., 2] / 200.0

    def finv(t):
        return np.where(t > DELTA, t ** 3, 3 * DELTA ** 2 * (t - 4.0 / 29.0))

    xyz = np.stack([finv(fx), finv(fy), finv(fz)], axis=-1) * D65
    rgb = cie_linear_to_srgb(xyz @ XYZ_TO_SRGB.T)
    rgb = np.clip(rgb, 0.0, 1.0)
    return np.round(rgb[..., ::-1] * 255.0).astype(np.uint8)


def expected_colors(gray: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """BGR uint8 for a grey picture and a per-pixel (or broadcast) ab."""
    lightness = cie_l_of_gray(gray)
    ab = np.broadcast_to(np.asarray(ab, dtype=np.float64), lightness.shape + (2,))
    return cie_lab_to_bgr8(np.concatenate([lightness[..., None], ab], axis=-1))


def assert_close_colors(actual: np.ndarray, expected: np.ndarray, tol: int = 2) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == np.uint8
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= tol, f"max colour error {diff.max()} at {np.unravel_index(diff.argmax(), diff.shape)}"


# ---- helpers ---------------------------------------------------------------------------------

def gray_ramp(height: int, width: int) -> np.ndarray:
    """Every grey level 0..255, repeated, as a BGR picture."""
    values = (np.arange(height * width) % 256).astype(np.uint8).reshape(height, width)
    return cv2.cvtColor(values, cv2.COLOR_GRAY2BGR)


def pytorch_meta(h: int = 256, w: int = 256, out_name: str = "color_ab") -> ModelMetadata:
    return ModelMetadata("colorization", "1",
                         {"data_l": TensorInfo("data_l", (1, 1, h, w), "float32")},
                         {out_name: TensorInfo(out_name, (1, 2, h, w), "float32")})


def caffe_meta(h: int = 224, w: int = 224, bins: int = 313, out_hw=(56, 56),
               out_name: str = "class8_313_rh") -> ModelMetadata:
    return ModelMetadata("colorization", "1",
                         {"data_l": TensorInfo("data_l", (1, 1, h, w), "float32")},
                         {out_name: TensorInfo(out_name, (1, bins) + tuple(out_hw), "float32")})


class FakeAdapter(CachedMetadataAdapter):
    """Returns fixed outputs (read-only, as np.frombuffer would) and records the inputs as the
    adapters send them (cast to the declared dtypes)."""

    def __init__(self, meta: ModelMetadata, outputs: Mapping[str, np.ndarray]) -> None:
        super().__init__()
        self._fixed_meta = meta
        self._outputs = {}
        for k, v in outputs.items():
            v = np.array(v, dtype=np.float32)
            v.setflags(write=False)
            self._outputs[k] = v
        self.inputs: Dict[str, np.ndarray] = {}

    def _fetch_metadata(self) -> ModelMetadata:
        return self._fixed_meta

    def status(self) -> ModelStatus:
        return ModelStatus(self._fixed_meta.name, "1", True, "AVAILABLE")

    def infer(self, inputs):
        self.inputs = self._typed_inputs(inputs)
        return dict(self._outputs)


def constant_ab(a: float, b: float, h: int = 256, w: int = 256) -> np.ndarray:
    out = np.empty((1, 2, h, w), np.float32)
    out[0, 0], out[0, 1] = a, b
    return out


@pytest.fixture
def coeff_file(tmp_path, monkeypatch):
    """A 313x2 coefficient file (float64, as the real one) configured in the setting."""
    rng = np.random.default_rng(7)
    coeffs = np.round(rng.uniform(-90, 90, size=(313, 2)) / 10) * 10
    path = tmp_path / "coeffs.npy"
    np.save(path, coeffs.astype(np.float64))
    monkeypatch.setenv(col.COEFFICIENTS_SETTING, str(path))
    resources.clear_cache()
    yield coeffs
    resources.clear_cache()


def run(task, image, adapter, **raw):
    options = task.parse_options(raw)
    return task.run(image, adapter, options, Timings()), options


# ---- preprocessing ---------------------------------------------------------------------------

@pytest.mark.parametrize("h,w", [(256, 256), (224, 224), (160, 96)])
def test_preprocess_feeds_raw_l_at_the_metadata_size(h, w):
    image = gray_ramp(h, w)
    task = col.ColorizationTask()
    inputs, _ = task.preprocess(image, pytorch_meta(h, w), task.parse_options({}))
    tensor = inputs["data_l"]
    assert tensor.shape == (1, 1, h, w) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0, 0], cie_l_of_gray(image[:, :, 0]), atol=0.02)


def test_preprocess_downscales_l_bilinearly():
    # An exact 2x reduction with bilinear sampling at pixel centres is the 2x2 block mean of L.
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, size=(448, 512), dtype=np.uint8)
    image = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    task = col.ColorizationTask()
    inputs, _ = task.preprocess(image, caffe_meta(224, 256), task.parse_options({}))
    lightness = cie_l_of_gray(gray)
    expected = lightness.reshape(224, 2, 256, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(inputs["data_l"][0, 0], expected, atol=0.02)


def test_l_table_matches_cie():
    np.testing.assert_allclose(col._L_OF_GRAY, cie_l_of_gray(np.arange(256)), atol=1e-3)
    # within OpenCV's float approximation (what the demo uses)
    ramp = np.repeat(np.arange(256, dtype=np.float32).reshape(1, 256, 1) / 255, 3, axis=2)
    np.testing.assert_allclose(col._L_OF_GRAY, cv2.cvtColor(ramp, cv2.COLOR_RGB2Lab)[0, :, 0], atol=0.25)
    assert col._L_OF_GRAY[0] == 0.0 and abs(col._L_OF_GRAY[255] - 100.0) < 1e-3


# ---- PyTorch variant ---------------------------------------------------------------------------

@pytest.mark.parametrize("ab", [(0.0, 0.0), (20.0, 40.0), (-30.0, 25.0), (60.0, -60.0)])
def test_pytorch_constant_ab_gives_exact_colours(ab):
    image = gray_ramp(64, 256)  # model size differs from the picture: ab is resized
    adapter = FakeAdapter(pytorch_meta(), {"color_ab": constant_ab(*ab)})
    result, _ = run(col.ColorizationTask(), image, adapter)
    assert result.variant == "pytorch"
    assert_close_colors(result.colorized, expected_colors(image[:, :, 0], ab))


def test_pytorch_spatial_ab_is_resized_to_the_picture():
    out = constant_ab(40.0, 10.0)
    out[0, :, :, 128:] = np.array([-20.0, -50.0], np.float32)[:, None, None]  # right half
    image = gray_ramp(300, 512)  # 2x the model width
    adapter = FakeAdapter(pytorch_meta(), {"color_ab": out})
    result, _ = run(col.ColorizationTask(), image, adapter)
    gray = image[:, :, 0]
    # pixels more than a model pixel away from the seam keep their half's colour
    assert_close_colors(result.colorized[:, :250], expected_colors(gray[:, :250], (40, 10)))
    assert_close_colors(result.colorized[:, 262:], expected_colors(gray[:, 262:], (-20, -50)))


def test_non_square_model_and_picture_keep_size_and_orientation():
    h, w = 37, 91
    image = gray_ramp(h, w)
    image[:5, :5] = 255  # a marker in the top-left corner
    adapter = FakeAdapter(pytorch_meta(192, 128), {"color_ab": constant_ab(10, 30, 192, 128)})
    result, _ = run(col.ColorizationTask(), image, adapter)
    assert result.colorized.shape == (h, w, 3)
    assert adapter.inputs["data_l"].shape == (1, 1, 192, 128)
    assert_close_colors(result.colorized, expected_colors(image[:, :, 0], (10, 30)))


def test_colour_input_is_colorized_from_its_grey():
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    gray = np.round(image[..., 2] * 0.299 + image[..., 1] * 0.587 + image[..., 0] * 0.114)
    adapter = FakeAdapter(pytorch_meta(), {"color_ab": constant_ab(15, -25)})
    result, _ = run(col.ColorizationTask(), image, adapter)
    assert_close_colors(result.colorized, expected_colors(gray, (15, -25)))


def test_float16_input_is_fed_as_float16():
    meta = ModelMetadata("c", "1", {"data_l": TensorInfo("data_l", (1, 1, 32, 32), "float16")},
                         {"color_ab": TensorInfo("color_ab", (1, 2, 32, 32), "float16")})
    adapter = FakeAdapter(meta, {"color_ab": constant_ab(20, 20, 32, 32)})
    image = gray_ramp(32, 32)
    result, _ = run(col.ColorizationTask(), image, adapter)
    assert adapter.inputs["data_l"].dtype == np.float16
    assert_close_colors(result.colorized, expected_colors(image[:, :, 0], (20, 20)))


def test_renamed_single_output_is_recognised_by_channels():
    adapter = FakeAdapter(pytorch_meta(out_name="out"), {"out": constant_ab(5, 5)})
    result, _ = run(col.ColorizationTask(), gray_ramp(16, 16), adapter)
    assert result.variant == "pytorch"


# ---- Caffe variant -------------------------------------------------------------------------------

def one_hot(bins_hw: np.ndarray, bins: int = 313) -> np.ndarray:
    """[1,bins,h,w] probabilities with all the mass on the bin index given per position."""
    h, w = bins_hw.shape
    out = np.zeros((1, bins, h, w), np.float32)
    out[0, bins_hw, np.arange(h)[:, None], np.arange(w)[None, :]] = 1.0
    return out


def test_caffe_one_hot_bins_give_the_bin_colours(coeff_file):
    k_left, k_right = 40, 200
    idx = np.full((56, 56), k_left)
    idx[:, 28:] = k_right
    adapter = FakeAdapter(caffe_meta(), {"class8_313_rh": one_hot(idx)})
    image = gray_ramp(112, 224)  # 4x the output width
    result, _ = run(col.ColorizationTask(), image, adapter)
    assert result.variant == "caffe"
    gray = image[:, :, 0]
    assert_close_colors(result.colorized[:, :100], expected_colors(gray[:, :100], coeff_file[k_left]))
    assert_close_colors(result.colorized[:, 124:], expected_colors(gray[:, 124:], coeff_file[k_right]))
    # the raw L went in: the mean of 50 is the model's business
    np.testing.assert_allclose(adapter.inputs["data_l"].mean(), cie_l_of_gray(gray).mean(), atol=1.0)


def test_caffe_probability_map_is_the_expected_ab(coeff_file):
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(313,)).astype(np.float64)
    p = np.exp(logits) / np.exp(logits).sum()
    probs = np.broadcast_to(p[None, :, None, None], (1, 313, 56, 56)).astype(np.float32)
    adapter = FakeAdapter(caffe_meta(), {"class8_313_rh": probs})
    image = gray_ramp(50, 70)
    result, _ = run(col.ColorizationTask(), image, adapter)
    ab = p @ coeff_file  # independent expectation
    assert_close_colors(result.colorized, expected_colors(image[:, :, 0], ab))


def test_caffe_with_the_real_coefficients(monkeypatch):
    from scripts.tooling.modelsearch import find_side_file

    path = find_side_file("colorization-v2", "colorization-v2.npy")
    if path is None:
        pytest.skip("needs_real_models: colorization-v2/colorization-v2.npy")
    monkeypatch.setenv(col.COEFFICIENTS_SETTING, str(path))
    coeffs = np.load(path)
    assert coeffs.shape == (313, 2)
    p = np.zeros(313)
    p[[10, 150, 300]] = [0.2, 0.5, 0.3]
    probs = np.broadcast_to(p[None, :, None, None], (1, 313, 56, 56)).astype(np.float32)
    image = gray_ramp(40, 40)
    result, _ = run(col.ColorizationTask(), image, FakeAdapter(caffe_meta(), {"class8_313_rh": probs}))
    assert_close_colors(result.colorized, expected_colors(image[:, :, 0], p @ coeffs))


def test_coefficients_are_read_once(coeff_file, monkeypatch):
    calls = []
    real = resources.read_bytes
    monkeypatch.setattr(resources, "read_bytes", lambda *a, **k: calls.append(a) or real(*a, **k))
    task = col.ColorizationTask()
    adapter = FakeAdapter(caffe_meta(), {"class8_313_rh": one_hot(np.zeros((56, 56), int))})
    for _ in range(3):
        run(task, gray_ramp(8, 8), adapter)
    assert len(calls) == 1


def test_caffe_without_coefficient_setting_is_503(monkeypatch):
    monkeypatch.delenv(col.COEFFICIENTS_SETTING, raising=False)
    adapter = FakeAdapter(caffe_meta(), {"class8_313_rh": one_hot(np.zeros((56, 56), int))})
    with pytest.raises(ModelUnavailable, match=col.COEFFICIENTS_SETTING):
        run(col.ColorizationTask(), gray_ramp(8, 8), adapter)


def test_pytorch_does_not_need_coefficients(monkeypatch):
    monkeypatch.delenv(col.COEFFICIENTS_SETTING, raising=False)
    calls = []
    monkeypatch.setattr(resources, "read_bytes", lambda *a, **k: calls.append(a))
    image = gray_ramp(8, 8)
    result, _ = run(col.ColorizationTask(), image, FakeAdapter(pytorch_meta(), {"color_ab": constant_ab(10, -20)}))
    assert calls == []  # no side file was looked for
    assert result.variant == "pytorch"
    assert_close_colors(result.colorized, expected_colors(image[:, :, 0], (10.0, -20.0)))


@pytest.mark.parametrize("content", [b"not numpy", "shape"])
def test_bad_coefficient_file_is_503(tmp_path, monkeypatch, content):
    path = tmp_path / "bad.npy"
    if content == "shape":
        np.save(path, np.zeros((313, 3)))
    else:
        path.write_bytes(content)
    monkeypatch.setenv(col.COEFFICIENTS_SETTING, str(path))
    resources.clear_cache()
    adapter = FakeAdapter(caffe_meta(), {"class8_313_rh": one_hot(np.zeros((56, 56), int))})
    with pytest.raises(ModelUnavailable):
        run(col.ColorizationTask(), gray_ramp(8, 8), adapter)
    resources.clear_cache()


def test_missing_coefficient_file_is_503(tmp_path, monkeypatch):
    monkeypatch.setenv(col.COEFFICIENTS_SETTING, str(tmp_path / "absent.npy"))
    resources.clear_cache()
    adapter = FakeAdapter(caffe_meta(), {"class8_313_rh": one_hot(np.zeros((56, 56), int))})
    with pytest.raises(ModelUnavailable):
        run(col.ColorizationTask(), gray_ramp(8, 8), adapter)


# ---- wrong models / outputs -> 502 --------------------------------------------------------------

@pytest.mark.parametrize("outputs", [
    {"other": constant_ab(0, 0)},  # the metadata promised color_ab
    {"color_ab": np.zeros((1, 3, 256, 256))},  # wrong channel count
    {"color_ab": np.zeros((2, 256, 256))},  # wrong rank
    {"color_ab": np.full((1, 2, 8, 8), np.nan)},  # not finite
])
def test_bad_pytorch_outputs_are_502(outputs):
    with pytest.raises(BadModelOutput):
        run(col.ColorizationTask(), gray_ramp(8, 8), FakeAdapter(pytorch_meta(), outputs))


def test_bins_count_must_match_the_coefficients(coeff_file):
    adapter = FakeAdapter(caffe_meta(bins=300), {"class8_313_rh": np.zeros((1, 300, 56, 56))})
    with pytest.raises(BadModelOutput):
        run(col.ColorizationTask(), gray_ramp(8, 8), adapter)


@pytest.mark.parametrize("meta", [
    ModelMetadata("m", "1", {"x": TensorInfo("x", (1, 3, 224, 224), "float32")},
                  {"color_ab": TensorInfo("color_ab", (1, 2, 224, 224), "float32")}),
    ModelMetadata("m", "1", {"x": TensorInfo("x", (1, 1, 64, 64), "uint8")},
                  {"color_ab": TensorInfo("color_ab", (1, 2, 64, 64), "float32")}),
    ModelMetadata("m", "1", {"x": TensorInfo("x", (1, 1, -1, -1), "float32")},
                  {"color_ab": TensorInfo("color_ab", (1, 2, -1, -1), "float32")}),
    ModelMetadata("m", "1", {"x": TensorInfo("x", (1, 1, 64, 64), "float32")},
                  {"a": TensorInfo("a", (1, 2, 8, 8), "float32"), "b": TensorInfo("b", (1, 1), "float32")}),
    ModelMetadata("m", "1", {"x": TensorInfo("x", (1, 1, 64, 64), "float32"),
                             "y": TensorInfo("y", (1, 1, 64, 64), "float32")},
                  {"color_ab": TensorInfo("color_ab", (1, 2, 64, 64), "float32")}),
])
def test_models_that_are_not_colorization_are_502(meta):
    with pytest.raises(BadModelOutput):
        col.model_layout(meta)


# ---- options, answer, comparison ------------------------------------------------------------

@pytest.mark.parametrize("raw", [{"compare": "maybe"}, {"output_format": "gif"}, {"quality": 0},
                                 {"quality": "high"}])
def test_bad_options_are_400(raw):
    with pytest.raises(InvalidOption):
        col.ColorizationTask().parse_options(raw)


def test_to_dict_is_json_with_the_encoded_picture():
    image = gray_ramp(40, 60)
    adapter = FakeAdapter(pytorch_meta(), {"color_ab": constant_ab(30, -10)})
    result, options = run(col.ColorizationTask(), image, adapter, output_format="png")
    payload = json.loads(json.dumps(result.to_dict()))
    block = payload["colorized"]
    assert block["mime_type"] == "image/png" and (block["width"], block["height"]) == (60, 40)
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(block["data"]), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded, result.colorized)  # PNG is lossless
    assert payload["variant"] == "pytorch" and "comparison" not in payload
    jpeg = run(col.ColorizationTask(), image, adapter)[0].to_dict()["colorized"]
    assert jpeg["mime_type"] == "image/jpeg" and base64.b64decode(jpeg["data"])[:2] == b"\xff\xd8"


def test_render_returns_the_colorized_picture():
    image = gray_ramp(40, 60)
    task = col.ColorizationTask()
    result, options = run(task, image, FakeAdapter(pytorch_meta(), {"color_ab": constant_ab(30, -10)}))
    assert task.render(image, result, options) is result.colorized


def test_compare_puts_original_and_result_side_by_side():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(200, 300, 3), dtype=np.uint8)
    task = col.ColorizationTask()
    result, options = run(task, image, FakeAdapter(pytorch_meta(), {"color_ab": constant_ab(30, -10)}),
                          compare="true")
    picture = task.render(image, result, options)
    assert picture.shape == (400, 1200, 3)  # two panels 400 high, as the original OVaaS
    left = cv2.resize(image, (600, 400), interpolation=cv2.INTER_LINEAR)
    right = cv2.resize(result.colorized, (600, 400), interpolation=cv2.INTER_LINEAR)
    below_label = slice(80, 400)
    assert np.array_equal(picture[below_label, :600], left[below_label])
    assert np.array_equal(picture[below_label, 600:], right[below_label])
    # labels drawn in red at the top-left of each panel
    for panel in (picture[:80, :600], picture[:80, 600:]):
        red = (panel[..., 2] > 200) & (panel[..., 1] < 60) & (panel[..., 0] < 60)
        assert red.sum() > 100
    assert "comparison" in result.to_dict()


def test_compare_of_a_panorama_is_bounded():
    image = gray_ramp(10, 4000)
    task = col.ColorizationTask()
    result, options = run(task, image, FakeAdapter(pytorch_meta(), {"color_ab": constant_ab(0, 0)}),
                          compare=True)
    picture = task.render(image, result, options)
    assert picture.shape[1] <= 2 * col.COMPARE_MAX_PANEL_WIDTH and picture.shape[0] >= 1
