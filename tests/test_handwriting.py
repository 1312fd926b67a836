"""Handwriting pipeline on arrays: preprocessing, greedy CTC, designated characters, line splitting,
options, the result's JSON and the rendered picture. No model server here (see
test_handwriting_serving.py)."""
from __future__ import annotations

import json
from typing import List, Sequence

import cv2
import numpy as np
import pytest

from scripts.tooling.modelsearch import PROJECT_ROOT, find_side_file
from shared.errors import BadModelOutput, InvalidOption
from shared.serving.base import ModelMetadata, TensorInfo
from shared.tasks import ctc, handwriting, textlines
from shared.tasks.handwriting import HandwritingTask

IMAGES = PROJECT_ROOT.parent / "shared" / "images"
SINGLE = IMAGES / "handwritten_japanese_test.png"
MULTI = IMAGES / "japanese_handwriting_multiline.jpeg"
CHARS = list("abcde")


def one_hot(seq: Sequence[int], classes: int = len(CHARS) + 1, hi: float = 10.0) -> np.ndarray:
    out = np.zeros((len(seq), classes), np.float32)
    out[np.arange(len(seq)), seq] = hi
    return out


# ---- greedy CTC -------------------------------------------------------------------------------------

def test_ctc_collapses_repeats_and_keeps_repeats_split_by_blank():
    # a a _ a b b _ _ c   -> "aabc"
    d = ctc.greedy_decode(one_hot([1, 1, 0, 1, 2, 2, 0, 0, 3]), CHARS)
    assert d.text == "aabc"
    assert d.steps == (0, 3, 4, 8)
    assert d.replaced == 0


def test_ctc_all_blank_and_empty():
    assert ctc.greedy_decode(one_hot([0] * 7), CHARS).text == ""
    assert ctc.greedy_decode(one_hot([0] * 7), CHARS).confidence == 0.0
    assert ctc.greedy_decode(np.zeros((0, 6), np.float32), CHARS).text == ""


def test_ctc_confidence_is_softmax_max_over_the_run():
    scores = np.zeros((4, 6), np.float32)
    scores[0, 1] = 1.0   # a, weak
    scores[1, 1] = 3.0   # a again (same run), stronger
    scores[2, 0] = 5.0   # blank
    scores[3, 2] = 2.0   # b
    d = ctc.greedy_decode(scores, CHARS)
    assert d.text == "ab"

    def p(row, k):
        e = np.exp(row - row.max())
        return e[k] / e.sum()
    assert d.confidences[0] == pytest.approx(p(scores[1].astype(np.float64), 1))
    assert d.confidences[1] == pytest.approx(p(scores[3].astype(np.float64), 2))
    assert d.confidence == pytest.approx(np.sqrt(d.confidences[0] * d.confidences[1]))


def test_ctc_accepts_probabilities_and_log_probabilities():
    probs = np.full((3, 6), 0.02, np.float32)
    probs[[0, 1, 2], [1, 0, 2]] = 0.9
    d = ctc.greedy_decode(probs, CHARS)
    assert d.text == "ab" and d.confidences == pytest.approx((0.9, 0.9))
    d = ctc.greedy_decode(np.log(probs / probs.sum(1, keepdims=True)), CHARS)
    assert d.confidences == pytest.approx((0.9 / 1.0, 0.9 / 1.0), rel=1e-6)


def test_ctc_reads_without_copying_or_writing():
    scores = one_hot([1, 0, 2])
    scores.setflags(write=False)
    assert ctc.greedy_decode(scores, CHARS).text == "ab"


def test_ctc_rejects_class_count_mismatch():
    with pytest.raises(ValueError):
        ctc.greedy_decode(one_hot([1, 0], classes=5), CHARS)


