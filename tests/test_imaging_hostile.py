"""Hostile images inside the byte and pixel limits: decode work, decode memory, orientation.

Work bombs (issue 14 item 1) must be refused before any decoder touches them: the tests replace
Pillow's ``Image.open`` and OpenCV's ``imdecode`` with functions that fail the test, so a refusal
that only comes after decoding (or a decode that takes a minute) cannot pass. Memory (item 2) is
measured as the peak RSS growth of a fresh child process decoding one picture (Linux
``/proc/self/clear_refs`` resets the high-water mark just before). Orientation (item 3) is checked
pixel by pixel for every EXIF orientation and every format that carries one.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest
from PIL import BmpImagePlugin, Image

from shared import budget, imagecheck, imaging
from shared.config import Limits
from shared.errors import InvalidImage, PayloadTooLarge, ServerBusy
from tests import hostile
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LIMITS = Limits(max_body_bytes=20 << 20, max_image_pixels=40_000_000, max_image_side=16384)


@pytest.fixture
def no_decoder(monkeypatch):
    """Fail the test if Pillow opens, or OpenCV decodes, anything."""
    def refuse(*_a, **_k):
        raise AssertionError("a decoder was called for a file that must be refused before decoding")
    monkeypatch.setattr(Image, "open", refuse)
    monkeypatch.setattr(cv2, "imdecode", refuse)


def _sof(data: bytes):
    """(start, end) of the frame header body of a JPEG (its first SOFn segment)."""
    for marker, pos, end in hostile.jpeg_segments(data):
        if marker in (0xC0, 0xC1, 0xC2):
            return pos + 4, end
    raise AssertionError("no SOF segment")


def _refused(data: bytes) -> PayloadTooLarge:
    with pytest.raises(PayloadTooLarge) as info:
        imaging.decode(data, DEFAULT_LIMITS)
    assert info.value.status == 413
    return info.value


# ---- item 1: work that the pixel limit does not bound -------------------------------------------

def test_jpeg_with_12000_scans_is_refused_before_decoding(no_decoder):
    data = hostile.jpeg_scan_bomb()  # the file: 4096x4096, 12,000 scans, ~190 KB
    assert len(data) < 600_000
    err = _refused(data)
    assert err.code == "image_too_complex" and "scans" in err.message


def test_jpeg_scan_bound_is_exactly_the_documented_one():
    limit = imagecheck.MAX_JPEG_SCANS
    ok = imaging.decode(hostile.jpeg_with_scans(limit), DEFAULT_LIMITS)
    assert ok.pixels.shape == (64, 64, 3)
    assert imagecheck.check_jpeg(hostile.jpeg_with_scans(limit)) == limit
    with pytest.raises(PayloadTooLarge):
        imaging.decode(hostile.jpeg_with_scans(limit + 1), DEFAULT_LIMITS)


def test_real_encoders_stay_far_below_the_scan_bound():
    for progressive in (False, True):
        buf = io.BytesIO()
        Image.new("RGB", (300, 200), (1, 2, 3)).save(buf, "JPEG", progressive=progressive)
        scans = imagecheck.check_jpeg(buf.getvalue())
        assert scans == (10 if progressive else 1)
    ok, enc = cv2.imencode(".jpg", np.zeros((40, 40, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and imagecheck.check_jpeg(enc.tobytes()) <= 20


def test_jpeg_with_a_million_segments_is_refused_before_decoding(no_decoder):
    err = _refused(hostile.jpeg_many_segments())
    assert err.code == "image_too_complex"


@pytest.mark.parametrize("build", [hostile.jpeg_photoshop_flood, hostile.jpeg_dqt_flood],
                         ids=["photoshop blocks", "quantization tables"])
def test_jpeg_header_that_pillow_parses_slowly_is_refused_before_decoding(no_decoder, build):
    """Pillow parses APP13 resource blocks and DQT tables one by one in Python: ~1 s per 18 MB."""
    err = _refused(build())
    assert err.code == "image_too_complex"


def test_photoshop_and_quantization_bounds_leave_real_headers_alone():
    block = b"8BIM" + b"\x04\x04" + b"\x00\x00" + struct.pack(">I", 4) + b"abcd"
    payload = b"Photoshop 3.0\x00" + block * 40
    app13 = b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (4, 5, 6)).save(buf, "JPEG", quality=100)  # 2 full tables
    data = buf.getvalue()
    out = imaging.decode(data[:2] + app13 + data[2:], DEFAULT_LIMITS)
    assert out.pixels.shape == (16, 16, 3)


def test_jpeg_scan_bomb_inside_tiff_is_refused_before_decoding(no_decoder):
    _refused(hostile.tiff_jpeg_scan_bomb())


@pytest.mark.parametrize("where", ["before", "after"])
def test_png_with_a_million_chunks_is_refused_before_decoding(no_decoder, where):
    err = _refused(hostile.png_many_chunks(1_000_000, where))
    assert "chunks" in err.message


def test_png_iccp_flood_is_refused_before_decoding(no_decoder):
    _refused(hostile.png_many_iccp())


def test_png_chunk_bound_leaves_libpng_sized_idat_alone():
    """A PNG at the body limit written with libpng's default 8 KiB IDAT chunks is accepted."""
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + noise[y].tobytes() for y in range(1024))
    stream = zlib.compress(raw, 0)
    ihdr = struct.pack(">IIBBBBB", 1024, 1024, 8, 2, 0, 0, 0)
    idats = [hostile.png_chunk(b"IDAT", stream[i:i + 8192]) for i in range(0, len(stream), 8192)]
    png = hostile.PNG_SIGNATURE + hostile.png_chunk(b"IHDR", ihdr) + b"".join(idats) + \
        hostile.png_chunk(b"IEND", b"")
    assert len(idats) > 300
    out = imaging.decode(png, DEFAULT_LIMITS)
    assert np.array_equal(out.pixels, noise[:, :, ::-1])


