"""Handwriting through the local model server, in-process and over HTTP (the local Functions host).

- A constant generated model whose output spells a known string (repeats with and without a blank
  between them, designated characters, a character outside the list) decodes exactly.
- A probe model whose output spells where the line it receives is dark checks, over HTTP, that
  line splitting, cropping, resizing and padding deliver each line to the model.
- The real topology with placeholder weights (../shared/models-synthetic) answers over HTTP with
  the demo image and the lined-paper photo: shape and plumbing, not accuracy.
- Bad input is a 4xx JSON answer; a blank picture is empty text.
"""
from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import pytest

from emulators.ovms.launcher import start_server, write_config
from scripts.tooling.modelsearch import PROJECT_ROOT, find_model, find_side_file
from shared import config, serving
from shared.timings import Timings
from shared.tasks.handwriting import HandwritingTask
from tests import modelgen
from tests.fixtures.functions_host import start_functions_host
from tests.httpclient import request
from tests.modelgen.handwriting_probe import handwriting_probe_model
from tests.precision import F32
from tests.settings import endpoint_env

IMAGES = PROJECT_ROOT.parent / "shared" / "images"
SINGLE = IMAGES / "handwritten_japanese_test.png"
MULTI = IMAGES / "japanese_handwriting_multiline.jpeg"
REAL = "handwritten-japanese-recognition-0001"


def _charlist_path() -> Path:
    path = find_side_file(REAL, "kondate_nakayosi.txt")
    if path is None:
        pytest.skip("needs_real_models: kondate_nakayosi.txt beside handwritten-japanese-recognition-0001")
    return path


def _chars() -> List[str]:
    return [c for c in _charlist_path().read_text(encoding="utf-8").split("\n") if c]


def _gen_logits(chars: List[str]) -> np.ndarray:
    """菊 菊 _ 菊 池 池 池 _ _ 子 (then blanks): "菊菊池子"; 池's steps have 子 second best."""
    idx = {c: i + 1 for i, c in enumerate(chars)}
    seq = [idx["菊"], idx["菊"], 0, idx["菊"], idx["池"], idx["池"], idx["池"], 0, 0, idx["子"]]
    seq += [0] * (186 - len(seq))
    out = np.zeros((186, 1, 4442), np.float32)
    out[np.arange(186), 0, seq] = 10.0
    out[4:7, 0, idx["子"]] = 8.0
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    chars = _chars()
    root = tmp_path_factory.mktemp("hw-models")
    gen = modelgen.write_version(root / "hw-gen", 1, modelgen.handwriting_model, _gen_logits(chars))
    probe = modelgen.write_version(root / "hw-probe", 1, handwriting_probe_model, chars.index("1") + 1)
    entries = [{"name": "hw-gen", "base_path": str(gen), "plugin_config": F32},
               {"name": "hw-probe", "base_path": str(probe), "plugin_config": F32}]
    real = find_model(REAL)
    if real is not None:
        entries.append({"name": "hw-real", "base_path": str(real)})
    cfg = write_config(tmp_path_factory.mktemp("ovms") / "config.json", entries)
    srv = start_server(["--config_path", str(cfg)], timeout=120)
    yield srv
    srv.stop()


def _env(port: int, model: str) -> Dict[str, str]:
    return endpoint_env("HANDWRITTEN", port, model, HANDWRITTEN_CHARLIST_PATH=str(_charlist_path()))


def _run(server, monkeypatch, model: str, image: np.ndarray, options: dict):
    for k, v in _env(server.port, model).items():
        monkeypatch.setenv(k, v)
    serving.reset()
    try:
        task = HandwritingTask()
        adapter = serving.get_adapter(config.model_settings("HANDWRITTEN"))
        return task.run(image, adapter, task.parse_options(options), Timings())
    finally:
        serving.reset()


