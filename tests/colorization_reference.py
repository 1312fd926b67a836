"""Colorization's full-size float32 maths as it was before issue 25 (commit 9a811f8), kept as the
reference the banded implementation is measured against (tests/test_colorization_memory.py)."""
from __future__ import annotations

import cv2
import numpy as np

from shared import imaging
from shared.tasks import colorization as col


def lightness(image: np.ndarray) -> np.ndarray:
    """HxW float32 L of the whole picture's grey version (one full-size float plane)."""
    return cv2.LUT(np.ascontiguousarray(imaging.to_gray(image), dtype=np.uint8), col._L_OF_GRAY)


def model_input(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The model's L input: the full-size L resized bilinearly."""
    return cv2.resize(lightness(image), (width, height), interpolation=cv2.INTER_LINEAR)


def compose(image: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
    """Full-size L + ab resized to full size -> Lab -> BGR float32 -> uint8 (saturated, rounded)."""
    light = lightness(image)
    height, width = light.shape
    ab = cv2.resize(ab_small, (width, height), interpolation=cv2.INTER_LINEAR)
    lab = cv2.merge([light, ab])
    bgr = cv2.cvtColor(lab, cv2.COLOR_Lab2BGR)
    out = np.empty((height, width, 3), np.uint8)
    cv2.addWeighted(bgr, 255.0, bgr, 0.0, 0.0, out, dtype=cv2.CV_8U)
    return out