def test_animated_png_frames_after_the_first_cost_nothing():
    """200,000 frames: only the first is decoded, and its chunks are all that is walked."""
    data = hostile.apng_many_frames()
    assert imagecheck.check_png(data) < 10
    out = imaging.decode(data, DEFAULT_LIMITS)
    assert out.pixels.shape == (64, 64, 3) and out.pixels[0, 0].tolist() == [0x30, 0x20, 0x10]


def test_tiff_of_tiny_tiles_is_refused_before_decoding(no_decoder):
    err = _refused(hostile.tiff_tiny_tiles())
    assert "tiles" in err.message


def test_tiff_with_millions_of_strip_entries_is_refused_before_decoding(no_decoder):
    n = 2_000_000  # 16 MB of offsets and counts: Pillow loops over each in Python (~25 s)
    data = hostile.tiff_bytes(64, 16384, blocks=[bytes(64 * 3)] * n, rows_per_strip=1)
    assert len(data) < DEFAULT_LIMITS.max_body_bytes
    _refused(data)


def test_tiff_directory_of_65000_entries_is_refused_before_decoding(no_decoder):
    tags = [(400 + i, hostile.SHORT, [i]) for i in range(40000)]
    _refused(hostile.tiff_bytes(64, 64, blocks=[bytes(64 * 64 * 3)], extra_tags=tags))


def test_tiff_pages_after_the_first_cost_nothing():
    """20,000 pages: only the first directory (and whether a second exists) is read."""
    data = hostile.tiff_many_pages(20000)
    assert imagecheck.check_tiff(data) == 1
    assert imaging.decode(data, DEFAULT_LIMITS).pixels.shape == (64, 64, 3)


def test_tiff_row_strips_at_the_tallest_side_are_accepted():
    out = imaging.decode(hostile.tiff_row_strips(64, 16384), DEFAULT_LIMITS)
    assert out.pixels.shape == (16384, 64, 3)


def test_tiff_wider_than_8_bytes_per_pixel_is_refused(no_decoder):
    data = hostile.tiff_bytes(8, 8, samples=6, bits=16, blocks=[bytes(8 * 8 * 12)],
                              extra_samples=[0, 0, 0])
    _refused(data)


