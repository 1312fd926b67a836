"""Real model files for tests: found where ``scripts/tooling/modelsearch.py`` looks (models/,
``$OVAAS_MODELS_DIR``, ../shared), or the test is skipped as ``needs_real_models`` — which fails
the run under ``CI=true`` (tests/ci_guard.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from scripts.tooling.modelsearch import find_model, model_xml


def real_model(name: str) -> Path:
    """The model's base folder (``<name>/<version>/...``), or skip the test."""
    base = find_model(name)
    if base is None:
        pytest.skip(f"needs_real_models: {name} not found in models/, $OVAAS_MODELS_DIR or ../shared")
    return base


def real_model_xml(name: str) -> Path:
    """The model's .xml file, or skip the test."""
    xml = model_xml(name)
    if xml is None:
        pytest.skip(f"needs_real_models: {name} not found in models/, $OVAAS_MODELS_DIR or ../shared")
    return xml
