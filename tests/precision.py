"""Inference precision for tests that compare answers with an oracle.

On CPUs with AMX (Intel Xeon, 4th generation and later) OpenVINO's CPU plugin computes in bf16
unless told otherwise, and it does on the model server too. The model server and an in-process
oracle compile a model separately, so at bf16 their answers differ by more than a tight tolerance
(seen: SSD scores 2.5e-3 apart). Every oracle comparison therefore pins f32 on both sides: the
model server through ``plugin_config`` in its config.json, the oracle through its compile config;
``served_precision`` and ``compiled_precision`` read the precision back.
"""
from __future__ import annotations

import re
from typing import Any, Optional

#: plugin_config / compile config that makes the CPU compute in f32 on every CPU
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def compiled_precision(compiled: Any) -> str:
    """The precision an ``ov.CompiledModel`` computes in: "f32", "bf16", "f16"."""
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def device_default_precision(device: str = "CPU") -> str:
    """What OpenVINO picks on this machine when nothing is pinned ("bf16" on AMX CPUs)."""
    import openvino as ov

    return ov.Core().get_property(device, "INFERENCE_PRECISION_HINT").get_type_name()


def compile_f32(model: Any, core: Optional[Any] = None, device: str = "CPU") -> Any:
    """Compile ``model`` (a path or ``ov.Model``) at f32, checked by reading the precision back."""
    import openvino as ov

    compiled = (core or ov.Core()).compile_model(model if not hasattr(model, "__fspath__") else str(model),
                                                 device, F32)
    precision = compiled_precision(compiled)
    if precision != "f32":
        raise AssertionError(f"asked for f32, the compiled model computes in {precision}")
    return compiled


def served_precision(server: Any, model_name: str) -> str:
    """The precision the local model server compiled ``model_name`` for, read from its load log
    line (the server logs the compiled model's INFERENCE_PRECISION_HINT)."""
    pattern = re.compile(rf"Loaded model {re.escape(model_name)} version \d+ .*inference precision (\w+)\)")
    found = pattern.findall(server.log_text())
    if not found:
        raise AssertionError(f"the model server's log has no load line for {model_name!r}")
    return found[-1]
