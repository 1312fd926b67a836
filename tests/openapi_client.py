"""A typed client generated from openapi.yaml by openapi-python-client (pinned in
requirements-dev.txt), as an API user would make it, and what the tests read from it: the lines the
generator printed, the operations it generated (method and route of each) and its modules.

    client = generate_python_client(SPEC_PATH, tmp_path)
    client.skipped()                      # the generator's "Endpoint will not be generated" lines
    client.operations()                   # {"human_pose": ("POST", "/api/HttpTriggerHumanPose"), ...}
    client.api("human_pose").sync_detailed(client=client.connect(url), body=...)
    client.model("PoseAnswer")            # a generated model class

The web team's counterpart (``typescript_client``): openapi-typescript's types for openapi.yaml
(node_modules, package.json) and tests/typescript/ovaas_calls.mts, which calls the API with
openapi-fetch, type-checked by tsc and run by node.

Also the routes the app serves with the methods each binds (``function_routes``), from the
function folders, which is where the Functions host reads them.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = "openapi_python_client"
NODE_BIN = ROOT / "node_modules" / ".bin"
TS_CALLS = Path(__file__).resolve().parent / "typescript" / "ovaas_calls.mts"
#: what openapi-python-client prints for an operation it drops
SKIPPED_MARK = "will not be generated"
#: what it prints when anything at all was left out or could not be read
WARNINGS_MARK = "Warning(s) encountered"
_OPERATION = re.compile(r'"method":\s*"(?P<method>[a-z]+)",\s*"url":\s*"(?P<url>[^"]+)"')


@dataclass(frozen=True)
class GeneratedClient:
    """A generated client package in ``root`` (importable as ``name``) and the generator's output."""

    root: Path
    name: str
    output: str

    @property
    def package(self) -> Path:
        return self.root / self.name

    def skipped(self) -> List[str]:
        """The generator's lines naming an operation it did not generate."""
        return [line.strip() for line in self.output.splitlines() if SKIPPED_MARK in line]

    def warned(self) -> bool:
        """True when the generator reported any warning."""
        return WARNINGS_MARK in self.output or SKIPPED_MARK in self.output

    def operations(self) -> Dict[str, Tuple[str, str]]:
        """{generated module name: (METHOD, route)}, read from each generated request builder."""
        out = {}
        for path in sorted((self.package / "api").glob("*/*.py")):
            if path.name == "__init__.py":
                continue
            found = _OPERATION.findall(path.read_text(encoding="utf-8"))
            assert len(found) == 1, f"{path}: expected one request, found {found}"
            method, url = found[0]
            out[path.stem] = (method.upper(), url)
        return out

    def api(self, operation: str) -> ModuleType:
        """The generated module of ``operation`` (snake case), whatever tag folder holds it."""
        matches = list((self.package / "api").glob(f"*/{operation}.py"))
        assert len(matches) == 1, f"no single generated module for {operation}: {matches}"
        return importlib.import_module(f"{self.name}.api.{matches[0].parent.name}.{operation}")

    def model(self, class_name: str) -> Any:
        """A generated model class by name (``PoseAnswer``, ``Error400``, ...)."""
        return getattr(importlib.import_module(f"{self.name}.models"), class_name)

    def types(self) -> ModuleType:
        """The generated ``types`` module (``File``, ``Unset``, ...)."""
        return importlib.import_module(f"{self.name}.types")

    def connect(self, base_url: str, timeout: float = 60.0) -> Any:
        """The generated ``Client`` for ``base_url`` (an undocumented status raises)."""
        import httpx

        client = importlib.import_module(self.name).Client
        return client(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout),
                      raise_on_unexpected_status=True)


def generate_python_client(spec: Path, out: Path, name: str = "ovaas_client") -> GeneratedClient:
    """Run openapi-python-client on ``spec`` as the README says (``--meta none``) into ``out/name``;
    the generated package is then importable while ``out`` is on ``sys.path``."""
    out.mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)  # its post-generation hooks run ruff from PATH
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([sys.executable, "-m", GENERATOR, "generate", "--path", str(Path(spec).resolve()),
                           "--meta", "none", "--output-path", str(out / name), "--overwrite"],
                          capture_output=True, text=True, env=env, cwd=out, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"openapi-python-client failed ({proc.returncode}):\n{output}"
    return GeneratedClient(out, name, output)


def _run(args: List[str], cwd: Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{Path(str(args[0])).name} failed ({proc.returncode}):\n{output}"
    return output


def typescript_client(spec: Path, out: Path) -> Tuple[str, Path]:
    """openapi-typescript's ``ovaas.d.ts`` for ``spec`` in ``out``, and ovaas_calls.mts compiled
    against it by ``tsc --strict`` (a type error fails): (the generator's output, the .mjs to run)."""
    missing = [t for t in ("openapi-typescript", "tsc") if not (NODE_BIN / t).exists()]
    assert not missing, f"{missing} missing from node_modules: run `bash scripts/bootstrap.sh`"
    out.mkdir(parents=True, exist_ok=True)
    (out / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)
    shutil.copy(TS_CALLS, out / TS_CALLS.name)
    generated = _run([NODE_BIN / "openapi-typescript", Path(spec).resolve(), "-o", out / "ovaas.d.ts"], out)
    _run([NODE_BIN / "tsc", "--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution",
          "nodenext", "--types", "node", "--skipLibCheck", "--outDir", out / "js", out / TS_CALLS.name], out)
    return generated, out / "js" / TS_CALLS.with_suffix(".mjs").name


def run_typescript_calls(script: Path, base_url: str, image: Path) -> Dict[str, Any]:
    """What the compiled ovaas_calls answered (its one line of JSON)."""
    node = shutil.which("node")
    assert node, "node is not on PATH (Node.js 18+ is a prerequisite: README)"
    return json.loads(_run([node, script, base_url.rstrip("/"), image], script.parent).strip().splitlines()[-1])


def snake_case(operation_id: str) -> str:
    """The module name openapi-python-client gives an operation id (its own conversion)."""
    from openapi_python_client.strings import snake_case as generator_snake_case

    return generator_snake_case(operation_id)


def function_routes(root: Path = ROOT) -> Dict[str, Tuple[str, ...]]:
    """{"/api/<route>": (METHOD, ...)}: every HTTP-triggered function and the methods it binds."""
    routes = {}
    for fj in sorted(root.glob("*/function.json")):
        binding = next(b for b in json.loads(fj.read_text(encoding="utf-8"))["bindings"]
                       if b["type"] == "httpTrigger")
        routes["/api/" + binding.get("route", fj.parent.name)] = tuple(m.upper() for m in binding["methods"])
    return routes
