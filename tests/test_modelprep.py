"""scripts/tooling/modelprep.py: a model with u8 image inputs answers exactly as the original does
for whole 8-bit levels, and through the endpoints (which feed whole levels where the catalog says
u8_input) the answers are identical, with a quarter of the bytes sent."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import pytest

from emulators.ovms.launcher import start_server, write_config
from scripts.tooling.modelprep import u8_image_inputs
from scripts.tooling.modelsearch import PROJECT_ROOT, find_model
from shared import catalog, config, serving
from shared.tasks import get_task
from shared.timings import Timings
from tests.precision import F32, compile_f32
from tests.realmodels import real_model_xml
from tests.test_openapi import write_charlist

IMAGES = PROJECT_ROOT.parent / "shared" / "images"


@pytest.mark.parametrize("name", ["human-pose-estimation-0001", "person-detection-retail-0013",
                                  "handwritten-japanese-recognition-0001"])
def test_u8_model_answers_exactly_as_the_original(tmp_path, name):
    xml = real_model_xml(name)
    assert u8_image_inputs(xml, tmp_path) != []
    original, converted = compile_f32(xml), compile_f32(tmp_path / xml.name)
    (port,), (cport,) = original.inputs, converted.inputs
    assert cport.get_element_type() == ov.Type.u8 and port.get_element_type() == ov.Type.f32
    assert cport.get_any_name() == port.get_any_name() and cport.get_shape() == port.get_shape()
    levels = np.random.default_rng(5).integers(0, 256, tuple(port.get_shape()), dtype=np.uint8)
    want = [np.asarray(v) for v in original(levels.astype(np.float32)).values()]
    got = [np.asarray(v) for v in converted(levels).values()]
    assert all(np.array_equal(a, b) for a, b in zip(want, got))


def test_models_without_image_inputs_are_written_unchanged(tmp_path):
    from tests import modelgen

    xml = modelgen.constant_model(tmp_path / "in" / "m.xml", {"x": (1, 4)}, {"y": np.zeros((1, 2), np.float32)})
    assert u8_image_inputs(Path(xml), tmp_path / "out") == []
    assert ov.Core().read_model(str(tmp_path / "out" / "m.xml")).inputs[0].get_element_type() == ov.Type.f32


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """A model server serving each u8_input endpoint's model twice: as published and with u8 inputs."""
    root = tmp_path_factory.mktemp("u8")
    entries = []
    for e in catalog.ENDPOINTS:
        if not e.u8_input:
            continue
        xml = real_model_xml(e.omz_model)
        u8_image_inputs(xml, root / f"{e.task}-u8" / "1")
        entries += [{"name": f"{e.task}-f32", "base_path": str(find_model(e.omz_model)), "plugin_config": F32},
                    {"name": f"{e.task}-u8", "base_path": str(root / f"{e.task}-u8"), "plugin_config": F32}]
    assert len(entries) == 2 * sum(e.u8_input for e in catalog.ENDPOINTS) >= 4
    server = start_server(["--config_path", str(write_config(root / "config.json", entries))], timeout=120)
    yield server
    serving.reset()
    server.stop()


@pytest.mark.parametrize("task", [e.task for e in catalog.ENDPOINTS if e.u8_input])
def test_endpoints_answer_identically_from_a_u8_model(both, task, tmp_path, monkeypatch):
    """The endpoint feeds whole levels, the adapter sends what the model declares: same answer."""
    if task == "handwriting":
        monkeypatch.setenv("HANDWRITTEN_CHARLIST_PATH", str(write_charlist(tmp_path / "chars.txt")))
    endpoint = catalog.by_task(task)
    answers = {}
    for variant in ("f32", "u8"):
        settings = config.model_settings(endpoint.prefix, {f"{endpoint.prefix}_PORT": str(both.port),
                                                           f"{endpoint.prefix}_MODEL_NAME": f"{task}-{variant}"})
        adapter = serving.get_adapter(settings)
        declared = next(iter(adapter.metadata().inputs.values())).dtype
        assert declared == ("uint8" if variant == "u8" else "float32")
        t = get_task(task)
        answers[variant] = [json.dumps(t.run(cv2.imread(str(IMAGES / picture)), adapter, t.parse_options({}),
                                             Timings()).to_dict(), sort_keys=True)
                            for picture in endpoint.sample_images[:2]]
    assert answers["u8"] == answers["f32"]
    assert any(len(a) > 40 for a in answers["u8"])  # the answers have content to compare


@pytest.mark.parametrize("have_openvino", [True, False])
def test_the_stack_converts_where_it_can(monkeypatch, capsys, have_openvino):
    """The stack uploads u8_input endpoints' models with u8 inputs; where openvino is missing (the
    compose file's upload runs in the app image) it uploads them as published, and says so."""
    from scripts.tooling import modelprep, stack, upload

    calls = {}
    monkeypatch.setattr(modelprep, "available", lambda: have_openvino)
    monkeypatch.setattr(upload, "upload_model", lambda cs, name, **kw: calls.setdefault(name, kw) and None
                        or type("R", (), {"uploaded": [], "skipped": []})())
    models = [{"name": e.model_name, "path": Path("/nowhere"), "sides": [], "u8_input": e.u8_input}
              for e in catalog.ENDPOINTS]
    stack.upload_models("UseDevelopmentStorage=true", models)
    assert {n: kw["u8_input"] for n, kw in calls.items()} == \
        {e.model_name: e.u8_input and have_openvino for e in catalog.ENDPOINTS}
    assert ("uploaded as published" in capsys.readouterr().out) is (not have_openvino)
