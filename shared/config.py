"""Typed settings read from the environment.

Locally they come from ``local.settings.json`` ``Values``; in Azure from the App Settings. Every
endpoint has a settings prefix (``shared.catalog``) and reads ``<PREFIX>_IPADDRESS``,
``<PREFIX>_PORT``, ``<PREFIX>_MODEL_NAME``, ``<PREFIX>_MODEL_VERSION``, with optional per-model
overrides of the global ``OVMS_API``, ``OVMS_TIMEOUT_SECONDS`` and ``OVMS_TLS``. Defaults (model names, side-file
locations) come from the catalog.

A malformed setting is a deployment fault: ``SettingsError`` (503, naming the setting). Its value is
never repeated, in the answer or in the log: a secret pasted into the wrong setting stays secret.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple

from shared import catalog
from shared.errors import Misconfigured

#: per-endpoint settings: <PREFIX>_<NAME>
MODEL_SETTINGS = ("IPADDRESS", "PORT", "MODEL_NAME", "MODEL_VERSION", "OVMS_API", "TIMEOUT_SECONDS", "TLS")
#: app-wide settings this module reads
GLOBAL_SETTINGS = ("OVMS_API", "OVMS_TIMEOUT_SECONDS", "OVMS_CONNECT_TIMEOUT_SECONDS",
                   "OVMS_METADATA_TTL_SECONDS", "MAX_BODY_BYTES", "MAX_IMAGE_PIXELS", "MAX_IMAGE_SIDE",
                   "HEALTH_CACHE_SECONDS", "AZURE_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage",
                   "PYTHON_THREADPOOL_THREAD_COUNT", "OVMS_TLS", "OVMS_TLS_CA_FILE",
                   "AZURE_STORAGE_ACCOUNT_URL", "MEMORY_BUDGET_MB", "INSTANCE_MEMORY_MB",
                   "WEBSITE_MEMORY_LIMIT_MB")

API_KSERVE = "kserve"
API_TFS = "tfs"
_APIS = (API_KSERVE, API_TFS)

class SettingsError(Misconfigured):
    """A setting is present but malformed (a deployment error, reported at first use)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"the server is misconfigured: setting {setting} {problem}")
        self.setting = setting


def all_settings() -> List[str]:
    """Every setting the app reads: the global ones, each endpoint's, and each side file's."""
    names = list(GLOBAL_SETTINGS)
    for endpoint in catalog.ENDPOINTS:
        names += [f"{endpoint.prefix}_{s}" for s in MODEL_SETTINGS]
        names += [side.setting for side in endpoint.side_files]
    return names


