"""Which settings the app reads: from the code in ``shared/`` (an AST scan) and from what the app
declares (``shared.catalog`` for the endpoints' prefixes and side files, ``shared.config`` for the
rest, ``config.all_settings()``). The deploy consistency tests check that every one of these is set
by the IaC and listed in README, and that the scan finds nothing the declaration lacks.

How the scan finds settings (every module in ``shared/``):

- calls of the settings readers (``_get``, ``_float``, ``_int``, ``_bool`` in shared/config.py,
  ``side_file_location``, ``os.environ.get``, ``os.getenv``,
  ``os.environ[...]``) whose setting-name argument is a string literal, a module constant, or an
  f-string ``f"{prefix}_SUFFIX"`` (a per-endpoint setting ``<PREFIX>_SUFFIX``);
- module constants named ``*_SETTING`` (the tasks' side-file settings);
- ``settings_prefix = "..."`` in a class (a task naming its own prefix).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, Optional, Set

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"

READERS = {"_get": 1, "_float": 1, "_int": 1, "_bool": 1, "side_file_location": 0, "getenv": 0}
# Set by the Functions platform itself (the IaC gives AzureWebJobsStorage through the storage
# arguments; App Service sets WEBSITE_MEMORY_LIMIT_MB where it limits an app's memory).
PLATFORM_SETTINGS = frozenset({"AzureWebJobsStorage", "WEBSITE_MEMORY_LIMIT_MB"})


@dataclass(frozen=True)
class Inventory:
    """Settings the app reads: global names, per-endpoint suffixes, and the endpoint prefixes."""

    globals: FrozenSet[str]
    per_endpoint_suffixes: FrozenSet[str]
    prefixes: FrozenSet[str]

    def expanded(self) -> Set[str]:
        """Every concrete setting name (per-endpoint ones once per prefix)."""
        return set(self.globals) | {f"{p}_{s}" for p in self.prefixes for s in self.per_endpoint_suffixes}


def _constants(tree: ast.Module) -> Dict[str, str]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = node.value.value
    return out


def _callee(node: ast.Call) -> Optional[str]:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        if f.attr == "get" and isinstance(f.value, ast.Attribute) and f.value.attr == "environ":
            return "environ.get"
        return f.attr
    return None


def _name_of(arg: ast.AST, consts: Dict[str, str], found: Set[str], suffixes: Set[str]) -> None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        found.add(arg.value)
    elif isinstance(arg, ast.Name) and arg.id in consts:
        found.add(consts[arg.id])
    elif isinstance(arg, ast.Attribute) and arg.attr.endswith("_SETTING"):
        pass  # a constant of another module: found there as *_SETTING
    elif isinstance(arg, ast.JoinedStr):
        parts = arg.values
        if (len(parts) == 2 and isinstance(parts[0], ast.FormattedValue)
                and isinstance(parts[1], ast.Constant) and str(parts[1].value).startswith("_")):
            suffixes.add(str(parts[1].value)[1:])
        else:
            raise ValueError(f"a setting name built as {ast.unparse(arg)!r}: teach app_settings_inventory")


def scan(files: Iterable[Path]) -> Inventory:
    """The settings read by the given modules."""
    found: Set[str] = set()
    suffixes: Set[str] = set()
    prefixes: Set[str] = set()
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        consts = _constants(tree)
        found |= {v for k, v in consts.items() if k.endswith("_SETTING")}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _callee(node)
                if name == "environ.get":
                    index = 0
                elif name in READERS:
                    index = READERS[name]
                else:
                    continue
                if len(node.args) > index:
                    _name_of(node.args[index], consts, found, suffixes)
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "environ":
                _name_of(node.slice, consts, found, suffixes)
            elif isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and any(
                            isinstance(t, ast.Name) and t.id == "settings_prefix" for t in stmt.targets) \
                            and isinstance(stmt.value, ast.Constant) and stmt.value.value:
                        prefixes.add(stmt.value.value)
    return Inventory(frozenset(found), frozenset(suffixes), frozenset(prefixes))


def scanned() -> Inventory:
    """The settings the code in ``shared/`` reads, as the scan finds them."""
    return scan(sorted(SHARED.rglob("*.py")))


def declared() -> Inventory:
    """The settings the app declares: shared.config's own, and per catalog endpoint its prefix and
    its side files."""
    from shared import catalog, config

    sides = {side.setting for e in catalog.ENDPOINTS for side in e.side_files}
    return Inventory(frozenset(config.GLOBAL_SETTINGS) | frozenset(sides), frozenset(config.MODEL_SETTINGS),
                     frozenset(e.prefix for e in catalog.ENDPOINTS))


def inventory() -> Inventory:
    """Every setting the app reads: what it declares and whatever else the scan finds."""
    d, s = declared(), scanned()
    return Inventory(d.globals | s.globals, d.per_endpoint_suffixes | s.per_endpoint_suffixes,
                     d.prefixes | s.prefixes)