def test_designated_characters_replace_from_top_k_like_the_demo():
    scores = np.zeros((3, 6), np.float32)
    scores[0] = [0, 9, 1, 5, 0, 0]   # a (not allowed) -> c is the best allowed in the top k
    scores[1] = [9, 0, 0, 0, 0, 0]   # blank
    scores[2] = [0, 0, 0, 0, 0, 9]   # e allowed? no; nothing allowed among top-2 -> kept as is
    mask, missing = ctc.allowed_mask(CHARS, "cdz")
    assert missing == ["z"]
    d = ctc.greedy_decode(scores, CHARS, mask, top_k=2)
    assert d.text == "ce"
    assert d.replaced == 1
    e = np.exp(scores[0] - scores[0].max())
    assert d.confidences[0] == pytest.approx(e[3] / e.sum())
    # with a deeper top-k, d (score 0 ties) is found for the last step too
    d = ctc.greedy_decode(scores, CHARS, mask, top_k=6)
    assert d.text[0] == "c" and d.text[1] in "cd"


def test_designated_mode_uses_emissions_not_raw_steps():
    # a a a (one emission) -> replaced once; repeats are collapsed before replacement, as in the demo
    scores = one_hot([1, 1, 1, 0, 1])
    scores[:, 2] = 5.0
    mask, _ = ctc.allowed_mask(CHARS, "b")
    assert ctc.greedy_decode(scores, CHARS, mask).text == "bb"


def test_allowed_matches_full_width_list_entries():
    chars = ["Ａ", "１", "あ"]
    mask, missing = ctc.allowed_mask(chars, "A1")
    assert mask.tolist() == [False, True, True, False] and missing == []


# ---- preprocessing ------------------------------------------------------------------------------------

def _reference_demo(gray: np.ndarray, height: int, width: int) -> np.ndarray:
    """The demo's own steps, written independently: INTER_AREA to height, edge pad right/bottom."""
    tw = int(round(height * gray.shape[1] / gray.shape[0]))
    rsz = cv2.resize(gray, (tw, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.pad(rsz, ((0, 0), (0, width - tw)), mode="edge")


def test_line_input_matches_the_demo():
    gray = cv2.imread(str(SINGLE), cv2.IMREAD_GRAYSCALE)
    out, scale = textlines.line_input(gray, 96, 2000)
    assert out.shape == (96, 2000) and out.dtype == np.float32
    np.testing.assert_array_equal(out, _reference_demo(gray, 96, 2000))
    assert scale == pytest.approx(96 / 146)


def test_line_input_scales_a_long_line_down_and_pads_the_bottom():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (50, 3000), dtype=np.uint8)
    gray[:, -10:] = 7  # the end of the line must survive (no silent crop)
    out, scale = textlines.line_input(gray, 96, 2000)
    assert scale == pytest.approx(2000 / 3000)
    assert out.shape == (96, 2000)
    rsz = cv2.resize(gray, (2000, 33), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out[:33], rsz)
    np.testing.assert_array_equal(out[33:], np.repeat(rsz[-1:], 96 - 33, axis=0))
    assert (out[:33, -4:] == 7).all()


def test_inversion_of_light_on_dark():
    img = np.full((60, 200, 3), 20, np.uint8)
    cv2.putText(img, "HELLO", (5, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (240, 240, 240), 3)
    gray, inverted = textlines.dark_on_light(img)
    assert inverted and gray[0, 0] == 235
    gray, inverted = textlines.dark_on_light(255 - img)
    assert not inverted and gray[0, 0] == 235


# ---- line splitting ------------------------------------------------------------------------------------

def _page(lines: List[str], size=(700, 900), skew: float = 0.0, noise: float = 0.0,
          rules: bool = False, seed: int = 0) -> np.ndarray:
    h, w = size
    img = np.full((h, w), 235, np.uint8)
    pitch = h // (len(lines) + 1)
    if rules:
        for k in range(len(lines) + 1):
            y = int(pitch * (k + 0.5)) + pitch // 2 - 10
            cv2.line(img, (0, y), (w, y), 170, 2)
    for k, text in enumerate(lines):
        cv2.putText(img, text, (40, pitch * (k + 1)), cv2.FONT_HERSHEY_SIMPLEX, 2.0, 30, 5)
    if skew:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), skew, 1.0)
        img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if noise:
        rng = np.random.default_rng(seed)
        img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
        specks = rng.integers(0, [h, w], (30, 2))
        img[specks[:, 0], specks[:, 1]] = 0
    return img


