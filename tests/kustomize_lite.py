"""Resolve a kustomization (``kubectl apply -k DIR``) into its objects, offline.

The kustomize binary cannot be installed here (a prebuilt binary outside PyPI/npm/Debian), so the
deploy tests build the kustomizations of ``deploy/k8s`` with this small resolver and validate
every resulting object. It implements only what those kustomizations use, with kustomize's
semantics, and refuses anything else (an unknown field is an error, never silently ignored):

- ``resources``: YAML files (several documents each) and directories holding a kustomization;
- ``namespace``: set on every namespaced object (also the generated ones);
- ``configMapGenerator`` / ``secretGenerator``: ``files`` (``[key=]path``), ``envs``,
  ``literals``, ``behavior`` create/replace/merge, with ``generatorOptions.disableNameSuffixHash``
  (the hash suffix is not implemented, so it must be disabled);
- ``patches`` with a ``target`` and a JSON 6902 patch (``path`` or inline ``patch``);
- kustomize's load restrictor: files must lie in or below the kustomization's folder.
"""
from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Dict, List, Optional

import jsonpatch
import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
ALLOWED_FIELDS = {"apiVersion", "kind", "namespace", "resources", "patches", "configMapGenerator",
                  "secretGenerator", "generatorOptions"}
# Kinds without a namespace (those the deploy manifests could use).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "ClusterServingRuntime", "StorageClass", "PersistentVolume", "PriorityClass"}


class KustomizeError(ValueError):
    """The kustomization is invalid, or uses something this resolver does not implement."""


def _kustomization_file(folder: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        if (folder / name).is_file():
            return folder / name
    raise KustomizeError(f"{folder}: no kustomization.yaml")


def _inside(root: Path, path: Path) -> Path:
    resolved = path.resolve()
    if resolved != root.resolve() and root.resolve() not in resolved.parents:
        raise KustomizeError(f"security: {path} is not in or below {root} (kustomize's load restrictor)")
    return resolved


def _read(root: Path, rel: str, example_for_missing: bool) -> Path:
    path = _inside(root, root / rel)
    if not path.is_file():
        example = path.with_name(path.name + ".example")
        if example_for_missing and example.is_file():
            return example
        raise KustomizeError(f"{root}: {rel} does not exist")
    return path


def _key(obj: dict) -> tuple:
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion", "").split("/")[0] if "/" in obj.get("apiVersion", "") else "",
            obj.get("kind"), meta.get("namespace"), meta.get("name"))


def _env_pairs(text: str, where: str) -> Dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise KustomizeError(f"{where}: line {line!r} is not KEY=VALUE")
        key, value = line.split("=", 1)
        out[key.strip()] = value
    return out


def _generate(root: Path, spec: dict, kind: str, namespace: Optional[str],
              example_for_missing: bool) -> tuple:
    unknown = set(spec) - {"name", "namespace", "files", "envs", "literals", "behavior", "type"}
    if unknown:
        raise KustomizeError(f"{root}: {kind} generator fields not implemented: {sorted(unknown)}")
    data: Dict[str, str] = {}
    for entry in spec.get("files", []):
        key, _, rel = entry.partition("=") if "=" in entry else (Path(entry).name, "", entry)
        data[key] = _read(root, rel, example_for_missing).read_text(encoding="utf-8")
    for rel in spec.get("envs", []):
        path = _read(root, rel, example_for_missing)
        data.update(_env_pairs(path.read_text(encoding="utf-8"), str(path)))
    for literal in spec.get("literals", []):
        data.update(_env_pairs(literal, f"{root}: literal"))
    meta = {"name": spec["name"]}
    ns = spec.get("namespace", namespace)
    if ns:
        meta["namespace"] = ns
    obj = {"apiVersion": "v1", "kind": kind, "metadata": meta}
    if kind == "Secret":
        obj["type"] = spec.get("type", "Opaque")
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        obj["data"] = data
    return obj, spec.get("behavior", "create")