def _blocks(rows: List[int], h: int = 400, w: int = 900) -> np.ndarray:
    """Dark bars (strokes of a line's height) on white: row k holds rows[k] bars, well apart."""
    img = np.full((h, w, 3), 255, np.uint8)
    pitch = h // (len(rows) + 1)
    side = pitch // 2
    for k, n in enumerate(rows):
        y = pitch * (k + 1) - side // 2
        for j in range(n):
            x = 40 + j * 3 * side
            img[y:y + side, x:x + side // 5] = 0
    return img


# ---- in-process through the gRPC adapter ---------------------------------------------------------

def test_generated_string_exact(server, monkeypatch):
    r = _run(server, monkeypatch, "hw-gen", cv2.imread(str(SINGLE)), {"lines": "single"}).to_dict()
    assert r["text"] == "菊菊池子"
    assert [c["char"] for c in r["characters"]] == list("菊菊池子")
    e10, e8 = np.exp(10.0), np.exp(8.0)
    p_plain = e10 / (e10 + 4441)
    p_pond = e10 / (e10 + e8 + 4440)   # 池 rows also carry 子 at 8
    assert [c["confidence"] for c in r["characters"]] == pytest.approx([p_plain, p_plain, p_pond, p_plain],
                                                                       abs=1e-5)
    # designated characters: 池 is not allowed, 子 is its best allowed alternative; "X" is unknown
    r = _run(server, monkeypatch, "hw-gen", cv2.imread(str(SINGLE)),
             {"lines": "single", "allowed": "菊子X"}).to_dict()
    assert r["text"] == "菊菊子子"
    assert r["characters"][2]["confidence"] == pytest.approx(e8 / (e10 + e8 + 4440), abs=1e-5)


def test_probe_sees_each_line(server, monkeypatch):
    r = _run(server, monkeypatch, "hw-probe", _blocks([3, 2, 5]), {})
    assert r.text == "111\n11\n11111"
    # lines=single sends the whole picture: a tight line reads, the same line on a tall page is
    # too small a share of each column to read (which is why lines=auto crops)
    r = _run(server, monkeypatch, "hw-probe", _blocks([3])[140:260], {"lines": "single"})
    assert r.text == "111"
    r = _run(server, monkeypatch, "hw-probe", _blocks([3]), {"lines": "single"})
    assert r.text == ""


# ---- over HTTP ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hosts(server, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("hosts")
    names = ["hw-gen", "hw-probe"] + (["hw-real"] if find_model(REAL) else [])
    with ThreadPoolExecutor(len(names)) as pool:
        futures = {n: pool.submit(start_functions_host, env=_env(server.port, n), log_dir=log_dir, timeout=90)
                   for n in names}
        started = {n: f.result() for n, f in futures.items()}
    yield started
    for h in started.values():
        h.stop()


def _post(host, body: bytes, query: str = "", ctype: str = "image/png",
          headers: Optional[Dict[str, str]] = None, method: str = "POST") -> Tuple[int, str, bytes]:
    url = host.url("/api/HttpTriggerHandwritten") + (f"?{query}" if query else "")
    return request(url, body, method=method, content_type=ctype, headers=headers, timeout=120)[:3]


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def test_http_generated_exact(hosts):
    status, ctype, body = _post(hosts["hw-gen"], SINGLE.read_bytes(), "lines=single")
    assert status == 200 and ctype.startswith("application/json"), body[:300]
    data = json.loads(body)
    assert data["text"] == "菊菊池子" and data["model"] == {"name": "hw-gen", "version": "1"}
    assert data["image"] == {"width": 850, "height": 146}
    payload = json.dumps({"image": base64.b64encode(SINGLE.read_bytes()).decode(), "allowed": "菊子",
                          "lines": "single"}).encode()
    status, _, body = _post(hosts["hw-gen"], payload, ctype="application/json")
    assert status == 200 and json.loads(body)["text"] == "菊菊子子"


def test_http_probe_lines_and_photo(hosts):
    status, _, body = _post(hosts["hw-probe"], _png(_blocks([2, 4])))
    data = json.loads(body)
    assert status == 200 and data["text"] == "11\n1111"
    assert [line["text"] for line in data["lines"]] == ["11", "1111"]
    status, _, body = _post(hosts["hw-probe"], MULTI.read_bytes(), ctype="image/jpeg")
    data = json.loads(body)
    assert status == 200 and len(data["lines"]) == 8, body[:300]
    status, _, body = _post(hosts["hw-probe"], SINGLE.read_bytes())
    data = json.loads(body)
    assert status == 200 and "lines" not in data and "\n" not in data["text"]


def test_http_light_on_dark_is_inverted(hosts):
    status, _, body = _post(hosts["hw-probe"], _png(255 - _blocks([3])))
    data = json.loads(body)
    assert status == 200 and data["text"] == "111" and data["inverted"] is True


def test_http_no_ink_is_empty_text(hosts):
    status, _, body = _post(hosts["hw-probe"], _png(np.full((200, 600, 3), 255, np.uint8)))
    assert status == 200
    data = json.loads(body)
    assert data["text"] == "" and data["characters"] == [] and data["confidence"] == 0.0


def test_http_render_png(hosts):
    status, ctype, body = _post(hosts["hw-gen"], SINGLE.read_bytes(), "render=true&format=png")
    assert status == 200 and ctype == "image/png"
    pic = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert pic.shape[1] == 850 and pic.shape[0] > 146
    src = cv2.imread(str(SINGLE))
    assert np.abs(pic[:146].astype(int) - src).max() <= 1   # the picture is on top, untouched
    assert (pic[146:] < 128).any()                          # the text is written under it


@pytest.mark.parametrize("query,body,ctype,status,code", [
    ("", b"not an image at all", "image/png", 415, "invalid_image"),
    ("", b"", "image/png", 400, "missing_image"),
    ("lines=three", None, "image/png", 400, "invalid_option"),
    ("top_k=0", None, "image/png", 400, "invalid_option"),
    ("allowed=%E2%98%83", None, "image/png", 400, "invalid_option"),   # only characters the model lacks
    ("", b'{"image": "@@@"}', "application/json", 400, "invalid_base64"),
])
def test_http_bad_input_is_4xx_json(hosts, query, body, ctype, status, code):
    got, rtype, data = _post(hosts["hw-gen"], SINGLE.read_bytes() if body is None else body, query, ctype)
    assert got == status and rtype.startswith("application/json"), data[:300]
    assert json.loads(data)["error"]["code"] == code


def test_http_real_topology_placeholder_weights(hosts):
    if "hw-real" not in hosts:
        pytest.skip(f"needs_real_models: {REAL} (real or synthetic topology)")
    status, _, body = _post(hosts["hw-real"], SINGLE.read_bytes())
    assert status == 200, body[:300]
    data = json.loads(body)
    assert data["model"]["name"] == "hw-real"
    assert "lines" not in data and isinstance(data["text"], str) and "\n" not in data["text"]
    assert 0.0 <= data["confidence"] <= 1.0
    assert len(data["characters"]) == len(data["text"])
    assert all(0.0 < c["confidence"] <= 1.0 and 0 <= c["x"] < 850 for c in data["characters"])
    assert data["timing_ms"]["inference"] > 0
