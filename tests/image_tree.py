"""The app's file tree as deploy/Dockerfile builds it, and as `func azure functionapp publish`
ships it (the folder minus .funcignore), assembled offline (no Docker engine here):
``assemble(dest)`` copies what the Dockerfile's COPY lines into /home/site/wwwroot copy, skipping
what .dockerignore leaves out of the build context; ``published_functions()`` lists the function
folders .funcignore keeps; ``http_routes(root)`` the HTTP routes a tree's function.json declare."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import pathspec
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
WWWROOT = "/home/site/wwwroot"


def _ignore_spec(path: Path) -> pathspec.PathSpec:
    return pathspec.PathSpec.from_lines("gitwildmatch", path.read_text().splitlines())


def copies(dockerfile: Path = DOCKERFILE) -> List[Tuple[List[str], str]]:
    """(sources, destination) of every COPY (flags dropped), in order."""
    out = []
    for ins in DockerfileParser(path=str(dockerfile)).structure:
        if ins["instruction"] in ("COPY", "ADD"):
            args = [a for a in ins["value"].split() if not a.startswith("--")]
            out.append((args[:-1], args[-1]))
    return out


def assemble(dest: Path, dockerfile: Path = DOCKERFILE) -> Path:
    """The image's /home/site/wwwroot, built from the repository root as the build context."""
    ignored = _ignore_spec(ROOT / ".dockerignore")
    wwwroot = dest / WWWROOT.lstrip("/")
    wwwroot.mkdir(parents=True)
    for sources, target in copies(dockerfile):
        if not target.startswith(WWWROOT):
            continue
        for src in sources:
            path = ROOT / src
            rel = target[len(WWWROOT):].lstrip("/")
            if path.is_dir():
                # COPY <dir> <dest> copies the directory's content into dest
                to = wwwroot / rel if rel else wwwroot / path.name
                shutil.copytree(path, to, dirs_exist_ok=True, ignore=lambda d, names: [
                    n for n in names if ignored.match_file(str((Path(d) / n).relative_to(ROOT)))
                    or ignored.match_file(str((Path(d) / n).relative_to(ROOT)) + "/")])
            else:
                to = wwwroot / rel if rel and not target.endswith("/") else wwwroot / path.name
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, to)
    return wwwroot


def published_functions() -> List[str]:
    """The function folders `func azure functionapp publish` ships (not excluded by .funcignore)."""
    ignored = _ignore_spec(ROOT / ".funcignore")
    return sorted(p.parent.name for p in ROOT.glob("*/function.json")
                  if not ignored.match_file(p.parent.name + "/") and not ignored.match_file(p.parent.name))


def http_routes(root: Path) -> Dict[str, str]:
    """{function folder: route} of every HTTP-triggered function in a tree."""
    routes = {}
    for fj in sorted(root.glob("*/function.json")):
        for binding in json.loads(fj.read_text())["bindings"]:
            if binding.get("type") == "httpTrigger":
                routes[fj.parent.name] = binding.get("route") or fj.parent.name
    return routes
