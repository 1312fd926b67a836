"""Read a Functions app the way the host does: function.json, host.json, local.settings.json.

Only what an HTTP-triggered Python (v1 programming model) app needs is read: the HTTP trigger
binding (``name``, ``methods``, ``authLevel``, ``route``), the ``$return`` / named ``http`` output
binding, ``scriptFile`` / ``entryPoint``, ``extensions.http.routePrefix`` from host.json, and
``Values`` / ``Host`` from local.settings.json.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, MutableMapping, Optional, Tuple

log = logging.getLogger("functions_host")

ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE")
DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_PORT = 7071
#: Kestrel limit Core Tools sets (Constants.DefaultMaxRequestBodySize): 100 MB.
MAX_REQUEST_BODY_BYTES = 104_857_600


class AppConfigError(ValueError):
    """The app's configuration files are malformed."""


def _read_json(path: Path) -> dict:
    try:
        # utf-8-sig: Visual Studio writes these files with a BOM
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise AppConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise AppConfigError(f"{path}: expected a JSON object")
    return data


# --- routes ---------------------------------------------------------------------------------

_INT = r"-?\d+"
_CONSTRAINTS = {
    "int": _INT, "long": _INT,
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?", "float": r"-?\d+(?:\.\d+)?", "decimal": r"-?\d+(?:\.\d+)?",
    "datetime": r"[0-9T:\-\.+Z ]+",
}
_PARAM = re.compile(r"\{(?P<star>\*{1,2})?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"(?P<cons>(?::[^{}?=]+)*)(?P<opt>\?)?(?:=(?P<default>[^{}]*))?\}")


@dataclass
class RouteTemplate:
    """An ASP.NET-style route template (``products/{category:alpha}/{id:int?}``) compiled to a regex."""

    template: str
    regex: re.Pattern
    params: List[str]
    defaults: Dict[str, str]
    literal_segments: int

    def match(self, path: str) -> Optional[Dict[str, str]]:
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        out = dict(self.defaults)
        for name in self.params:
            value = m.group(name)
            if value is not None and value != "":
                out[name] = value
        return out

    @property
    def sort_key(self) -> Tuple[int, int, str]:
        """Literal routes win over parameterised ones (as ASP.NET routing precedence does)."""
        return (len(self.params), -self.literal_segments, self.template)


def compile_route(template: str) -> RouteTemplate:
    """Compile a route template (prefix included, no leading slash)."""
    template = template.strip("/")
    parts: List[str] = []
    params: List[str] = []
    defaults: Dict[str, str] = {}
    literal_segments = 0
    segments = template.split("/") if template else []
    for i, segment in enumerate(segments):
        sep = "/" if i else ""
        pos = 0
        seg_regex = ""
        optional_segment = False
        has_param = False
        for m in _PARAM.finditer(segment):
            has_param = True
            seg_regex += re.escape(segment[pos:m.start()])
            name = m.group("name")
            params.append(name)
            cons = [c for c in m.group("cons").split(":") if c]
            if m.group("star"):
                body = r".*"
            else:
                body = r"[^/]+"
                for c in cons:
                    base = c.split("(")[0].lower()
                    if base in _CONSTRAINTS:
                        body = _CONSTRAINTS[base]
                    elif base == "regex":
                        body = c[c.index("(") + 1:c.rindex(")")].lstrip("^").rstrip("$")
            if m.group("default") is not None:
                defaults[name] = m.group("default")
            optional = bool(m.group("opt")) or m.group("default") is not None or bool(m.group("star"))
            if optional and m.start() == 0 and m.end() == len(segment):
                optional_segment = True
                seg_regex += f"(?P<{name}>{body})"
            else:
                seg_regex += f"(?P<{name}>{body})" + ("?" if optional else "")
            pos = m.end()
        seg_regex += re.escape(segment[pos:])
        if not has_param:
            literal_segments += 1
        if optional_segment:
            parts.append(f"(?:{re.escape(sep)}{seg_regex})?")
        else:
            parts.append(re.escape(sep) + seg_regex)
    regex = re.compile("".join(parts), re.IGNORECASE)
    return RouteTemplate(template, regex, params, defaults, literal_segments)


# --- functions ------------------------------------------------------------------------------

@dataclass
class FunctionSpec:
    """One HTTP-triggered function as the host sees it."""

    name: str
    directory: Path
    script_file: Path
    entry_point: str
    trigger_name: str
    methods: Tuple[str, ...]
    auth_level: str
    route: str  # without the prefix
    route_template: RouteTemplate
    return_binding: Optional[str]  # "$return" or the name of an http output binding
    bindings: List[dict] = field(default_factory=list)

    def url_path(self, prefix: str) -> str:
        return "/" + "/".join(p for p in (prefix.strip("/"), self.route.strip("/")) if p)


