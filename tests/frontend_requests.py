"""The OVaaS web frontend's requests, byte for byte (read from ovaas/ovaas-front, both the Vite-era
``src/logics/{upload,demo,axios}.ts`` + ``src/utils.ts`` and the Nuxt ``composables/{upload,demo,
axios,canvas}.ts`` + ``lib/utils.ts``):

- ``POST {functionsUrl}/humanpose | /colorization | /objectdetection``: the chosen photo re-encoded in
  the browser by Compressor.js (``maxWidth``/``maxHeight`` 2000, JPEG quality 0.8, never upscaled),
  sent as ``FormData`` with one file field ``image`` named ``image.jpg`` (part type ``image/jpeg``);
  axios ``responseType: 'blob'``, the answer shown in an ``<img>`` through ``URL.createObjectURL``.
- ``POST {functionsUrl}/handwritten``: the drawing canvas (white, black strokes of width 10; the
  Nuxt page's canvas is ``h-180`` = 720 px high, 1232 px wide on a desktop window) as
  ``canvas.toBlob(..., 'image/jpeg')``, field ``image`` named ``handwritten.jpg``; axios
  ``responseType: 'json'``, ``data.text`` shown (empty text: "No text found").
- Headers: axios's default ``Accept: application/json, text/plain, */*``; the browser sets the
  multipart boundary (``----WebKitFormBoundary`` + 16 characters in Chromium) and ``Origin``.
"""
from __future__ import annotations

from typing import Dict, Tuple

import cv2
import numpy as np

from scripts.tooling.modelsearch import PROJECT_ROOT

IMAGES = PROJECT_ROOT.parent / "shared" / "images"
AXIOS_ACCEPT = "application/json, text/plain, */*"
FRONTEND_ORIGIN = "http://localhost:3333"  # the frontend's dev server: another origin than the app
MAX_SIDE = 2000  # Compressor.js maxWidth / maxHeight
CANVAS_W, CANVAS_H = 1232, 720
BOUNDARY = "----WebKitFormBoundaryOVaaS7MA4YWxkTrZu0gW"
#: demo -> (compatibility function, photo, file name the frontend sends)
DEMOS = {"pose": ("humanpose", "people1.jpeg"), "colorization": ("colorization", "ansel_adams2.jpg"),
         "detection": ("objectdetection", "people2.jpeg")}


def compressor_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    """What Compressor.js makes of a photo: scaled to fit 2000x2000 (never up), JPEG at 0.8."""
    h, w = image.shape[:2]
    scale = min(1.0, MAX_SIDE / w, MAX_SIDE / h)
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def photo(name: str, upscale: float = 1.0) -> np.ndarray:
    """A shared test photo (optionally enlarged first, so the 2000 px limit applies)."""
    image = cv2.imread(str(IMAGES / name), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(IMAGES / name)
    if upscale != 1.0:
        image = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    return image


def handwriting_canvas() -> np.ndarray:
    """The 1232x720 drawing canvas: white, with the shared handwriting sample's strokes in black."""
    canvas = np.full((CANVAS_H, CANVAS_W, 3), 255, np.uint8)
    sample = cv2.imread(str(IMAGES / "handwritten_japanese_test.png"), cv2.IMREAD_GRAYSCALE)
    ink = sample < 128
    y, x = (CANVAS_H - ink.shape[0]) // 2, (CANVAS_W - ink.shape[1]) // 2
    canvas[y:y + ink.shape[0], x:x + ink.shape[1]][ink] = 0
    return canvas


def canvas_jpeg(canvas: np.ndarray) -> bytes:
    """``canvas.toBlob(cb, 'image/jpeg')``: Chromium's default JPEG quality is 0.92."""
    return cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def form(jpeg: bytes, filename: str = "image.jpg") -> Tuple[bytes, str]:
    """``new FormData(); formData.append('image', blob, filename)`` as Chromium encodes it."""
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + jpeg + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def headers(content_type: str) -> Dict[str, str]:
    """The request headers of axios's POST from the frontend's origin."""
    return {"Content-Type": content_type, "Accept": AXIOS_ACCEPT, "Origin": FRONTEND_ORIGIN,
            "Referer": FRONTEND_ORIGIN + "/"}


def jpeg_size(body: bytes) -> Tuple[int, int]:
    """(width, height) of a JPEG answer (raises if it is not one)."""
    assert body[:3] == b"\xff\xd8\xff", "not a JPEG"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the JPEG does not decode"
    return image.shape[1], image.shape[0]