@pytest.mark.parametrize("kw", [{}, {"skew": 2.5}, {"skew": -3.0}, {"noise": 12.0}, {"rules": True},
                                {"rules": True, "skew": 1.5, "noise": 8.0}])
def test_splits_generated_pages_into_their_lines(kw):
    texts = ["HAGIJ 123", "XKCD plot", "Tokyo 2024", "agq yjp"]
    layout = textlines.find_lines(_page(texts, **kw))
    assert len(layout.lines) == len(texts)
    tops = [b.y0 for b in layout.lines]
    assert tops == sorted(tops)
    for box in layout.lines:
        assert box.x0 < 80 and box.x1 > 250


@pytest.mark.parametrize("text", ["HELLO", "= = =", "agjpqy", "i j : ;"])
def test_one_line_is_never_split(text):
    img = np.full((300, 900), 250, np.uint8)
    cv2.putText(img, text, (30, 180), cv2.FONT_HERSHEY_SIMPLEX, 3.0, 0, 8)
    assert len(textlines.find_lines(img).lines) == 1


def test_a_character_made_of_bars_is_one_line():
    # 三: three horizontal strokes with wide gaps between them
    img = np.full((400, 400), 255, np.uint8)
    for y, (x0, x1) in zip((80, 190, 310), ((110, 290), (130, 270), (70, 330))):
        cv2.line(img, (x0, y), (x1, y), 0, 14)
    assert len(textlines.find_lines(img).lines) == 1


def test_blank_and_textured_paper_have_no_lines():
    assert textlines.find_lines(np.full((300, 500), 255, np.uint8)).lines == ()
    rng = np.random.default_rng(3)
    paper = np.clip(220 + rng.normal(0, 6, (600, 800)), 0, 255).astype(np.uint8)
    paper = (paper * np.linspace(0.85, 1.0, 800)[None, :]).astype(np.uint8)  # uneven light
    assert textlines.find_lines(paper).lines == ()


def test_the_demo_image_is_one_line():
    gray = cv2.imread(str(SINGLE), cv2.IMREAD_GRAYSCALE)
    layout = textlines.find_lines(gray)
    assert len(layout.lines) == 1
    box = layout.lines[0]
    assert box.x0 <= 5 and box.x1 >= 560  # 菊 starts at the left edge, 子 ends near x=570


def test_the_lined_paper_photo_has_eight_lines():
    img = cv2.imread(str(MULTI))
    gray, inverted = textlines.dark_on_light(img)
    assert not inverted
    layout = textlines.find_lines(gray)
    assert len(layout.lines) == 8
    boxes = layout.lines
    for a, b in zip(boxes, boxes[1:]):
        assert a.y0 < b.y0 and (a.y0 + a.y1) / 2 < b.y0  # top to bottom, no line inside another
    # every line starts where its handwriting does (110..190 px), not at a rule fragment or speck
    assert all(100 <= b.x0 <= 200 for b in boxes)
    # and inverted (light on dark), the same page still gives 8 lines
    inv_gray, inverted = textlines.dark_on_light(255 - img)
    assert inverted and len(textlines.find_lines(inv_gray).lines) == 8


# ---- the task on arrays ----------------------------------------------------------------------------

META = ModelMetadata("hw", "1", {"actual_input": TensorInfo("actual_input", (1, 1, 96, 2000), "float32")},
                     {"output": TensorInfo("output", (186, 1, 4442), "float32")})