def test_webp_frame_flood_is_refused_before_decoding(no_decoder):
    """libwebp's demuxer (in Pillow and in OpenCV) walks every frame: ~0.2 s per 20 MB request."""
    err = _refused(hostile.webp_frame_flood())
    assert "frames" in err.message


def test_webp_frame_bound_leaves_real_animations_alone():
    data = hostile.webp_frame_flood(2000, side=32)
    assert imagecheck.check_webp(data) == 2002
    out = imaging.decode(data, DEFAULT_LIMITS)
    assert out.pixels.shape == (32, 32, 3)


def test_old_style_jpeg_in_tiff_is_refused(no_decoder):
    data = hostile.tiff_bytes(8, 8, compression=6, blocks=[bytes(100)])
    with pytest.raises(InvalidImage):
        imaging.decode(data, DEFAULT_LIMITS)


def test_rle_bmp_goes_to_the_c_decoder(monkeypatch):
    """Pillow decodes RLE in Python (~4.5 s for a 19 MB file of one-pixel runs); OpenCV in C."""
    def python_rle(*_a, **_k):
        raise AssertionError("Pillow's Python RLE decoder was used")
    monkeypatch.setattr(BmpImagePlugin.BmpRleDecoder, "decode", python_rle)
    out = imaging.decode(hostile.bmp_rle8_literals(640, 48), DEFAULT_LIMITS)
    assert out.pixels.shape == (48, 640, 3) and (out.pixels == 7).all()


