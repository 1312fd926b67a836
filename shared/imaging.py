"""Image decoding, geometry helpers and encoding shared by every task.

``decode`` bounds each request's decoding work and memory before and while it decodes:

1. the format comes from the magic bytes, and ``shared.imagecheck`` walks the file's structure
   (never its pixels) to refuse files whose decoding cost is not bounded by their pixel count:
   a JPEG of thousands of scans, a PNG of a million chunks, a TIFF of tiny tiles (413
   ``image_too_complex``, in milliseconds);
2. only the header is read next (format, size, EXIF orientation), and images over the pixel limits
   are refused (413) before any pixel is decoded;
3. before any pixel is decoded the request reserves its memory from the instance's budget
   (``shared.budget``: ``admit`` is called with the header's size; without one, decode reserves
   its own peak): a wait that uses no CPU, 503 ``server_busy`` when it does not fit in time.
   Large pictures (4 MP or more) decode at a lower CPU priority;
4. pixels are converted to BGR uint8 in bands of rows straight into the output array, with EXIF
   orientation applied by where each band is written: no full-size float or 16-bit copies.

Memory: decoding a W x H picture needs at most ``MEMORY_FACTOR`` x W x H x 3 bytes (the decoded
BGR picture) on top of the request body; what the whole request needs is each endpoint's
``catalog.Endpoint.memory``; see README, "Limits". JPEG goes through OpenCV
(libjpeg-turbo) and so do run-length encoded BMPs; the other formats go through Pillow. Every
decoded image is BGR uint8 HxWx3 with EXIF orientation applied and transparency composited on
white (what a drawing canvas means by "transparent").
"""
from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from shared import budget, imagecheck
from shared.config import Limits
from shared.errors import ImageTooComplex, ImageTooLarge, InvalidImage

# We enforce our own pixel limits before decoding; Pillow's bomb check would only duplicate it.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False
#: Pillow keeps a decoded picture in blocks of this many bytes. Larger than glibc's mmap threshold
#: (``shared.allocator``: 32 MiB), so a large picture's blocks are mapped and go back to the
#: kernel when it is freed; Pillow's default 16 MiB blocks stay on the decoding thread's heap
#: arena, where the request's own thread cannot reuse them (+170 MB held after a 40 MP RGBA PNG).
PILLOW_BLOCK_BYTES = 64 << 20
Image.core.set_block_size(PILLOW_BLOCK_BYTES)

_EXIF_ORIENTATION = 0x0112
#: Peak memory of one decode, in units of the decoded BGR picture (W x H x 3 bytes); measured by
#: tests/test_imaging_hostile.py for every hostile shape (worst: a progressive JPEG without
#: chroma subsampling, libjpeg's coefficients; a 16-bit TIFF whose one strip would be 8 bytes per
#: pixel next to Pillow's 4 is refused by imagecheck).
MEMORY_FACTOR = 3
#: Band buffers, allocator rounding and the like, on top of MEMORY_FACTOR x the picture.
DECODE_SLACK = 32 << 20
#: Rows are converted in bands of about this many bytes of Pillow pixels.
_BAND_BYTES = 1 << 22
#: Pause before answering a file refused as too complex (still well under 100 ms): a client that
#: sends such files in a loop then costs ~1/20 of the CPU it would otherwise.
REFUSAL_PAUSE_S = 0.05


@dataclass(frozen=True)
class DecodedImage:
    """A decoded picture: BGR uint8 pixels (orientation applied) and where they came from."""

    pixels: np.ndarray  # HxWx3 uint8, BGR
    format: str  # "JPEG", "PNG", ...
    orientation: int  # EXIF orientation that was applied (1 = none)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


# ---- decoding --------------------------------------------------------------------------------

def decode_peak_bytes(pixels: int) -> int:
    """The most one decode of ``pixels`` pixels holds at once (bytes): ``MEMORY_FACTOR`` x the
    decoded picture, plus band buffers."""
    return MEMORY_FACTOR * 3 * pixels + DECODE_SLACK


