"""Real models (../shared/models-real) and real-topology synthetic models (../shared/models-synthetic)
served by the OVMS emulator; generated probe/constant models through the server."""
from __future__ import annotations

import numpy as np
import openvino as ov
import ovmsclient
import pytest
import tritonclient.grpc as tg

from scripts.tooling.modelsearch import model_xml
from tests import modelgen
from tests.precision import F32, compile_f32, served_precision
from tests.realmodels import real_model

REAL = ["human-pose-estimation-0001", "person-detection-0200", "person-vehicle-bike-detection-2000",
        "person-detection-retail-0013"]
SYNTHETIC = ["handwritten-japanese-recognition-0001", "colorization-v2"]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    from emulators.ovms.launcher import start_server, write_config

    bases = {name: real_model(name) for name in REAL + SYNTHETIC}
    cfg = write_config(tmp_path_factory.mktemp("shared") / "config.json",
                       [{"name": n, "base_path": str(b), "plugin_config": F32} for n, b in bases.items()])
    srv = start_server(["--config_path", str(cfg)], timeout=120)
    yield srv
    srv.stop()


def _io(compiled):
    f = lambda ports: {p.get_any_name(): [d.get_length() for d in p.get_partial_shape()] for p in ports}  # noqa
    return f(compiled.inputs), f(compiled.outputs)


@pytest.mark.needs_real_models
@pytest.mark.parametrize("name", REAL + SYNTHETIC)
def test_served_metadata_matches_openvino(shared_server, name):
    core = ov.Core()
    ins, outs = _io(core.compile_model(str(model_xml(name)), "CPU"))
    md = ovmsclient.make_grpc_client(shared_server.address).get_model_metadata(name)
    assert {k: v["shape"] for k, v in md["inputs"].items()} == ins
    assert {k: v["shape"] for k, v in md["outputs"].items()} == outs
    assert all(v["dtype"] == "DT_FLOAT" for v in list(md["inputs"].values()) + list(md["outputs"].values()))
    kmd = tg.InferenceServerClient(shared_server.address).get_model_metadata(name)
    assert {t.name: list(t.shape) for t in kmd.outputs} == outs


@pytest.mark.needs_real_models
def test_pose_matches_in_process_openvino(shared_server):
    name = "human-pose-estimation-0001"
    x = np.random.default_rng(0).random((1, 3, 256, 456), dtype=np.float32) * 255
    assert served_precision(shared_server, name) == "f32"  # both sides pinned: bf16 on AMX otherwise
    compiled = compile_f32(model_xml(name))
    ref = {p.get_any_name(): v for p, v in compiled({"data": x}).items()}
    c = tg.InferenceServerClient(shared_server.address)
    i = tg.InferInput("data", [1, 3, 256, 456], "FP32")
    i.set_data_from_numpy(x)
    r = c.infer(name, [i])
    for out in ("Mconv7_stage2_L1", "Mconv7_stage2_L2"):
        np.testing.assert_allclose(r.as_numpy(out), ref[out], rtol=1e-4, atol=1e-4)
    assert float(np.abs(ref["Mconv7_stage2_L2"]).max()) > 0  # the comparison is not vacuous


@pytest.mark.needs_real_models
@pytest.mark.parametrize("name", ["person-detection-0200", "person-vehicle-bike-detection-2000",
                                  "person-detection-retail-0013"])
def test_detectors_answer(shared_server, name):
    oc = ovmsclient.make_grpc_client(shared_server.address)
    (in_name, meta), = oc.get_model_metadata(name)["inputs"].items()
    x = np.random.default_rng(1).random(meta["shape"], dtype=np.float32) * 255
    out = oc.predict({in_name: x}, name)
    assert out.shape == (1, 1, 200, 7) and np.isfinite(out).all()


@pytest.mark.needs_real_models
@pytest.mark.parametrize("name, shape, out_shape", [
    ("handwritten-japanese-recognition-0001", (1, 1, 96, 2000), (186, 1, 4442)),
    ("colorization-v2", (1, 1, 224, 224), (1, 313, 56, 56)),
])
def test_synthetic_topologies_answer(shared_server, name, shape, out_shape):
    oc = ovmsclient.make_grpc_client(shared_server.address)
    (in_name, _), = oc.get_model_metadata(name)["inputs"].items()
    out = oc.predict({in_name: np.random.default_rng(2).random(shape, dtype=np.float32) * 100}, name)
    assert out.shape == out_shape and np.isfinite(out).all()


