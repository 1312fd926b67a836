"""Image decoding, geometry helpers and encoding shared by every task.

``decode`` reads only the header first (format, size, EXIF orientation) and refuses images over
the pixel limits before any pixel is decoded, so a decompression bomb cannot eat memory. JPEG
goes through OpenCV (fast, libjpeg-turbo) after a structural check that catches truncated files;
the other formats go through Pillow, which handles 16-bit, palettes, alpha and truncation.
Every decoded image is BGR uint8 HxWx3 with EXIF orientation applied and transparency
composited on white (what a drawing canvas means by "transparent").
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from shared.config import Limits
from shared.errors import ImageTooLarge, InvalidImage

# We enforce our own pixel limits before decoding; Pillow's bomb check would only duplicate it.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "WEBP", "TIFF")
_EXIF_ORIENTATION = 0x0112


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


def decode(data: bytes, limits: Limits) -> DecodedImage:
    """Decode image bytes to BGR uint8; 415 for non-images, 413 for images over the limits."""
    if not data:
        raise InvalidImage("the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            fmt = (img.format or "").upper()
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise InvalidImage("the data is not a supported image (JPEG, PNG, BMP, WebP or TIFF)") from None
    except Exception:  # Pillow plugins raise odd types on hostile headers
        raise InvalidImage("the image header could not be read") from None
    if fmt not in SUPPORTED_FORMATS:
        raise InvalidImage(f"image format {fmt or 'unknown'} is not supported; "
                           "send JPEG, PNG, BMP, WebP or TIFF")
    check_size(width, height, limits)
    orientation = _orientation(img)
    if fmt in ("JPEG", "MPO"):
        pixels = _decode_jpeg(data)
    else:
        pixels = _decode_pillow(img)
    if pixels.shape[0] != height or pixels.shape[1] != width:
        raise InvalidImage("the image could not be decoded consistently")
    return DecodedImage(apply_orientation(pixels, orientation), fmt, orientation)


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


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # broken EXIF blocks are common in the wild: ignore them
        return 1
    return value if 1 <= value <= 8 else 1


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip pixels as EXIF orientation 1..8 says, so they display upright."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.transpose(1, 0, 2)
    if orientation == 6:
        return np.ascontiguousarray(pixels.transpose(1, 0, 2)[:, ::-1])
    if orientation == 7:
        return np.ascontiguousarray(pixels.transpose(1, 0, 2)[::-1, ::-1])
    if orientation == 8:
        return np.ascontiguousarray(pixels.transpose(1, 0, 2)[::-1])
    return pixels


def _jpeg_complete(data: bytes) -> bool:
    """True when the JPEG's main scan data ends with an EOI marker (i.e. it is not truncated).

    Walks the marker segments to the first start-of-scan (skipping APPn blocks, whose EXIF
    thumbnails have their own markers), then looks for EOI after it. Inside entropy-coded data
    0xFF is always stuffed, so an FFD9 after the scan starts is a real end of image.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return False
    pos = 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker == 0xDA:  # start of scan
            return data.rfind(b"\xff\xd9", pos + 2 + length) != -1
        pos += 2 + length
    return False


def _decode_jpeg(data: bytes) -> np.ndarray:
    if not _jpeg_complete(data):
        raise InvalidImage("the JPEG image is truncated or corrupt")
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if pixels is None:
        raise InvalidImage("the JPEG image could not be decoded")
    return pixels


def _decode_pillow(img: Image.Image) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            return _pillow_to_bgr(img)
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError):
        raise InvalidImage("the image is truncated or corrupt") from None
    except Exception:
        raise InvalidImage("the image could not be decoded") from None


def _pillow_to_bgr(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        if arr.dtype != np.uint8:
            # 16-bit (or 32-bit int) grey: scale the used range into 8 bits.
            top = 65535.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
            arr = np.clip(arr.astype(np.float32) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max(initial=0.0))
        scale = 255.0 if hi <= 1.0 else 1.0
        arr = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return cv2.cvtColor(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    if mode == "L":
        return cv2.cvtColor(np.asarray(img), cv2.COLOR_GRAY2BGR)
    if mode != "RGB":
        img = img.convert("RGB")
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


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
    if fmt == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"could not encode image as {fmt}")
    return buf.tobytes()