def test_rle_bmp_pixels_match_pillow():
    rng = np.random.default_rng(3)
    codes = bytearray()
    for _y in range(23):
        x = 0
        while x < 37:
            n = int(min(37 - x, rng.integers(1, 9)))
            if n >= 3 and rng.random() < 0.5:  # absolute mode
                codes += bytes([0, n]) + rng.integers(0, 256, n).astype(np.uint8).tobytes() + \
                    (b"\x00" if n % 2 else b"")
            else:
                codes += bytes([n, int(rng.integers(0, 256))])
            x += n
        codes += b"\x00\x00"
    codes += b"\x00\x01"
    palette = b"".join(bytes([i, (i * 7) % 256, (i * 13) % 256, 0]) for i in range(256))
    data = hostile.bmp_bytes(37, 23, 8, 1, bytes(codes), palette=palette)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1]
    assert np.array_equal(imaging.decode(data, DEFAULT_LIMITS).pixels, expected)
    with pytest.raises(InvalidImage):
        imaging.decode(data[: len(data) // 2], DEFAULT_LIMITS)


# ---- item 2: memory ---------------------------------------------------------------------------------

_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from shared import budget, imaging
from shared.config import Limits

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise RuntimeError(key + " missing")

limits = Limits(max_body_bytes=20 << 20, max_image_pixels=40_000_000, max_image_side=16384)
warm, data = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
threads = int(sys.argv[4])
imaging.decode(warm, limits)  # lazy imports and first-use allocations happen here
# room for one decode's peak at a time (as the decode gate's one slot was): the others wait
budget.set_budget(budget.MemoryBudget(total=imaging.decode_peak_bytes(6324 * 6324), wait_s=120,
                                      queue=threads))
import gc, threading
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
base = status("VmRSS")
results = []
def run():
    out = imaging.decode(data, limits)
    results.append(out.pixels.shape)
t = time.perf_counter()
workers = [threading.Thread(target=run) for _ in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps({"growth": status("VmHWM") - base, "shapes": results, "s": time.perf_counter() - t}))
"""


def _small_like(data: bytes) -> bytes:
    """A small picture of the same format (the warm-up decode of the child)."""
    kind = imagecheck.sniff(data)
    buf = io.BytesIO()
    img = Image.new("RGBA" if kind in ("PNG", "WEBP") else "RGB", (32, 32), (9, 8, 7, 200))
    img.save(buf, {"JPEG": "JPEG", "PNG": "PNG", "BMP": "BMP", "WEBP": "WEBP", "TIFF": "TIFF"}[kind])
    if kind == "BMP":  # warm the RLE path too
        return hostile.bmp_rle8_runs(32)
    return buf.getvalue()


def peak_growth(data: bytes, tmp_path: Path, threads: int = 1) -> Dict:
    """Peak RSS growth (bytes) of a fresh process decoding ``data`` in ``threads`` threads."""
    src, warm = tmp_path / "image.bin", tmp_path / "warm.bin"
    src.write_bytes(data)
    warm.write_bytes(_small_like(data))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT), str(warm), str(src), str(threads)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The table (host RSS +2.1 to +2.6 GB per request before), plus the other 40 MP shapes.
MEMORY_SHAPES = {
    "png_rgba_zeros": (hostile.png_rgba_zeros, (6324, 6324)),
    "png16_rgba": (hostile.png16_rgba, (2441, 16384)),
    "png_palette_trns": (hostile.png_palette_trns, (6324, 6324)),
    "png_grey16": (hostile.png_grey16, (6324, 6324)),
    "tiff_deflate_rgb": (hostile.tiff_deflate_rgb, (6324, 6324)),
    "tiff_deflate_rgba16": (hostile.tiff_deflate_rgba16, (2441, 16384)),
    "bmp_rle8_runs": (hostile.bmp_rle8_runs, (6324, 6324)),
    "webp_flat": (hostile.webp_lossless_flat, (6324, 6324)),
    "jpeg_progressive_444": (hostile.jpeg_progressive_444, (6324, 6324)),
    # the largest progressive CMYK JPEG under the coefficient bound (a 40 MP one is refused)
    "jpeg_cmyk_progressive": (lambda: hostile.jpeg_progressive_444(2800, mode="CMYK"), (2800, 2800)),
}
#: Band buffers, allocator rounding and the like, on top of MEMORY_FACTOR x the picture.
SLACK = imaging.DECODE_SLACK


@pytest.mark.parametrize("name", list(MEMORY_SHAPES))
def test_decode_memory_is_bounded_by_the_picture(name, tmp_path):
    build, shape = MEMORY_SHAPES[name]
    result = peak_growth(build(), tmp_path)
    picture = shape[0] * shape[1] * 3
    assert result["shapes"] == [[shape[0], shape[1], 3]]
    print(f"\n{name}: peak +{result['growth'] / 2**20:.0f} MB = {result['growth'] / picture:.2f} x the "
          f"picture ({picture / 2**20:.0f} MB), {result['s']:.2f} s")
    assert result["growth"] <= imaging.MEMORY_FACTOR * picture + SLACK


def test_three_large_decodes_at_once_hold_one_decode_at_a_time(tmp_path):
    """Three concurrent 40 MP RGBA decodes (7.6 GB before): one runs at a time, the others wait."""
    result = peak_growth(hostile.png_rgba_zeros(), tmp_path, threads=3)
    picture = 6324 * 6324 * 3
    assert len(result["shapes"]) == 3
    print(f"\n3 at once: peak +{result['growth'] / 2**20:.0f} MB")
    # one decode in flight at most, plus the two finished pictures their threads still hold
    assert result["growth"] <= (imaging.MEMORY_FACTOR + 2) * picture + SLACK


# ---- exact conversions --------------------------------------------------------------------------

def test_alpha_composite_is_exact_for_every_colour_and_alpha():
    c, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgba = np.stack([c, c, c, a], axis=-1).astype(np.uint8)
    got = imaging._composite_on_white(rgba, bgra=False)[..., 0].astype(int)
    want = np.floor(c * a / 255.0 + 255.0 * (1 - a / 255.0) + 0.5).astype(int)
    assert np.array_equal(got, want)


def test_sixteen_bit_grey_is_rounded_for_every_value():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    ok, buf = cv2.imencode(".png", values)
    assert ok
    out = imaging.decode(buf.tobytes(), DEFAULT_LIMITS).pixels[..., 0].astype(int)
    assert np.array_equal(out, np.floor(values.astype(np.float64) * 255 / 65535 + 0.5).astype(int))


def test_palette_with_partial_alpha_matches_pillow_compositing():
    img = Image.new("P", (16, 16))
    img.putpalette(list(range(0, 256, 1)) * 3)
    img.putdata([i % 256 for i in range(256)])
    trns = bytes(range(0, 256, 16))
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=trns)
    out = imaging.decode(buf.getvalue(), DEFAULT_LIMITS).pixels
    rgba = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGBA")).astype(np.float64)
    want = np.floor(rgba[..., :3] * rgba[..., 3:] / 255 + 255 * (1 - rgba[..., 3:] / 255) + 0.5)
    assert np.array_equal(out, want[..., ::-1].astype(np.uint8))


@pytest.mark.parametrize("kw", [{}, {"lossless": True}])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_webp_matches_pillow(mode, kw):
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 256, (40, 56, len(mode)), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "WEBP", **kw)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGBA")).astype(np.float64)
    want = np.floor(ref[..., :3] * ref[..., 3:] / 255 + 255 * (1 - ref[..., 3:] / 255) + 0.5)
    got = imaging.decode(buf.getvalue(), DEFAULT_LIMITS).pixels
    assert np.array_equal(got, want[..., ::-1].astype(np.uint8))


def test_animated_webp_gives_its_first_frame():
    frames = [Image.new("RGB", (24, 16), c) for c in ((200, 10, 10), (10, 200, 10))]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    out = imaging.decode(buf.getvalue(), DEFAULT_LIMITS).pixels
    assert out.shape == (16, 24, 3) and out[8, 12].tolist() == [10, 10, 200]


# ---- admission (shared.budget; tests/test_memory_budget.py has the rest) ----------------------

MB = 1 << 20
LARGE = budget.LARGE_PIXELS


def test_budget_admits_what_fits_queues_one_refuses_the_rest():
    gate = budget.MemoryBudget(total=100 * MB, wait_s=30, queue=1)
    holding, release, waited = threading.Event(), threading.Event(), threading.Event()

    def first():
        with gate.reserve(80 * MB, LARGE):
            holding.set()
            release.wait(30)

    def second():
        with gate.reserve(80 * MB, LARGE):
            waited.set()

    a = threading.Thread(target=first)
    a.start()
    assert holding.wait(10)
    b = threading.Thread(target=second)
    b.start()
    wait_until(lambda: gate.waiting == 1, "the second large request waits")
    assert not waited.is_set()
    with pytest.raises(ServerBusy) as info:  # a third one: no waiting place, refused at once
        with gate.reserve(80 * MB, LARGE):
            pass
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
    with gate.reserve(20 * MB, 1000):  # what fits the free budget is admitted at once
        pass
    release.set()
    a.join(10)
    b.join(10)
    assert waited.is_set() and gate.held == 0 and gate.waiting == 0


def test_budget_wait_is_bounded_and_reentrant():
    gate = budget.MemoryBudget(total=100 * MB, wait_s=0.2, queue=4)
    with gate.reserve(90 * MB, LARGE):
        with gate.reserve(90 * MB, LARGE):  # the same thread again: already counted, no deadlock
            assert gate.held == 90 * MB
        errors = []

        def other():
            try:
                with gate.reserve(50 * MB, LARGE):
                    pass
            except ServerBusy as exc:
                errors.append(exc)
        t = threading.Thread(target=other)
        t.start()
        t.join(10)  # a ceiling only: refused after wait_s, 0.200 to 0.211 s (two busy loops, 100 rounds)
        assert len(errors) == 1 and errors[0].code == "server_busy"
    assert gate.held == 0


def test_large_decodes_run_at_a_lower_cpu_priority():
    gate = budget.MemoryBudget(total=100 * MB, wait_s=5, queue=1, nice=5)
    me = threading.get_native_id()

    def where():
        tid = threading.get_native_id()
        return tid, os.getpriority(os.PRIO_PROCESS, tid)

    small_tid, small_nice = gate.run(LARGE - 1, where)
    large_tid, large_nice = gate.run(LARGE, where)
    assert small_tid == me and small_nice == os.getpriority(os.PRIO_PROCESS, me)
    assert large_tid != me and large_nice == min(19, small_nice + 5)
    with pytest.raises(ZeroDivisionError):  # errors of the work reach the caller
        gate.run(LARGE, lambda: 1 / 0)
    assert gate.held == 0


def test_refusal_pause_parks_only_while_a_place_is_free(monkeypatch):
    gate = budget.MemoryBudget(total=100 * MB, wait_s=5, queue=1)
    parked, release = threading.Event(), threading.Event()

    def first():
        with gate._cond:
            gate._waiting += 1  # a place taken, as by a waiting request
        parked.set()
        release.wait(10)
        with gate._cond:
            gate._waiting -= 1

    t = threading.Thread(target=first)
    t.start()
    assert parked.wait(10)
    slept = []
    monkeypatch.setattr(budget.time, "sleep", slept.append)
    gate.pause(0.05)  # no place: answers at once
    assert slept == []
    release.set()
    t.join(10)
    gate.pause(0.05)
    assert slept == [0.05] and gate.waiting == 0


def test_budget_refusal_comes_after_the_cheap_checks(monkeypatch):
    """A busy budget answers 503 only for real pictures that need room; bombs still get their
    413, and a picture that fits is decoded."""
    busy = budget.MemoryBudget(total=100 * MB, wait_s=0, queue=0)
    monkeypatch.setattr(budget, "_budget", busy)
    holding, release = threading.Event(), threading.Event()

    def other_request():
        with busy.reserve(60 * MB, LARGE):
            holding.set()
            release.wait(30)

    t = threading.Thread(target=other_request)
    t.start()
    try:
        assert holding.wait(10)
        with pytest.raises(ServerBusy):
            imaging.decode(hostile.png_rgba_zeros(), DEFAULT_LIMITS)
        with pytest.raises(PayloadTooLarge):
            imaging.decode(hostile.jpeg_scan_bomb(), DEFAULT_LIMITS)
        small = imaging.decode(hostile.png_rgba_zeros(64), DEFAULT_LIMITS)
        assert small.pixels.shape == (64, 64, 3) and busy.held == 60 * MB
    finally:
        release.set()
        t.join(10)
    assert busy.held == 0


# ---- item 3: orientation -------------------------------------------------------------------------

def _pattern(h: int = 40, w: int = 60) -> np.ndarray:
    """An asymmetric BGR pattern: quadrant colours plus a marker in the top-left corner."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2:] = (0, 255, 0)
    img[h // 2:, : w // 2] = (0, 0, 255)
    img[h // 2:, w // 2:] = (255, 255, 255)
    img[:4, :6] = (0, 0, 0)
    return img


def _stored_for(upright: np.ndarray, orientation: int) -> np.ndarray:
    """What a camera stores so that a viewer applying ``orientation`` shows ``upright``."""
    stored = {
        1: upright, 2: upright[:, ::-1], 3: upright[::-1, ::-1], 4: upright[::-1],
        5: upright.transpose(1, 0, 2), 6: np.rot90(upright, 1), 7: np.rot90(upright, -1)[::-1],
        8: np.rot90(upright, -1),
    }[orientation]
    return np.ascontiguousarray(stored)


def _upright_of(stored: np.ndarray, orientation: int) -> np.ndarray:
    """The inverse of ``_stored_for``, written with numpy's rotations (independent of imaging)."""
    return np.ascontiguousarray({
        1: stored, 2: stored[:, ::-1], 3: stored[::-1, ::-1], 4: stored[::-1],
        5: stored.transpose(1, 0, 2), 6: np.rot90(stored, -1), 7: np.rot90(stored[::-1], 1),
        8: np.rot90(stored, 1),
    }[orientation])


def _exif(orientation: int, kind: int = 3, endian: str = "<") -> bytes:
    """A minimal EXIF block (TIFF header + one-entry IFD0) with Orientation of type ``kind``."""
    mark = b"II" if endian == "<" else b"MM"
    if kind == 2:  # ASCII "6\0"
        value = str(orientation).encode() + b"\x00\x00\x00"
        entry = struct.pack(endian + "HHI", 0x0112, 2, 2) + value[:4]
    elif kind == 4:  # LONG
        entry = struct.pack(endian + "HHII", 0x0112, 4, 1, orientation)
    else:
        entry = struct.pack(endian + "HHIHH", 0x0112, 3, 1, orientation, 0)
    return mark + struct.pack(endian + "HI", 42, 8) + struct.pack(endian + "H", 1) + entry + b"\x00" * 4


def _encode(stored_bgr: np.ndarray, fmt: str, exif: bytes) -> bytes:
    img = Image.fromarray(stored_bgr[:, :, ::-1].copy())
    buf = io.BytesIO()
    kw = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}, "PNG": {}}[fmt]
    img.save(buf, fmt, exif=b"Exif\x00\x00" + exif, **kw)  # as Pillow's Exif.tobytes() writes it
    return buf.getvalue()


def _tiff(stored_bgr: np.ndarray, orientation: int, compressed: bool, ascii: bool = False) -> bytes:
    if not compressed:
        return hostile.tiff_oriented(stored_bgr[:, :, ::-1], orientation, ascii=ascii)
    buf = io.BytesIO()
    Image.fromarray(stored_bgr[:, :, ::-1].copy()).save(buf, "TIFF", compression="tiff_deflate",
                                                       tiffinfo={0x0112: orientation})
    return buf.getvalue()


def _as_stored(data: bytes) -> np.ndarray:
    """The pixels as the file stores them (OpenCV, orientation ignored): JPEG's reference."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "TIFF-deflate"])
def test_every_orientation_of_every_format_comes_back_upright(fmt, orientation):
    """Pixels and reported width/height; TIFF was turned twice before (issue 14 item 3)."""
    upright = _pattern()
    stored = _stored_for(upright, orientation)
    assert np.array_equal(_upright_of(stored, orientation), upright)
    if fmt.startswith("TIFF"):
        data = _tiff(stored, orientation, compressed=fmt.endswith("deflate"))
    else:
        data = _encode(stored, fmt, _exif(orientation))
    out = imaging.decode(data, Limits(20 << 20, 4_000_000, 4096))
    want = _upright_of(_as_stored(data), orientation) if fmt == "JPEG" else upright
    assert out.orientation == orientation
    assert (out.height, out.width) == upright.shape[:2] == want.shape[:2]
    assert np.array_equal(out.pixels, want)


@pytest.mark.parametrize("orientation", [2, 6, 7])
@pytest.mark.parametrize("name", ["png_palette", "png_rgba", "png_grey16", "png_grey", "bmp"])
def test_orientation_with_every_pixel_conversion(name, orientation):
    """Orientation is applied while converting bands: check it for each converter."""
    upright_rgba = np.zeros((40, 60, 4), np.uint8)
    upright_rgba[..., :3] = _pattern()[:, :, ::-1]
    upright_rgba[..., 3] = 255
    upright_rgba[10:20, 30:50, 3] = 0  # transparent patch (white after compositing)
    stored = _stored_for(upright_rgba, orientation)
    buf = io.BytesIO()
    exif = _exif(orientation)
    if name == "png_palette":
        Image.fromarray(stored).convert("RGB").quantize(8).save(buf, "PNG", exif=exif)
        ref_img = Image.fromarray(upright_rgba).convert("RGB").quantize(8).convert("RGB")
        want = np.asarray(ref_img)[:, :, ::-1]
    elif name == "png_rgba":
        Image.fromarray(stored, "RGBA").save(buf, "PNG", exif=exif)
        want = upright_rgba[..., 2::-1].copy()
        want[upright_rgba[..., 3] == 0] = 255
    elif name == "png_grey16":
        grey = (stored[..., 0].astype(np.uint16) * 257)
        Image.fromarray(grey).save(buf, "PNG", exif=exif)
        want = np.repeat(upright_rgba[..., :1], 3, axis=2)
    elif name == "png_grey":
        Image.fromarray(stored[..., 0], "L").save(buf, "PNG", exif=exif)
        want = np.repeat(upright_rgba[..., :1], 3, axis=2)
    else:  # BMP has no EXIF: stored as is
        Image.fromarray(stored[..., :3]).save(buf, "BMP")
        want = stored[..., 2::-1]
    out = imaging.decode(buf.getvalue(), DEFAULT_LIMITS)
    assert np.array_equal(out.pixels, want)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_orientation_written_as_ascii_text_is_ignored(fmt):
    """Chromium and Firefox honour Orientation only as a SHORT: "6" as text leaves the picture
    as stored (and as the web frontend shows it)."""
    stored = _pattern()
    if fmt == "TIFF":
        data = _tiff(stored, 6, compressed=False, ascii=True)
    else:
        data = _encode(stored, fmt, _exif(6, kind=2))
    out = imaging.decode(data, Limits(20 << 20, 4_000_000, 4096))
    assert out.orientation == 1
    assert np.array_equal(out.pixels, _as_stored(data) if fmt == "JPEG" else stored)


def test_exif_orientation_reader():
    assert imaging.exif_orientation(_exif(6)) == 6
    assert imaging.exif_orientation(b"Exif\x00\x00" + _exif(8, endian=">")) == 8
    assert imaging.exif_orientation(_exif(6, kind=2)) == 1  # ASCII
    assert imaging.exif_orientation(_exif(6, kind=4)) == 1  # LONG: browsers ignore it too
    assert imaging.exif_orientation(_exif(9)) == 1
    assert imaging.exif_orientation(_exif(6)[:20]) == 1  # truncated entry
    assert imaging.exif_orientation(b"") == imaging.exif_orientation(None) == 1
    assert imaging.exif_orientation(b"II*\x00\xff\xff\xff\xff") == 1  # IFD offset out of range


def test_image_too_complex_is_declared_in_the_openapi_document():
    import yaml
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    codes_413 = spec["components"]["schemas"]["Error413Detail"]["properties"]["code"]["enum"]
    codes_503 = spec["components"]["schemas"]["Error503Detail"]["properties"]["code"]["enum"]
    assert "image_too_complex" in codes_413
    assert "server_busy" in codes_503


def test_sixteen_bit_tiff_in_one_huge_strip_is_refused_before_decoding(no_decoder):
    """libtiff would hold the whole 320 MB strip beside Pillow's picture (4 x the picture)."""
    err = _refused(hostile.tiff_deflate_rgba16(rows_per_strip=2441))
    assert err.code == "image_too_complex" and "strip" in err.message


def test_sixteen_bit_tiff_in_strips_and_eight_bit_in_one_strip_are_decoded():
    out = imaging.decode(hostile.tiff_deflate_rgba16(width=4096, height=2048, rows_per_strip=2048 // 3),
                         DEFAULT_LIMITS)
    assert out.pixels.shape == (2048, 4096, 3)
    one_strip = hostile.tiff_bytes(64, 64, blocks=[bytes(64 * 64 * 3)])  # 8-bit: left alone
    assert imaging.decode(one_strip, DEFAULT_LIMITS).pixels.shape == (64, 64, 3)


def test_progressive_cmyk_jpeg_at_the_pixel_limit_is_refused_before_decoding(no_decoder):
    """libjpeg would keep 305 MiB of coefficients for it (3.7 x the picture)."""
    err = _refused(hostile.jpeg_progressive_444(mode="CMYK"))
    assert err.code == "image_too_complex" and "coefficients" in err.message


def test_coefficient_bound_leaves_baseline_cmyk_and_progressive_rgb_alone():
    baseline = io.BytesIO()
    Image.new("CMYK", (640, 480), (10, 40, 80, 20)).save(baseline, "JPEG", quality=90)
    assert imagecheck.check_jpeg(baseline.getvalue()) == 1
    data = hostile.jpeg_progressive_444()  # 3 components, 40 MP: 229 MiB, under the bound
    assert imagecheck.check_jpeg(data) == 10
    assert imagecheck._coefficient_bytes(data, *_sof(data))[0] == 6328 * 6328 * 3 * 2
    assert imagecheck.check_jpeg(hostile.jpeg_progressive_444(2800, mode="CMYK")) == 18  # ~8 MP: ok
    with pytest.raises(PayloadTooLarge):  # control: a little larger is refused
        imagecheck.check_jpeg(hostile.jpeg_progressive_444(3000, mode="CMYK"))
