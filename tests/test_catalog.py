"""The endpoint catalog (shared/catalog.py): it matches the function folders, keeps the original
OVaaS names, and is the only Python file outside tests/ that lists the endpoints."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Set

import pytest

from shared import catalog, config

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"tests", ".venv", ".venv313", "node_modules", ".git", ".run", ".azurite", "__pycache__"}


def test_catalog_matches_the_function_folders():
    on_disk = {p.parent.name for p in ROOT.glob("HttpTrigger*/function.json")}
    assert on_disk - {"HttpTriggerHealth"} == {e.function for e in catalog.ENDPOINTS}
    for endpoint in catalog.ENDPOINTS:
        spec = json.loads((ROOT / endpoint.function / "function.json").read_text())
        trigger = next(b for b in spec["bindings"] if b["type"] == "httpTrigger")
        assert "route" not in trigger  # served at /api/<function>
        module = (ROOT / endpoint.function / spec["scriptFile"]).read_text()
        assert f'"{endpoint.task}"' in module  # the folder hands its requests to its own task


def test_original_ovaas_names_are_kept():
    """The original backend's function names (the web frontend's routes) and model names (its OVMS
    config.json) are a contract with existing deployments."""
    got = {e.task: (e.compat_function, e.prefix, e.model_name) for e in catalog.ENDPOINTS}
    assert got == {
        "pose": ("humanpose", "HUMANPOSE", "human-pose-estimation"),
        "handwriting": ("handwritten", "HANDWRITTEN", "handwritten-japanese-recognition"),
        "colorization": ("colorization", "COLORIZATION", "colorization"),
        "detection": ("objectdetection", "OBJECTDETECTION", "object-detection"),
    }


def test_lookups():
    pose = catalog.by_task("pose")
    assert catalog.by_function("HttpTriggerHumanPose") is pose and catalog.by_function("humanpose") is pose
    assert catalog.by_prefix("humanpose") is pose and catalog.by_prefix("NOPE") is None
    assert catalog.side_file("HANDWRITTEN_CHARLIST_PATH").filename == "kondate_nakayosi.txt"
    with pytest.raises(KeyError):
        catalog.by_task("nope")
    # every setting a side file names is one the app reads, with the catalog's default
    assert config.side_file_location("HANDWRITTEN_CHARLIST_PATH", {}) == \
        catalog.side_file("HANDWRITTEN_CHARLIST_PATH").default
    assert {s.setting for e in catalog.ENDPOINTS for s in e.side_files} <= set(config.all_settings())


def _tokens() -> Dict[str, Set[str]]:
    """Per endpoint, the names that identify it in code: folder, setting prefix, served model name,
    Open Model Zoo model, original function name (as quoted strings or setting names)."""
    out: Dict[str, Set[str]] = {}
    for e in catalog.ENDPOINTS:
        out[e.task] = {e.function, f'"{e.prefix}"', f"{e.prefix}_", f'"{e.model_name}"', e.omz_model,
                       f'"{e.compat_function}"'}
    return out


def _python_files():
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if not SKIP_DIRS.intersection(rel.parts):
            yield rel


def test_no_other_python_file_lists_the_endpoints():
    """A file that names two or more endpoints spells out (part of) the list: only the catalog may."""
    tokens = _tokens()
    offenders = {}
    for rel in _python_files():
        if rel == Path("shared/catalog.py"):
            continue
        text = (ROOT / rel).read_text(encoding="utf-8")
        named = sorted(task for task, names in tokens.items() if any(n in text for n in names))
        if len(named) >= 2:
            offenders[str(rel)] = named
    assert offenders == {}


def test_the_scan_finds_a_list():
    """The scan above is not vacuous: it sees the catalog's own list, and a file listing two."""
    tokens = _tokens()
    text = (ROOT / "shared" / "catalog.py").read_text()
    assert len([t for t, names in tokens.items() if any(n in text for n in names)]) == len(catalog.ENDPOINTS)
    planted = 'NAMES = ("HttpTriggerHumanPose", "HttpTriggerObjectDetection")'
    assert len([t for t, names in tokens.items() if any(n in planted for n in names)]) == 2
    assert "HttpTriggerHumanPose" in (ROOT / "HttpTriggerHumanPose" / "__init__.py").read_text()