def route_prefix(root: Path) -> str:
    """``extensions.http.routePrefix`` of host.json (default ``api``; may be empty)."""
    host_json = root / "host.json"
    if not host_json.is_file():
        return DEFAULT_ROUTE_PREFIX
    data = _read_json(host_json)
    http = (data.get("extensions") or {}).get("http") or data.get("http") or {}
    prefix = http.get("routePrefix", DEFAULT_ROUTE_PREFIX)
    return (prefix if isinstance(prefix, str) else DEFAULT_ROUTE_PREFIX).strip("/")


def _disabled(name: str, spec: dict, env: Mapping[str, str]) -> bool:
    if spec.get("disabled") in (True, "true", "True"):
        return True
    return env.get(f"AzureWebJobs.{name}.Disabled", "").lower() in ("true", "1")


def discover(root: Path, env: Optional[Mapping[str, str]] = None) -> List[FunctionSpec]:
    """Every HTTP-triggered function of the app at ``root`` (top-level folders with function.json)."""
    env = os.environ if env is None else env
    prefix = route_prefix(root)
    specs: List[FunctionSpec] = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        fj = directory / "function.json"
        if not fj.is_file():
            continue
        data = _read_json(fj)
        bindings = data.get("bindings") or []
        trigger = next((b for b in bindings if str(b.get("type", "")).lower() == "httptrigger"), None)
        if trigger is None:
            continue
        name = directory.name
        if _disabled(name, data, env):
            log.info("Function %s is disabled", name)
            continue
        methods_raw = trigger.get("methods")
        methods = tuple(m.upper() for m in methods_raw) if methods_raw else ALL_METHODS
        out = next((b for b in bindings if str(b.get("type", "")).lower() == "http"
                    and str(b.get("direction", "out")).lower() == "out"), None)
        route = str(trigger.get("route") or name).strip("/")
        full = "/".join(p for p in (prefix, route) if p)
        script = directory / data.get("scriptFile", "__init__.py")
        specs.append(FunctionSpec(
            name=name, directory=directory, script_file=script.resolve(),
            entry_point=data.get("entryPoint") or "main", trigger_name=trigger.get("name", "req"),
            methods=methods, auth_level=str(trigger.get("authLevel", "function")).lower(),
            route=route, route_template=compile_route(full),
            return_binding=out.get("name") if out else None, bindings=bindings))
    specs.sort(key=lambda s: s.route_template.sort_key)
    return specs


# --- local.settings.json --------------------------------------------------------------------

@dataclass
class LocalSettings:
    """``local.settings.json``: ``Values`` and the ``Host`` section."""

    values: Dict[str, Optional[str]] = field(default_factory=dict)
    port: Optional[int] = None
    cors: List[str] = field(default_factory=list)
    cors_credentials: bool = False


def read_local_settings(root: Path) -> LocalSettings:
    """Read ``local.settings.json`` (missing file = no settings)."""
    path = root / "local.settings.json"
    if not path.is_file():
        return LocalSettings()
    data = _read_json(path)
    if data.get("IsEncrypted") in (True, "true"):
        raise AppConfigError(f"{path}: encrypted settings are not supported; "
                             "run `func settings decrypt` or write them in clear")
    values = {str(k): (None if v is None else str(v)) for k, v in (data.get("Values") or {}).items()}
    host = data.get("Host") or {}
    port = host.get("LocalHttpPort")
    cors = [o.strip() for o in str(host.get("CORS") or "").split(",") if o.strip()]
    creds = host.get("CORSCredentials") in (True, "true", "True")
    return LocalSettings(values, int(port) if port else None, cors, creds)


def apply_settings(values: Mapping[str, Optional[str]],
                   environ: Optional[MutableMapping[str, str]] = None) -> List[str]:
    """Put settings into the environment as Core Tools does (StartHostAction.UpdateEnvironmentVariables).

    A variable already set to a non-empty value in the real environment wins (the setting is skipped
    with a warning); a non-empty setting is set; an empty one sets the variable to ``""``; a null one
    is skipped. Returns the warnings.
    """
    environ = os.environ if environ is None else environ
    warnings: List[str] = []
    for key, value in values.items():
        if not key:
            warnings.append("Skipping local setting with empty key.")
        elif environ.get(key):
            warnings.append(f"Skipping '{key}' from local settings as it's already defined "
                            "in current environment variables.")
        elif value is None:
            warnings.append(f"Skipping '{key}' because value is null")
        else:
            environ[key] = value
    return warnings