def test_options():
    task = HandwritingTask()
    assert task.parse_options({}) == handwriting.HandwritingOptions("auto", None, 20)
    o = task.parse_options({"lines": "SINGLE", "allowed": "0123", "top_k": "5"})
    assert (o.lines, o.allowed, o.top_k) == ("single", "0123", 5)
    assert task.parse_options({"allowed": "  "}).allowed is None
    for bad in ({"lines": "many"}, {"allowed": 5}, {"top_k": 0}, {"top_k": "x"}, {"allowed": "x" * 6000}):
        with pytest.raises(InvalidOption):
            task.parse_options(bad)


class _FakeAdapter:
    """Answers every inference with ``scores`` and records the inputs."""

    def __init__(self, scores: np.ndarray, meta: ModelMetadata = META) -> None:
        self.scores, self.meta, self.inputs = scores, meta, []

    def metadata(self):
        return self.meta

    def infer(self, inputs):
        self.inputs.append(inputs)
        out = self.scores.copy()
        out.setflags(write=False)
        return {"output": out}


@pytest.fixture
def charlist(monkeypatch, tmp_path) -> List[str]:
    path = find_side_file("handwritten-japanese-recognition-0001", "kondate_nakayosi.txt")
    if path is None:
        pytest.skip("needs_real_models: kondate_nakayosi.txt")
    monkeypatch.setenv("HANDWRITTEN_CHARLIST_PATH", str(path))
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


def _logits(charlist: List[str], text: str) -> np.ndarray:
    idx = {c: i + 1 for i, c in enumerate(charlist)}
    seq: List[int] = []
    for c in text:
        seq += [idx[c], idx[c], 0]
    seq += [0] * (186 - len(seq))
    out = np.zeros((186, 1, 4442), np.float32)
    out[np.arange(186), 0, seq] = 10.0
    return out


def test_run_single_line_exact(charlist):
    from shared.timings import Timings

    task = HandwritingTask()
    gray = cv2.imread(str(SINGLE), cv2.IMREAD_GRAYSCALE)
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    adapter = _FakeAdapter(_logits(charlist, "菊池朋子"))
    timings = Timings()
    result = task.run(img, adapter, task.parse_options({"lines": "single"}), timings)
    d = result.to_dict()
    assert d["text"] == "菊池朋子" and "lines" not in d and d["inverted"] is False
    assert [c["char"] for c in d["characters"]] == list("菊池朋子")
    p = np.exp(10.0) / (np.exp(10.0) + 4441)  # winning logit 10, the 4441 others 0
    assert [c["confidence"] for c in d["characters"]] == pytest.approx([p] * 4, abs=1e-6)
    assert d["confidence"] == pytest.approx(p, abs=1e-6)
    json.dumps(d)
    # the model received exactly the demo's preprocessing of the whole picture
    x = adapter.inputs[0]["actual_input"]
    assert x.shape == (1, 1, 96, 2000) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, 0], _reference_demo(gray, 96, 2000))
    assert {"preprocess", "inference", "postprocess"} <= set(timings.to_dict())


def test_run_auto_splits_and_reports_lines(charlist):
    from shared.timings import Timings

    task = HandwritingTask()
    img = cv2.imread(str(MULTI))
    adapter = _FakeAdapter(_logits(charlist, "色は"))
    result = task.run(img, adapter, task.parse_options({}), Timings())
    d = result.to_dict()
    assert len(adapter.inputs) == 8 and len(d["lines"]) == 8
    assert d["text"] == "\n".join(["色は"] * 8)
    assert sorted({c["line"] for c in d["characters"]}) == list(range(8))
    for line in d["lines"]:
        x, y, w, h = line["box"]
        assert w > 0 and h > 0 and line["text"] == "色は"
    # character x positions fall inside their line's box
    for c in d["characters"]:
        x, y, w, h = d["lines"][c["line"]]["box"]
        assert x <= c["x"] < x + w


def test_run_no_ink_is_empty_text_without_inference(charlist):
    from shared.timings import Timings

    task = HandwritingTask()
    adapter = _FakeAdapter(_logits(charlist, "色"))
    result = task.run(np.full((200, 600, 3), 255, np.uint8), adapter, task.parse_options({}), Timings())
    assert result.to_dict()["text"] == "" and result.to_dict()["confidence"] == 0.0
    assert adapter.inputs == []