def decode(data: bytes, limits: Limits,
           admit: Optional[Callable[[int, int], None]] = None) -> DecodedImage:
    """Decode image bytes to BGR uint8; 415 for non-images, 413 for images over the limits or
    asking for too much work, 503 when the memory budget has no room in time.

    ``admit(width, height)`` is called once the header is read and before any pixel is decoded:
    the caller reserves the whole request's memory there (``shared.http``). Without it, the
    decode reserves its own peak (``decode_peak_bytes``) while it runs."""
    if not data:
        raise InvalidImage("the image is empty")
    kind = imagecheck.sniff(data)
    try:
        rle = imagecheck.check(kind, data)
    except ImageTooComplex:
        budget.get().pause(REFUSAL_PAUSE_S)  # no encoder writes such a file: it was made to hurt
        raise
    img = _open(data, kind)
    fmt = (img.format or kind).upper()
    width, height = img.size
    try:
        check_size(width, height, limits)
        if admit is not None:
            admit(width, height)
            return _decode_admitted(data, img, fmt, rle, width, height)
        with budget.get().reserve(decode_peak_bytes(width * height), width * height):
            return _decode_admitted(data, img, fmt, rle, width, height)
    finally:
        img.close()


def _decode_admitted(data: bytes, img: Image.Image, fmt: str, rle: bool, width: int,
                     height: int) -> DecodedImage:
    """The pixels, once the memory is reserved (a large picture's at a lower CPU priority)."""
    gate = budget.get()
    if fmt in ("JPEG", "MPO", "WEBP") or rle:
        # OpenCV decodes these straight into one array (Pillow's WebP keeps two RGBA canvases
        # and a bytes copy; its run-length BMP decoder is Python). Orientation is read here.
        orientation = exif_orientation(img.info.get("exif")) if not rle else 1
        grey = fmt == "JPEG" and img.mode == "L"
        img.close()
        pixels = gate.run(width * height, lambda: _decode_opencv(data, (height, width), orientation, grey))
        return DecodedImage(pixels, fmt, orientation)
    pixels, orientation = gate.run(width * height, lambda: _decode_pillow(img, fmt))
    return DecodedImage(pixels, fmt, orientation)


