"""shared.imaging: formats, orientation, transparency, limits, truncation, encoding."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from shared import imaging
from shared.config import Limits
from shared.errors import ImageTooLarge, InvalidImage

LIMITS = Limits(max_body_bytes=20 << 20, max_image_pixels=4_000_000, max_image_side=4096)


def _pattern(h: int = 48, w: int = 64) -> np.ndarray:
    """A BGR test pattern with distinct colours per quadrant (orientation is visible)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)      # top-left blue
    img[: h // 2, w // 2:] = (0, 255, 0)       # top-right green
    img[h // 2:, : w // 2] = (0, 0, 255)       # bottom-left red
    img[h // 2:, w // 2:] = (255, 255, 255)    # bottom-right white
    return img


def _pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _rgb(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(bgr[:, :, ::-1].copy())


@pytest.mark.parametrize("fmt,kw,tol", [
    ("PNG", {}, 0), ("BMP", {}, 0), ("TIFF", {}, 0), ("WEBP", {"lossless": True}, 0),
    ("JPEG", {"quality": 95}, 12),
])
def test_formats_decode_to_bgr(fmt, kw, tol):
    src = _pattern()
    out = imaging.decode(_pil_bytes(_rgb(src), fmt, **kw), LIMITS)
    assert out.pixels.dtype == np.uint8 and out.pixels.shape == (48, 64, 3)
    assert out.format == fmt
    # channel order: BGR, compared in the quadrant centres
    for y, x in ((12, 16), (12, 48), (36, 16), (36, 48)):
        assert np.abs(out.pixels[y, x].astype(int) - src[y, x].astype(int)).max() <= tol


def test_grayscale_becomes_three_channels():
    gray = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)
    out = imaging.decode(_pil_bytes(Image.fromarray(gray, "L"), "PNG"), LIMITS)
    assert out.pixels.shape == (8, 8, 3)
    assert (out.pixels[..., 0] == gray).all() and (out.pixels[..., 2] == gray).all()


def test_sixteen_bit_png_is_scaled_to_eight_bits():
    gray16 = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    ok, buf = cv2.imencode(".png", gray16)
    assert ok
    out = imaging.decode(buf.tobytes(), LIMITS)
    assert out.pixels[0, :, 0].tolist() == [0, 128, 255]


def test_sixteen_bit_colour_png():
    bgr16 = (_pattern(8, 8).astype(np.uint16) * 257)
    ok, buf = cv2.imencode(".png", bgr16)
    out = imaging.decode(buf.tobytes(), LIMITS)
    assert np.array_equal(out.pixels, _pattern(8, 8))


def test_alpha_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black (a canvas background)
    rgba[1, 1] = (0, 0, 0, 255)           # one opaque black stroke pixel
    rgba[2, 2] = (255, 0, 0, 128)         # half-transparent red
    out = imaging.decode(_pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), LIMITS).pixels
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[1, 1].tolist() == [0, 0, 0]
    assert out[2, 2].tolist() == [127, 127, 255]  # BGR: red over white at 50 %


def test_palette_with_transparency():
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    img.putpixel((3, 3), 1)
    out = imaging.decode(_pil_bytes(img, "PNG", transparency=0), LIMITS).pixels
    assert out[0, 0].tolist() == [255, 255, 255] and out[3, 3].tolist() == [0, 0, 255]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    """Each EXIF orientation, written as a phone would, comes back upright."""
    upright = _pattern(40, 60)
    # What the camera stored: the inverse of the transform the viewer applies.
    stored = {
        1: upright, 2: upright[:, ::-1], 3: upright[::-1, ::-1], 4: upright[::-1],
        5: upright.transpose(1, 0, 2), 6: np.rot90(upright, 1), 7: np.rot90(upright, -1)[::-1],
        8: np.rot90(upright, -1),
    }[orientation]
    img = _rgb(np.ascontiguousarray(stored))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _pil_bytes(img, "JPEG", quality=95, exif=exif.tobytes())
    out = imaging.decode(data, LIMITS)
    assert out.orientation == orientation
    assert out.pixels.shape == upright.shape
    for y, x in ((10, 15), (10, 45), (30, 15), (30, 45)):
        assert np.abs(out.pixels[y, x].astype(int) - upright[y, x].astype(int)).max() <= 12


def test_orientation_applies_to_png_too():
    upright = _pattern(20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _pil_bytes(_rgb(np.ascontiguousarray(np.rot90(upright, 1))), "PNG", exif=exif.tobytes())
    assert np.array_equal(imaging.decode(data, LIMITS).pixels, upright)


def _jpeg(w=64, h=48) -> bytes:
    return _pil_bytes(_rgb(_pattern(h, w)), "JPEG", quality=90)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9, 0.99])
def test_truncated_jpeg_is_rejected(cut):
    data = _jpeg(256, 256)
    with pytest.raises(InvalidImage):
        imaging.decode(data[: int(len(data) * cut)], LIMITS)


def test_jpeg_with_trailing_bytes_is_accepted():
    out = imaging.decode(_jpeg() + b"\x00" * 100 + b"TRAILER", LIMITS)
    assert out.pixels.shape == (48, 64, 3)


def test_jpeg_with_exif_thumbnail_truncated_after_header_is_rejected():
    """A thumbnail's EOI inside APP1 must not make a truncated main image look complete."""
    thumb = _pil_bytes(_rgb(_pattern(8, 8)), "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 1
    full = _pil_bytes(_rgb(_pattern(200, 200)), "JPEG", exif=exif.tobytes() + thumb)
    with pytest.raises(InvalidImage):
        imaging.decode(full[: len(full) // 2], LIMITS)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF", "BMP"])
def test_truncated_other_formats_are_rejected(fmt):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    data = _pil_bytes(Image.fromarray(noisy), fmt)
    with pytest.raises(InvalidImage):
        imaging.decode(data[: len(data) // 2], LIMITS)


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n", b"GIF89a" + b"\x00" * 50,
                                  b"%PDF-1.4 nope", bytes(range(256)) * 4])
def test_non_images_are_rejected(data):
    with pytest.raises(InvalidImage):
        imaging.decode(data, LIMITS)


def test_gif_is_not_supported():
    data = _pil_bytes(Image.new("RGB", (4, 4)), "GIF")
    with pytest.raises(InvalidImage, match="GIF"):
        imaging.decode(data, LIMITS)


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_bomb_dimensions_are_refused_before_decoding(monkeypatch):
    """Refused on the header: neither OpenCV nor Pillow decodes a pixel. The decoders' entry points
    are counted (a control shows they count a picture within the limits), instead of the process's
    peak RSS, which a loaded machine and the process's history move."""
    within = [_pil_bytes(Image.new("RGB", (8, 8)), "PNG"), _pil_bytes(Image.new("RGB", (8, 8)), "JPEG")]
    decoded = []
    imdecode, load = cv2.imdecode, ImageFile.ImageFile.load
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: decoded.append("cv2.imdecode") or imdecode(*a, **k))
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append("Pillow load") or load(self))
    for data in within:
        imaging.decode(data, LIMITS)
    assert sorted(set(decoded)) == ["Pillow load", "cv2.imdecode"], decoded  # the control
    decoded.clear()
    with pytest.raises(ImageTooLarge):
        imaging.decode(_png_header_only(60000, 60000), LIMITS)  # 10.8 GB of pixels if decoded
    assert decoded == []  # no decoder was called


def test_pixel_and_side_limits():
    with pytest.raises(ImageTooLarge, match="pixels"):
        imaging.decode(_pil_bytes(Image.new("RGB", (2100, 2000)), "PNG"), LIMITS)
    with pytest.raises(ImageTooLarge, match="side"):
        imaging.decode(_pil_bytes(Image.new("RGB", (4100, 10)), "PNG"), LIMITS)
    out = imaging.decode(_pil_bytes(Image.new("RGB", (2000, 2000)), "PNG"), LIMITS)
    assert out.width == 2000


def test_large_jpeg_declared_size_checked_first():
    # JPEG SOF claiming 30000x30000 with no real data behind it
    data = bytearray(_jpeg(16, 16))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5: sof + 9] = struct.pack(">HH", 30000, 30000)
    with pytest.raises(ImageTooLarge):
        imaging.decode(bytes(data), LIMITS)


def test_encode_roundtrip():
    src = _pattern()
    png = imaging.encode(src, "png")
    assert png[:4] == b"\x89PNG" and np.array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), 1), src)
    jpg = imaging.encode(src, "jpeg")
    assert jpg[:2] == b"\xff\xd8"


def test_nchw_hw():
    assert imaging.nchw_hw((1, 3, 256, 456)) == (256, 456)
    for bad in ((1, 3, -1, 456), (1, 256, 456), (3, 256, 456, 1, 1)):
        with pytest.raises(ValueError):
            imaging.nchw_hw(bad)