def _load_yaml_objects(path: Path) -> List[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise KustomizeError(f"{path}: a resource document without apiVersion/kind")
    return docs


def _matches(obj: dict, target: dict) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name", "namespace"}
    if unknown:
        raise KustomizeError(f"patch target fields not implemented: {sorted(unknown)}")
    api = obj.get("apiVersion", "")
    group, version = api.split("/") if "/" in api else ("", api)
    meta = obj.get("metadata") or {}
    checks = {"group": group, "version": version, "kind": obj.get("kind"),
              "name": meta.get("name"), "namespace": meta.get("namespace")}
    return all(checks[k] == v for k, v in target.items())


def build(folder: Path, example_for_missing: bool = False) -> List[dict]:
    """The objects ``kubectl apply -k folder`` would send, in kustomize's order of resources.

    ``example_for_missing``: a generator input that does not exist (``storage.env``, which the
    operator writes) is read from ``<file>.example`` instead, so a fresh clone can be checked.
    """
    folder = Path(folder)
    kfile = _kustomization_file(folder)
    spec = yaml.safe_load(kfile.read_text(encoding="utf-8")) or {}
    unknown = set(spec) - ALLOWED_FIELDS
    if unknown:
        raise KustomizeError(f"{kfile}: fields not implemented by this resolver: {sorted(unknown)}")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{kfile}: kind must be Kustomization")
    options = spec.get("generatorOptions") or {}
    if set(options) - {"disableNameSuffixHash"}:
        raise KustomizeError(f"{kfile}: generatorOptions not implemented: {sorted(options)}")

    objects: List[dict] = []
    for res in spec.get("resources", []):
        path = folder / res
        if path.is_dir():
            objects += build(path, example_for_missing)
        else:
            objects += _load_yaml_objects(_read(folder, res, False))

    namespace = spec.get("namespace")
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for gen in spec.get(key, []):
            if not options.get("disableNameSuffixHash"):
                raise KustomizeError(f"{kfile}: name hash suffixes are not implemented; "
                                     "set generatorOptions.disableNameSuffixHash")
            obj, behavior = _generate(folder, gen, kind, namespace, example_for_missing)
            existing = [o for o in objects if _key(o) == _key(obj)]
            if behavior == "create":
                if existing:
                    raise KustomizeError(f"{kfile}: {kind} {gen['name']} already exists")
                objects.append(obj)
            elif behavior in ("replace", "merge"):
                if len(existing) != 1:
                    raise KustomizeError(f"{kfile}: {behavior} of a {kind} {gen['name']} that does not exist")
                if behavior == "replace":
                    existing[0]["data"] = obj["data"]
                else:
                    existing[0]["data"].update(obj["data"])
            else:
                raise KustomizeError(f"{kfile}: unknown generator behavior {behavior!r}")

    for patch in spec.get("patches", []):
        if set(patch) - {"path", "patch", "target"} or "target" not in patch:
            raise KustomizeError(f"{kfile}: only targeted patches (path or patch + target) are implemented")
        text = (_read(folder, patch["path"], False).read_text(encoding="utf-8")
                if "path" in patch else patch["patch"])
        ops = yaml.safe_load(text)
        if not isinstance(ops, list):
            raise KustomizeError(f"{kfile}: strategic-merge patches are not implemented (use JSON 6902)")
        hits = [i for i, o in enumerate(objects) if _matches(o, patch["target"])]
        if not hits:
            raise KustomizeError(f"{kfile}: patch target {patch['target']} matches nothing")
        for i in hits:
            try:
                objects[i] = jsonpatch.apply_patch(objects[i], ops)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise KustomizeError(f"{kfile}: patch {patch.get('path', '<inline>')}: {exc}") from exc

    if namespace:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace

    seen = set()
    for obj in objects:
        if _key(obj) in seen:
            raise KustomizeError(f"{kfile}: two resources with the id {_key(obj)}")
        seen.add(_key(obj))
    return copy.deepcopy(objects)
