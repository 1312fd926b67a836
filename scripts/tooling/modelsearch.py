"""Find model files on disk: the project's download target, then a search path, then ../shared.

Search order (first hit wins):
1. ``models/`` in the project (the download target): ``models/<name>/<version>/`` (OVMS layout)
   or ``models/<intel|public>/<name>/<precision>/<name>.xml`` (Open Model Zoo layout);
2. each folder of ``$OVAAS_MODELS_DIR`` (``:``-separated, ``;`` on Windows), same layouts;
3. ``../shared/models-real`` then ``../shared/models-synthetic`` beside the project.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Optional

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRECISIONS = ("FP32", "FP16", "FP16-INT8", "FP32-INT8")


def search_path() -> List[Path]:
    """The folders searched for models, in order."""
    dirs: List[Path] = [PROJECT_ROOT / "models"]
    env = os.environ.get("OVAAS_MODELS_DIR", "")
    sep = ";" if os.name == "nt" else ":"
    dirs += [Path(p).expanduser() for p in env.split(sep) if p.strip()]
    shared = PROJECT_ROOT.parent / "shared"
    dirs += [shared / "models-real", shared / "models-synthetic"]
    return dirs


def _version_dirs(base: Path) -> List[Path]:
    if not base.is_dir():
        return []
    return sorted((p for p in base.iterdir() if p.is_dir() and p.name.isdigit()
                   and (any(p.glob("*.xml")) or any(p.glob("*.onnx")))), key=lambda p: int(p.name))


def find_model(name: str, dirs: Optional[Iterable[Path]] = None) -> Optional[Path]:
    """The model's OVMS base path (a folder of numeric version folders), or None.

    An Open Model Zoo download (``<intel|public>/<name>/<precision>/``) is returned as the
    precision folder; ``ovms_layout(path)`` tells which of the two a hit is.
    """
    for root in dirs if dirs is not None else search_path():
        base = root / name
        if _version_dirs(base):
            return base
        for group in ("intel", "public"):
            for precision in PRECISIONS:
                folder = root / group / name / precision
                if (folder / f"{name}.xml").is_file():
                    return folder
    return None


def ovms_layout(path: Path) -> bool:
    """True when ``path`` holds numeric version folders (OVMS layout)."""
    return bool(_version_dirs(path))


def model_xml(name: str, dirs: Optional[Iterable[Path]] = None) -> Optional[Path]:
    """The .xml of the newest version of a model, or None."""
    base = find_model(name, dirs)
    if base is None:
        return None
    versions = _version_dirs(base)
    folder = versions[-1] if versions else base
    xmls = sorted(folder.glob("*.xml"))
    return xmls[0] if xmls else None


def find_side_file(model: str, filename: str, dirs: Optional[Iterable[Path]] = None) -> Optional[Path]:
    """A side file kept beside a model (``<root>/<model>/<filename>``, or in a group folder)."""
    for root in dirs if dirs is not None else search_path():
        for folder in (root / model, root / "intel" / model, root / "public" / model):
            if (folder / filename).is_file():
                return folder / filename
    return None
