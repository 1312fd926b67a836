"""README's "Add your own model", followed step by step in a copy of the app, with the README's own
code: a task module, a function folder, a catalog entry and settings make a new endpoint that
answers through the local host and appears in /api/health."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest

from emulators.ovms.launcher import write_config
from tests import modelgen
from tests.fixtures.functions_host import running_stack
from tests.httpclient import request
from tests.precision import F32

ROOT = Path(__file__).resolve().parent.parent
CATALOG_END = "\n)\n# -- end of ENDPOINTS --"


def readme_steps() -> Dict[str, str]:
    """The code blocks of README's "Add your own model" section, by what they are."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Add your own model", 1)[1].split("\n## ", 1)[0]
    blocks: List[str] = [re.sub(r"^ {3}", "", b, flags=re.M) for b in
                         re.findall(r"```(?:python|json)\n(.*?)```", section, flags=re.S)]
    steps = {}
    for block in blocks:
        if block.startswith("# shared/tasks/brightness.py"):
            steps["task"] = block
        elif block.startswith("# HttpTriggerBrightness/__init__.py"):
            steps["function"] = block
        elif block.lstrip().startswith("{"):
            steps["function.json"] = block
        elif block.lstrip().startswith("Endpoint("):
            steps["catalog"] = block
    assert set(steps) == {"task", "function", "function.json", "catalog"}, sorted(steps)
    return steps


def brightness_model(path: Path) -> Path:
    """[1,3,32,32] -> [1,3]: each channel's mean (ReduceMean), written as an OVMS version folder."""
    import openvino as ov
    import openvino.opset8 as ops

    data = ops.parameter([1, 3, 32, 32], np.float32, name="image")
    mean = ops.reduce_mean(data, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    mean.output(0).get_tensor().set_names({"mean"})
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([ops.result(mean)], [data], "brightness"), str(path), compress_to_fp16=False)
    return path


@pytest.fixture(scope="module")
def app_copy(tmp_path_factory) -> Path:
    """A copy of the app with the README's steps applied."""
    steps = readme_steps()
    app = tmp_path_factory.mktemp("app")
    for item in ["shared", "host.json", "local.settings.json", *[p.name for p in ROOT.glob("HttpTrigger*")]]:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, app / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, app / item)
    (app / "shared" / "tasks" / "brightness.py").write_text(steps["task"], encoding="utf-8")
    folder = app / "HttpTriggerBrightness"
    folder.mkdir()
    (folder / "function.json").write_text(steps["function.json"], encoding="utf-8")
    (folder / "__init__.py").write_text(steps["function"], encoding="utf-8")
    catalog = app / "shared" / "catalog.py"
    text = catalog.read_text(encoding="utf-8")
    assert text.count(CATALOG_END) == 1, "shared/catalog.py: ENDPOINTS must end with '# -- end of ENDPOINTS --'"
    catalog.write_text(text.replace(CATALOG_END, "\n" + steps["catalog"].rstrip() + CATALOG_END), encoding="utf-8")
    return app


@pytest.fixture(scope="module")
def stack(app_copy, tmp_path_factory):
    root = tmp_path_factory.mktemp("brightness-models")
    modelgen.write_version(root / "brightness", 1, brightness_model)
    cfg = write_config(root / "config.json", [
        {"name": "brightness", "base_path": str(root / "brightness"), "plugin_config": F32}])

    def env(port: int) -> Dict[str, str]:
        return {"BRIGHTNESS_IPADDRESS": "127.0.0.1", "BRIGHTNESS_PORT": str(port), "HEALTH_CACHE_SECONDS": "0"}
    with running_stack(cfg, env, root, root=app_copy, timeout=60) as (_, host):
        yield host


def test_the_new_endpoint_answers(stack):
    picture = np.empty((48, 64, 3), np.uint8)
    picture[:] = (10, 100, 200)
    png = cv2.imencode(".png", picture)[1].tobytes()
    status, ctype, body = request(stack.url("/api/HttpTriggerBrightness"), png, content_type="image/png")[:3]
    assert status == 200 and ctype.startswith("application/json"), body[:300]
    answer = json.loads(body)
    assert answer["mean_bgr"] == pytest.approx([10.0, 100.0, 200.0], abs=1e-3)
    assert answer["model"] == {"name": "brightness", "version": "1"}
    status, ctype, body = request(stack.url("/api/HttpTriggerBrightness?render=true&format=png"), png,
                                  content_type="image/png")[:3]
    assert status == 200 and ctype == "image/png"
    assert (cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) == (10, 100, 200)).all()


def test_the_new_endpoint_is_in_health(stack):
    status, _, body = request(stack.url("/api/health"), method="GET")[:3]
    models = json.loads(body)["models"]
    assert models["HttpTriggerBrightness"]["ready"] is True, models["HttpTriggerBrightness"]
    assert models["HttpTriggerBrightness"]["name"] == "brightness"
    assert status == 503  # the four standard models are not served here: the app is degraded
    assert models["HttpTriggerHumanPose"]["ready"] is False
