"""Read deploy/terraform with python-hcl2 (no terraform binary here): merged blocks, with helpers
for python-hcl2's quoting (string literals and block labels keep their quotes; expressions are
``${...}``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import hcl2

TERRAFORM = Path(__file__).resolve().parent.parent / "deploy" / "terraform"


def load(folder: Path = TERRAFORM) -> Dict[str, List[Any]]:
    """Every top-level block of the folder's *.tf files, merged by block type."""
    merged: Dict[str, List[Any]] = {}
    for path in sorted(folder.glob("*.tf")):
        with open(path) as f:
            for key, value in hcl2.load(f).items():
                merged.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return merged


def unquote(value: Any) -> Any:
    """A string literal without its quotes; anything else unchanged."""
    return value[1:-1] if isinstance(value, str) and value.startswith('"') and value.endswith('"') else value


def resources(tf: Dict[str, List[Any]], kind: str) -> Dict[str, dict]:
    """{name: body} of the resources of one type."""
    return {unquote(name): body for block in tf.get("resource", []) for k, named in block.items()
            if unquote(k) == kind for name, body in named.items()}


def named_blocks(tf: Dict[str, List[Any]], block: str) -> Dict[str, dict]:
    """{name: body} of ``variable``/``output`` blocks."""
    return {unquote(name): body for b in tf.get(block, []) for name, body in b.items()}


def locals_(tf: Dict[str, List[Any]]) -> Dict[str, Any]:
    """Every ``locals`` value, by name."""
    return {unquote(k): v for b in tf.get("locals", []) for k, v in b.items() if not k.startswith("__")}


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__")
                                                          for v in value)


def undocumented(body: dict, documented, meta: frozenset, where: str) -> List[str]:
    """Arguments and nested blocks of a parsed block that ``documented`` (a tests.terraform_docs.Block)
    does not list, as ``where.name`` paths; ``dynamic "x"`` blocks are checked as block ``x``."""
    out: List[str] = []
    for key, value in body.items():
        if key.startswith("__") or key in meta:
            continue
        if key == "dynamic":
            for dyn in value:
                for name, spec in dyn.items():
                    name = unquote(name)
                    if name not in documented.arguments or name not in documented.blocks:
                        out.append(f"{where}.{name}")
                        continue
                    for content in spec.get("content", []):
                        out += undocumented(content, documented.blocks[name], frozenset(), f"{where}.{name}")
            continue
        if key not in documented.arguments:
            out.append(f"{where}.{key}")
        elif _is_block(value):
            if key not in documented.blocks:
                out.append(f"{where}.{key} (a block with no documented arguments here)")
                continue
            for item in value:
                out += undocumented(item, documented.blocks[key], frozenset(), f"{where}.{key}")
    return out