def test_run_allowed_digits(charlist):
    from shared.timings import Timings

    task = HandwritingTask()
    scores = _logits(charlist, "色")
    one = charlist.index("1") + 1
    scores[0, 0, one] = 6.0  # "1" is second best where 色 is emitted
    adapter = _FakeAdapter(scores)
    img = cv2.imread(str(SINGLE))
    r = task.run(img, adapter, task.parse_options({"allowed": "0123456789"}), Timings())
    assert r.text == "1"
    with pytest.raises(InvalidOption):
        task.run(img, adapter, task.parse_options({"allowed": "\u2603"}), Timings())


@pytest.mark.parametrize("outputs,meta_out", [
    ({"other": np.zeros((186, 1, 4442), np.float32)}, "output"),
    ({"output": np.zeros((186, 2, 4442), np.float32)}, "output"),
    ({"output": np.zeros((186, 1, 100), np.float32)}, "output"),
    ({"output": np.zeros((186,), np.float32)}, "output"),
])
def test_bad_model_output_is_502(charlist, outputs, meta_out):
    task = HandwritingTask()
    ctx = handwriting._LineInput(textlines.LineBox(0, 0, 100, 50), 1.0)
    with pytest.raises(BadModelOutput):
        task.postprocess(outputs, ctx, META, task.parse_options({}))


def test_nan_output_is_502(charlist):
    task = HandwritingTask()
    scores = _logits(charlist, "色")
    scores[0, 0, :] = np.nan
    ctx = handwriting._LineInput(textlines.LineBox(0, 0, 100, 50), 1.0)
    with pytest.raises(BadModelOutput):
        task.postprocess({"output": scores}, ctx, META, task.parse_options({}))


def test_bad_input_metadata_is_502():
    task = HandwritingTask()
    meta = ModelMetadata("hw", "1", {"x": TensorInfo("x", (1, 1, -1, -1), "float32")}, {})
    with pytest.raises(BadModelOutput):
        task.bound(meta)


# ---- rendering -------------------------------------------------------------------------------------------

def _result(texts: List[str]) -> handwriting.HandwritingResult:
    lines = tuple(handwriting.LineResult(t, 0.9, (10, 10 + 60 * i, 300, 50),
                                         tuple(handwriting.Character(c, 0.9, i, 20) for c in t))
                  for i, t in enumerate(texts))
    return handwriting.HandwritingResult(lines, False, len(lines) > 1)


def test_render_draws_japanese_text_under_the_picture():
    assert handwriting.japanese_font_path() is not None, "pip install pylopdf-fonts-cjk (requirements.txt)"
    img = np.full((146, 850, 3), 200, np.uint8)
    pic = HandwritingTask().render(img, _result(["菊池朋子"]), None)
    assert pic.shape[1] == 850 and pic.shape[0] > 146
    np.testing.assert_array_equal(pic[:146], img)
    panel = pic[146:]
    assert (panel < 128).any()  # text drawn
    # glyphs differ per character (not tofu boxes): compare two single-character renders
    a = HandwritingTask().render(img, _result(["菊"]), None)[146:]
    b = HandwritingTask().render(img, _result(["池"]), None)[146:]
    assert a.shape == b.shape and (a != b).any()


def test_render_multi_line_frames_lines_and_falls_back_without_font(monkeypatch):
    img = np.full((300, 400, 3), 255, np.uint8)
    res = _result(["色は", "散り"])
    pic = HandwritingTask().render(img, res, None)
    assert pic.shape[0] > 300 and (pic[:300] != 255).any()  # frames drawn on the picture
    monkeypatch.setattr(handwriting, "_font", lambda size: None)
    pic = HandwritingTask().render(img, res, None)
    assert pic.shape[0] > 300 and (pic[300:] < 200).any()