# ---------------------------------------------------------------- generated models through the server
@pytest.fixture(scope="module")
def gen_server(model_repo, synthetic_models, tmp_path_factory):
    from emulators.ovms.launcher import start_server, write_config

    probe = model_repo.add("probe-pose", modelgen.pool_probe_model, "data", (1, 3, 256, 456),
                           {"Mconv7_stage2_L1": (1, 38, 32, 57), "Mconv7_stage2_L2": (1, 19, 32, 57)})
    means = model_repo.add("probe-ssd", modelgen.channel_mean_probe_model, "image", (1, 3, 256, 256),
                           {"detection_out": (1, 1, 200, 7)})
    entries = [{"name": "probe-pose", "base_path": str(probe), "plugin_config": F32},
               {"name": "probe-ssd", "base_path": str(means), "plugin_config": F32}]
    entries += [{"name": n, "base_path": str(b), "plugin_config": F32} for n, b in synthetic_models.items()]
    srv = start_server(["--config_path", str(write_config(tmp_path_factory.mktemp("gen") / "c.json", entries))],
                       timeout=60)
    yield srv
    srv.stop()


def _bgr_image(h, w):
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 200.0, 100.0, 10.0      # B, G, R
    img[: h // 2, : w // 2] += 40.0                                  # a brighter top-left quadrant
    return img


def test_pool_probe_detects_channel_order_layout_scaling(gen_server):
    oc = ovmsclient.make_grpc_client(gen_server.address)
    img = _bgr_image(256, 456)
    good = img.transpose(2, 0, 1)[None].copy()
    out = oc.predict({"data": good}, "probe-pose")
    expected = modelgen.pool_reference(good, (1, 38, 32, 57))
    np.testing.assert_allclose(out["Mconv7_stage2_L1"], expected, rtol=1e-5, atol=1e-3)
    assert out["Mconv7_stage2_L1"][0, 0, 0, 0] == pytest.approx(240.0) and out["Mconv7_stage2_L1"][0, 2, -1, -1] == 10
    rgb = good[:, ::-1].copy()
    assert not np.allclose(oc.predict({"data": rgb}, "probe-pose")["Mconv7_stage2_L1"], expected, atol=1)
    scaled = good / 255.0
    assert not np.allclose(oc.predict({"data": scaled}, "probe-pose")["Mconv7_stage2_L1"], expected, atol=1)
    nhwc_as_nchw = img.reshape(1, 3, 256, 456)  # a reshape instead of a transpose
    assert not np.allclose(oc.predict({"data": nhwc_as_nchw}, "probe-pose")["Mconv7_stage2_L1"], expected, atol=1)


def test_channel_mean_probe(gen_server):
    c = tg.InferenceServerClient(gen_server.address)
    x = _bgr_image(256, 256).transpose(2, 0, 1)[None].copy()
    i = tg.InferInput("image", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    out = c.infer("probe-ssd", [i]).as_numpy("detection_out")
    means = x[0].mean(axis=(1, 2))
    np.testing.assert_allclose(out.flat[:6], np.tile(means, 2), rtol=1e-5)
    assert out.flat[0] > out.flat[1] > out.flat[2]  # B > G > R for this image


def test_standard_synthetic_models(gen_server, synthetic_models):
    oc = ovmsclient.make_grpc_client(gen_server.address)
    det = oc.predict({"data": np.zeros((1, 3, 320, 544), np.float32)}, "person-detection-retail-0013")
    assert det.shape == (1, 1, 200, 7) and det[0, 0, 0].tolist() == pytest.approx([0, 1, 0.8, 0.5, 0.5, 0.9, 0.9])
    assert det[0, 0, 1, 0] == -1
    bl = oc.predict({"image": np.zeros((1, 3, 416, 416), np.float32)}, "face-detection-0205")
    assert bl["labels"].dtype == np.int64 and bl["labels"].tolist() == [0]
    assert bl["boxes"].tolist() == [[10, 20, 110, 120, pytest.approx(0.95)]]
    hw = oc.predict({"actual_input": np.zeros((1, 1, 96, 2000), np.float32)}, "handwritten-japanese-recognition-0001")
    assert (hw.argmax(-1) == 0).all()
    col = oc.predict({"data_l": np.zeros((1, 1, 224, 224), np.float32)}, "colorization-v2")
    assert col.shape == (1, 313, 56, 56) and (col.argmax(1) == 0).all()
    md = oc.get_model_metadata("colorization-v2-pytorch")
    assert md["inputs"] == {"data_l": {"shape": [1, 1, 256, 256], "dtype": "DT_FLOAT"}}
    assert md["outputs"] == {"color_ab": {"shape": [1, 2, 256, 256], "dtype": "DT_FLOAT"}}


def test_ctc_logits_decode():
    logits = modelgen.ctc_logits([7, 7, 2])
    best = logits[:, 0].argmax(-1)
    decoded = [int(k) for i, k in enumerate(best) if k != 0 and (i == 0 or k != best[i - 1])]
    assert decoded == [7, 7, 2]
