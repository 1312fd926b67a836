"""Typed settings read from the environment.

Locally they come from ``local.settings.json`` ``Values``; in Azure from the App Settings. Every
endpoint has a settings prefix (``HUMANPOSE``, ``HANDWRITTEN``, ``COLORIZATION``,
``OBJECTDETECTION``) and reads ``<PREFIX>_IPADDRESS``, ``<PREFIX>_PORT``, ``<PREFIX>_MODEL_NAME``,
``<PREFIX>_MODEL_VERSION``, with optional per-model overrides of the global ``OVMS_API`` and
``OVMS_TIMEOUT_SECONDS``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

# The model names the original OVaaS deployment used; kept as defaults so its OVMS config works.
DEFAULT_MODEL_NAMES = {
    "HUMANPOSE": "human-pose-estimation",
    "HANDWRITTEN": "handwritten-japanese-recognition",
    "COLORIZATION": "colorization",
    "OBJECTDETECTION": "object-detection",
}

API_KSERVE = "kserve"
API_TFS = "tfs"
_APIS = (API_KSERVE, API_TFS)

# Well-known Azurite account (public, documented by Microsoft): what UseDevelopmentStorage=true means.
DEVELOPMENT_ACCOUNT = "devstoreaccount1"
DEVELOPMENT_ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
                           "K1SZFPTOtr/KBHBeksoGMGw==")


def development_connection_string(host: str = "127.0.0.1", blob_port: int = 10000) -> str:
    """The connection string of the Azurite development account at ``host:blob_port``."""
    return (f"DefaultEndpointsProtocol=http;AccountName={DEVELOPMENT_ACCOUNT};"
            f"AccountKey={DEVELOPMENT_ACCOUNT_KEY};"
            f"BlobEndpoint=http://{host}:{blob_port}/{DEVELOPMENT_ACCOUNT};")


DEVELOPMENT_STORAGE_CONNECTION_STRING = development_connection_string()


class SettingsError(ValueError):
    """A setting is present but malformed (a deployment error, reported at first use)."""


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
    except ValueError as exc:
        raise SettingsError(f"setting {name}={raw!r} is not a number") from exc
    if value < minimum or (value == minimum and not allow_minimum) or value != value:
        qualifier = "at least" if allow_minimum else "greater than"
        raise SettingsError(f"setting {name}={raw!r} must be {qualifier} {minimum}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"setting {name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise SettingsError(f"setting {name}={raw!r} must be at least {minimum}")
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
    api = (_get(e, f"{prefix}_OVMS_API") or _get(e, "OVMS_API", API_KSERVE) or API_KSERVE).lower()
    if api not in _APIS:
        raise SettingsError(f"OVMS_API must be one of {', '.join(_APIS)}, not {api!r}")
    version_raw = _get(e, f"{prefix}_MODEL_VERSION")
    version: Optional[int] = None
    if version_raw is not None and version_raw.lower() not in ("latest", "0"):
        version = _int(e, f"{prefix}_MODEL_VERSION", 0, minimum=1)
    return ModelSettings(
        prefix=prefix,
        host=_get(e, f"{prefix}_IPADDRESS", "127.0.0.1") or "127.0.0.1",
        port=_int(e, f"{prefix}_PORT", 9000),
        model_name=_get(e, f"{prefix}_MODEL_NAME", DEFAULT_MODEL_NAMES.get(prefix, prefix.lower()))
        or prefix.lower(),
        model_version=version,
        api=api,
        timeout_s=_float(e, f"{prefix}_TIMEOUT_SECONDS", _float(e, "OVMS_TIMEOUT_SECONDS", 10.0)),
        connect_timeout_s=_float(e, "OVMS_CONNECT_TIMEOUT_SECONDS", 0.5),
        metadata_ttl_s=_float(e, "OVMS_METADATA_TTL_SECONDS", 300.0),
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


def health_cache_seconds(env: Optional[Mapping[str, str]] = None) -> float:
    """How long /api/health reuses its last answer (HEALTH_CACHE_SECONDS, default 5; 0 = never)."""
    return _float(_env(env), "HEALTH_CACHE_SECONDS", 5.0, allow_minimum=True)


def side_file_location(setting: str, default: Optional[str] = None,
                       env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Where a task's side file lives: a local path or ``az://container/path`` (or None)."""
    return _get(_env(env), setting, default)


def storage_connection_string(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Connection string for ``az://`` side files: AZURE_STORAGE_CONNECTION_STRING, else
    AzureWebJobsStorage (``UseDevelopmentStorage=true`` means the local Azurite account)."""
    e = _env(env)
    value = _get(e, "AZURE_STORAGE_CONNECTION_STRING") or _get(e, "AzureWebJobsStorage")
    if value and value.replace(" ", "").lower().startswith("usedevelopmentstorage=true"):
        return DEVELOPMENT_STORAGE_CONNECTION_STRING
    return value