def _open(data: bytes, kind: str) -> Image.Image:
    """The Pillow image of ``data`` with only its header read (the plugin of ``kind`` only)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data), formats=[kind])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise InvalidImage("the data is not a supported image (JPEG, PNG, BMP, WebP or TIFF)") from None
    except Exception:  # Pillow plugins raise odd types on hostile headers
        raise InvalidImage("the image header could not be read") from None


def check_size(width: int, height: int, limits: Limits) -> None:
    """413 when the declared dimensions exceed the configured limits."""
    if width <= 0 or height <= 0:
        raise InvalidImage("the image has no pixels")
    if width > limits.max_image_side or height > limits.max_image_side:
        raise ImageTooLarge(f"image is {width}x{height}; each side must be at most "
                            f"{limits.max_image_side} pixels")
    if width * height > limits.max_image_pixels:
        raise ImageTooLarge(f"image has {width * height} pixels; the limit is "
                            f"{limits.max_image_pixels}")


def exif_orientation(exif: Optional[bytes]) -> int:
    """The EXIF orientation (1..8) of an EXIF block as browsers read it, else 1.

    Chromium and Firefox honour tag 0x0112 of the first directory only when it is a SHORT with
    one value; an orientation written as ASCII text ("6") or with another type is ignored, so the
    picture is used as the user sees it in the web frontend.
    """
    if not exif:
        return 1
    for _ in range(2):  # Pillow keeps the "Exif\0\0" prefix of JPEG's APP1 (some files repeat it)
        if exif.startswith(b"Exif\x00\x00"):
            exif = exif[6:]
    n = len(exif)
    endian = {b"II": "<", b"MM": ">"}.get(exif[:2])
    if endian is None or n < 8 or struct.unpack_from(endian + "H", exif, 2)[0] != 42:
        return 1
    ifd = struct.unpack_from(endian + "I", exif, 4)[0]
    if ifd + 2 > n:
        return 1
    count = struct.unpack_from(endian + "H", exif, ifd)[0]
    for at in range(ifd + 2, min(ifd + 2 + 12 * count, n - 11), 12):
        tag, kind, values = struct.unpack_from(endian + "HHI", exif, at)
        if tag == _EXIF_ORIENTATION:
            if kind != 3 or values != 1:
                return 1
            value = struct.unpack_from(endian + "H", exif, at + 8)[0]
            return value if 1 <= value <= 8 else 1
    return 1


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip pixels as EXIF orientation 1..8 says, so they display upright (flips are views,
    rotations new arrays from OpenCV)."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return cv2.transpose(pixels)
    if orientation == 6:
        return cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(pixels), -1)
    if orientation == 8:
        return cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return pixels


def _decode_opencv(data: bytes, shape: Tuple[int, int], orientation: int,
                   grey: bool = False) -> np.ndarray:
    """JPEG (structure checked by imagecheck), WebP or RLE BMP through OpenCV: BGR uint8, upright.

    Transparency (WebP) is composited on white a band at a time into the output. OpenCV's Python
    binding copies each decoded picture once more into a numpy array (a transient 2x), so a grey
    JPEG (``grey``) is decoded as grey and then spread to BGR: 1.33x the picture, not 2x."""
    flags = cv2.IMREAD_IGNORE_ORIENTATION | (cv2.IMREAD_UNCHANGED if data[:4] == b"RIFF"
                                             else cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if pixels is None:
        raise InvalidImage("the image is truncated or corrupt")
    if pixels.shape[:2] != shape or pixels.dtype != np.uint8:
        raise InvalidImage("the image could not be decoded consistently")
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        return _upright(shape, orientation, lambda y0, y1: _composite_on_white(pixels[y0:y1], bgra=True))
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return apply_orientation(pixels, orientation)


def _decode_pillow(img: Image.Image, fmt: str) -> Tuple[np.ndarray, int]:
    """(BGR pixels upright, EXIF orientation) of a Pillow image whose header was read."""
    size = img.size
    tiff_orientation = img.tag_v2.get(_EXIF_ORIENTATION) if fmt == "TIFF" else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            if img.size != size:
                raise InvalidImage("the image could not be decoded consistently")
            if fmt == "TIFF":
                # Pillow's TIFF loader applies a numeric Orientation tag itself (as libtiff reads it:
                # any integer type) and then removes the tag; apply it here only if it did not.
                valid = isinstance(tiff_orientation, int) and 1 <= tiff_orientation <= 8
                orientation = int(tiff_orientation) if valid else 1
                pending = orientation if valid and _EXIF_ORIENTATION in img.tag_v2 else 1
            else:
                orientation = pending = exif_orientation(img.info.get("exif"))
            convert = _band_converter(img)
            width, height = img.size
            return _upright((height, width), pending,
                            lambda y0, y1: convert(img.crop((0, y0, width, y1)))), orientation
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError):
        raise InvalidImage("the image is truncated or corrupt") from None
    except InvalidImage:
        raise
    except Exception:
        raise InvalidImage("the image could not be decoded") from None


def _upright(shape: Tuple[int, int], orientation: int,
             band: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """The upright BGR picture of a stored ``shape`` (h, w), built a band of stored rows at a time:
    ``band(y0, y1)`` gives rows y0..y1 as BGR uint8, turned upright and written where they belong
    (peak: the source, the output and one band; no full-size intermediate)."""
    height, width = shape
    out = np.empty((width, height, 3) if orientation in (5, 6, 7, 8) else (height, width, 3), np.uint8)
    rows = max(1, _BAND_BYTES // (width * 4))
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        block = apply_orientation(band(y0, y1), orientation)
        lo, hi = (height - y1, height - y0) if orientation in (3, 4, 6, 7) else (y0, y1)
        if orientation in (5, 6, 7, 8):
            out[:, lo:hi] = block
        else:
            out[lo:hi] = block
    return out


def _band_converter(img: Image.Image) -> Callable[[Image.Image], np.ndarray]:
    """A function turning a band (a crop of loaded ``img``) into contiguous hxwx3 BGR uint8."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grey: the used range into 8 bits, rounded to nearest.
        top = 65535 if mode.startswith("I;16") or _maximum(img) > 255 else 255

        def grey_int(band: Image.Image) -> np.ndarray:
            arr = np.asarray(band)
            if mode == "I":
                arr = np.clip(arr, 0, top)
            grey = cv2.convertScaleAbs(arr.astype(np.float32, copy=False) if arr.dtype.byteorder == ">"
                                       else arr, alpha=255.0 / top)
            return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        return grey_int
    if mode == "F":
        scale = np.float32(255.0 if _maximum(img) <= 1.0 else 1.0)

        def grey_float(band: Image.Image) -> np.ndarray:
            arr = np.asarray(band, dtype=np.float32) * scale + np.float32(0.5)
            return cv2.cvtColor(np.clip(arr, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        return grey_float
    if mode == "P":
        lut = _palette_bgr(img)
        return lambda band: lut[np.asarray(band)]
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        return lambda band: _composite_on_white(
            np.asarray(band if band.mode == "RGBA" else band.convert("RGBA")), bgra=False)
    if mode == "L":
        return lambda band: cv2.cvtColor(np.asarray(band), cv2.COLOR_GRAY2BGR)
    if mode == "RGB":
        return lambda band: cv2.cvtColor(np.asarray(band), cv2.COLOR_RGB2BGR)
    return lambda band: cv2.cvtColor(np.asarray(band.convert("RGB")), cv2.COLOR_RGB2BGR)


def _maximum(img: Image.Image) -> float:
    """The largest value of a one-band image, a band of rows at a time (numpy releases the GIL;
    Pillow's getextrema holds it for the whole picture)."""
    width, height = img.size
    rows = max(1, _BAND_BYTES // (width * 4))
    return max(float(np.asarray(img.crop((0, y, width, min(height, y + rows)))).max(initial=0))
               for y in range(0, height, rows))


def _palette_bgr(img: Image.Image) -> np.ndarray:
    """256x3 BGR colours of a palette image's indices, transparency composited on white."""
    palette = np.zeros((256, 3), np.uint8)
    entries = np.frombuffer(bytes(img.getpalette("RGB") or b""), np.uint8)[:768].reshape(-1, 3)
    palette[:len(entries)] = entries
    alpha = np.full((256, 1), 255, np.uint8)
    transparency = img.info.get("transparency")
    if isinstance(transparency, int) and 0 <= transparency < 256:
        alpha[transparency] = 0
    elif isinstance(transparency, (bytes, bytearray)):
        values = np.frombuffer(bytes(transparency[:256]), np.uint8)
        alpha[:len(values), 0] = values
    rgba = np.concatenate([palette, alpha], axis=1)
    return _composite_on_white(rgba[None], bgra=False)[0]


def _composite_on_white(pixels: np.ndarray, bgra: bool) -> np.ndarray:
    """hxwx4 RGBA (or BGRA) over white as hxwx3 BGR, in integers exactly as
    round(c*a/255 + 255*(1 - a/255)) = 255 - round(a*(255-c)/255)."""
    alpha = pixels[..., 3:4]
    colour = pixels[..., :3] if bgra else pixels[..., 2::-1]  # BGR order
    if alpha.min(initial=255) == 255:
        return np.ascontiguousarray(colour)
    t = (255 - colour).astype(np.uint16)
    t *= alpha
    t += 128
    t += t >> 8
    t >>= 8  # round(t / 255), exact for 0 <= t <= 65025
    out = np.full(t.shape, 255, np.uint8)
    out -= t.astype(np.uint8)
    return out


# ---- geometry --------------------------------------------------------------------------------

def nchw_hw(shape: Tuple[int, ...]) -> Tuple[int, int]:
    """(height, width) of a [N,C,H,W] input shape; raises ValueError for other shapes."""
    if len(shape) != 4 or shape[2] <= 0 or shape[3] <= 0:
        raise ValueError(f"expected a static [N,C,H,W] input shape, got {list(shape)}")
    return int(shape[2]), int(shape[3])


def to_gray(image: np.ndarray) -> np.ndarray:
    """BGR (or already grey) uint8 -> HxW uint8 grey; ValueError for any other shape."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    raise ValueError(f"expected a BGR or grey uint8 picture, got shape {image.shape}")


# ---- encoding ---------------------------------------------------------------------------------


def encode(image: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode a BGR uint8 image as JPEG or PNG bytes."""
    return encode_buffer(image, fmt, quality).tobytes()


def encode_buffer(image: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> np.ndarray:
    """``encode`` as the encoder's own uint8 buffer (no bytes copy)."""
    if fmt == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"could not encode image as {fmt}")
    return buf