def _env(env: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if env is None else env


def _get(env: Mapping[str, str], name: str, default: Optional[str] = None) -> Optional[str]:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0,
           allow_minimum: bool = False) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, "is not a number") from None
    if value < minimum or (value == minimum and not allow_minimum) or value != value or value == float("inf"):
        qualifier = "at least" if allow_minimum else "greater than"
        raise SettingsError(name, f"must be a finite number {qualifier} {minimum:g}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingsError(name, "must be true or false")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, "is not an integer") from None
    if value < minimum:
        raise SettingsError(name, f"must be at least {minimum}")
    return value


@dataclass(frozen=True)
class ModelSettings:
    """Where one endpoint's model is served and how to talk to it."""

    prefix: str
    host: str
    port: int
    model_name: str
    model_version: Optional[int]  # None = latest
    api: str  # "kserve" | "tfs"
    timeout_s: float  # deadline of one inference call
    connect_timeout_s: float  # how long to wait for a channel to become ready
    metadata_ttl_s: float  # how long cached metadata is trusted
    tls: bool = False  # gRPC over TLS (a TLS-terminating ingress in front of OVMS), else plain
    tls_ca_file: Optional[str] = None  # PEM roots to trust instead of the system's (TLS only)

    @property
    def address(self) -> str:
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6 literal
        return f"{host}:{self.port}"


def model_settings(prefix: str, env: Optional[Mapping[str, str]] = None) -> ModelSettings:
    """Read the settings of the endpoint whose settings prefix is ``prefix``."""
    e = _env(env)
    prefix = prefix.upper()
    api_setting = f"{prefix}_OVMS_API" if _get(e, f"{prefix}_OVMS_API") else "OVMS_API"
    api = (_get(e, api_setting, API_KSERVE) or API_KSERVE).lower()
    if api not in _APIS:
        raise SettingsError(api_setting, f"must be one of {', '.join(_APIS)}")
    version_raw = _get(e, f"{prefix}_MODEL_VERSION")
    version: Optional[int] = None
    if version_raw is not None and version_raw.lower() not in ("latest", "0"):
        version = _int(e, f"{prefix}_MODEL_VERSION", 0, minimum=1)
    return ModelSettings(
        prefix=prefix,
        host=_get(e, f"{prefix}_IPADDRESS", "127.0.0.1") or "127.0.0.1",
        port=_int(e, f"{prefix}_PORT", 9000),
        model_name=_get(e, f"{prefix}_MODEL_NAME") or _default_model_name(prefix),
        model_version=version,
        api=api,
        timeout_s=_float(e, f"{prefix}_TIMEOUT_SECONDS", _float(e, "OVMS_TIMEOUT_SECONDS", 10.0)),
        connect_timeout_s=_float(e, "OVMS_CONNECT_TIMEOUT_SECONDS", 0.5),
        metadata_ttl_s=_float(e, "OVMS_METADATA_TTL_SECONDS", 300.0),
        tls=_bool(e, f"{prefix}_TLS", _bool(e, "OVMS_TLS", False)),
        tls_ca_file=_get(e, "OVMS_TLS_CA_FILE"),
    )


@dataclass(frozen=True)
class Limits:
    """Request limits shared by every endpoint."""

    max_body_bytes: int
    max_image_pixels: int
    max_image_side: int


def limits(env: Optional[Mapping[str, str]] = None) -> Limits:
    """Read the request limits."""
    e = _env(env)
    return Limits(
        max_body_bytes=_int(e, "MAX_BODY_BYTES", 20 * 1024 * 1024),
        max_image_pixels=_int(e, "MAX_IMAGE_PIXELS", 40_000_000),
        max_image_side=_int(e, "MAX_IMAGE_SIDE", 16384),
    )


def worker_threads(env: Optional[Mapping[str, str]] = None) -> int:
    """Threads the Functions Python worker runs functions on: PYTHON_THREADPOOL_THREAD_COUNT (the
    platform's setting), else Python's ThreadPoolExecutor default, min(32, CPUs + 4)."""
    return _int(_env(env), "PYTHON_THREADPOOL_THREAD_COUNT", min(32, (os.cpu_count() or 1) + 4))


#: cgroup files holding the container's memory limit (v2, then v1); "max" or a huge number = none
CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def instance_memory_bytes(env: Optional[Mapping[str, str]] = None,
                          cgroup_files: Tuple[str, ...] = CGROUP_LIMIT_FILES) -> Tuple[int, str]:
    """(bytes, where from) of the memory this instance has: a cgroup limit, else
    WEBSITE_MEMORY_LIMIT_MB (App Service) or INSTANCE_MEMORY_MB (the Flex instance size, set by
    deploy/terraform), else the machine's physical memory."""
    e = _env(env)
    for path in cgroup_files:
        try:
            raw = open(path, encoding="ascii").read().strip()
        except (OSError, ValueError):
            continue
        if raw.isdigit() and 0 < int(raw) < (1 << 60):
            return int(raw), "cgroup"
    for name in ("WEBSITE_MEMORY_LIMIT_MB", "INSTANCE_MEMORY_MB"):
        if _get(e, name) is not None:
            return _int(e, name, 0) << 20, name
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "machine"
    except (AttributeError, OSError, ValueError):
        return 2048 << 20, "assumed"


def memory_budget_bytes(env: Optional[Mapping[str, str]] = None,
                        cgroup_files: Tuple[str, ...] = CGROUP_LIMIT_FILES) -> int:
    """Bytes the requests in flight on this instance may hold at once: MEMORY_BUDGET_MB, else the
    instance's memory (``instance_memory_bytes``) less the app's resting size (at least 64 MiB)."""
    e = _env(env)
    if _get(e, "MEMORY_BUDGET_MB") is not None:
        return _int(e, "MEMORY_BUDGET_MB", 0) << 20
    total, _ = instance_memory_bytes(e, cgroup_files)
    return max(64 << 20, total - (catalog.APP_RESTING_MB << 20))


def health_cache_seconds(env: Optional[Mapping[str, str]] = None) -> float:
    """How long /api/health reuses its last answer (HEALTH_CACHE_SECONDS, default 5; 0 = never)."""
    return _float(_env(env), "HEALTH_CACHE_SECONDS", 5.0, allow_minimum=True)


def _default_model_name(prefix: str) -> str:
    """The catalog's served name for ``prefix`` (the original OVaaS names, so its OVMS config works)."""
    endpoint = catalog.by_prefix(prefix)
    return endpoint.model_name if endpoint else prefix.lower()


def side_file_location(setting: str, env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Where a side file lives: a local path or ``az://container/path``; the catalog's default when
    the setting is absent (None when there is neither)."""
    side = catalog.side_file(setting)
    return _get(_env(env), setting, side.default if side else None)


@dataclass(frozen=True)
class StorageSource:
    """How ``az://`` side files are reached: a connection string (Azurite locally, or a key where
    a team chooses one), or an account URL read with the app's Azure identity (no key)."""

    setting: str  # the setting the value came from (named in errors, never the value)
    connection_string: Optional[str] = None
    account_url: Optional[str] = None

    @property
    def uses_identity(self) -> bool:
        return self.account_url is not None


def storage_source(env: Optional[Mapping[str, str]] = None) -> Optional[StorageSource]:
    """Where side files are read: AZURE_STORAGE_CONNECTION_STRING, else AZURE_STORAGE_ACCOUNT_URL
    (``https://<account>.blob.core.windows.net``, read through ``DefaultAzureCredential``: the
    managed identity on Azure, the Azure CLI login on a workstation), else the AzureWebJobsStorage
    connection string (``UseDevelopmentStorage=true`` = the local Azurite); None when none is set.
    An account URL that is not an https (or, for Azurite, http) URL is a SettingsError."""
    e = _env(env)
    conn = _get(e, "AZURE_STORAGE_CONNECTION_STRING")
    if conn:
        return StorageSource("AZURE_STORAGE_CONNECTION_STRING", connection_string=conn)
    url = _get(e, "AZURE_STORAGE_ACCOUNT_URL")
    if url:
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("https", "http") or not rest.strip("/"):
            raise SettingsError("AZURE_STORAGE_ACCOUNT_URL", "is not an https:// account URL")
        return StorageSource("AZURE_STORAGE_ACCOUNT_URL", account_url=url.rstrip("/"))
    conn = _get(e, "AzureWebJobsStorage")
    if conn:
        return StorageSource("AzureWebJobsStorage", connection_string=conn)
    return None


def storage_connection_string(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Connection string for ``az://`` side files: AZURE_STORAGE_CONNECTION_STRING, else
    AzureWebJobsStorage (the Azure SDK reads ``UseDevelopmentStorage=true`` as the local Azurite)."""
    e = _env(env)
    return _get(e, "AZURE_STORAGE_CONNECTION_STRING") or _get(e, "AzureWebJobsStorage")
