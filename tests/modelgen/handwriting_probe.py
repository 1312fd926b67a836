"""A handwriting-shaped probe model: its CTC output spells where the input is dark.

``actual_input`` f32 [1,1,H,W] -> ``output`` f32 [T,1,C]. The input's column means are pooled
into T time steps (adaptive average pooling, so step t covers columns [t*W/T, (t+1)*W/T));
a step whose mean brightness m is below mid-grey scores class ``ink_class`` highest, otherwise
the blank: blank = 10*m/255, ink_class = 10*(1 - m/255), every other class 0. So each dark block
of the line that reaches the model decodes as one ``ink_class`` character, and a test can tell
from the text whether cropping, resizing and padding put the ink where they should.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import openvino as ov
import openvino.opset13 as ops

PathLike = Union[str, Path]


def handwriting_probe_model(path: PathLike, ink_class: int, shape: Sequence[int] = (1, 1, 96, 2000),
                            steps: int = 186, classes: int = 4442) -> Path:
    """Write the probe (``.xml`` + ``.bin``) to ``path`` (a folder gets ``model.xml``)."""
    p = Path(path)
    if p.suffix != ".xml":
        p = p / "model.xml"
    p.parent.mkdir(parents=True, exist_ok=True)
    x = ops.parameter(list(shape), np.float32, name="actual_input")
    x.output(0).get_tensor().set_names({"actual_input"})
    cols = ops.reduce_mean(x, ops.constant(np.array([2], np.int64)), keep_dims=True)  # [1,1,1,W]
    pooled = ops.adaptive_avg_pool(cols, ops.constant(np.array([1, steps], np.int64)))  # [1,1,1,T]
    m = ops.reshape(pooled, ops.constant(np.array([steps, 1], np.int64)), special_zero=False)  # [T,1]
    feat = ops.concat([m, ops.constant(np.ones((steps, 1), np.float32))], axis=1)  # [T,2]
    weights = np.zeros((2, classes), np.float32)
    weights[0, 0] = 10.0 / 255.0
    weights[0, ink_class] = -10.0 / 255.0
    weights[1, ink_class] = 10.0
    scores = ops.matmul(feat, ops.constant(weights), False, False)  # [T,C]
    out = ops.reshape(scores, ops.constant(np.array([steps, 1, classes], np.int64)), special_zero=False)
    out.output(0).get_tensor().set_names({"output"})
    out.set_friendly_name("output")
    model = ov.Model([out.output(0)], [x], "handwriting-probe")
    ov.save_model(model, str(p), compress_to_fp16=False)
    return p
