"""OVMS command line and ``config.json`` parsing into :class:`ModelConfig` entries."""
from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

log = logging.getLogger("ovms.config")

Shape = Union[None, str, List[int], Dict[str, Any]]


class ConfigError(ValueError):
    """The command line or config.json is invalid (the server refuses to start)."""


@dataclass
class VersionPolicy:
    """OVMS model_version_policy: latest{num_versions}, specific{versions} or all{}."""

    kind: str = "latest"
    num_versions: int = 1
    versions: List[int] = field(default_factory=list)

    def select(self, available: Sequence[int]) -> List[int]:
        """The versions to serve among those found in the repository."""
        found = sorted(set(available))
        if self.kind == "all":
            return found
        if self.kind == "specific":
            return sorted(v for v in set(self.versions) if v in found)
        return found[-self.num_versions:] if self.num_versions > 0 else []

    @classmethod
    def parse(cls, raw: Optional[Dict[str, Any]]) -> "VersionPolicy":
        if not raw:
            return cls()
        if not isinstance(raw, dict) or len(raw) != 1:
            raise ConfigError("Model version policy is in wrong format")
        (kind, body), = raw.items()
        body = body or {}
        if kind == "latest":
            n = body.get("num_versions", 1)
            if not isinstance(n, int) or n < 1:
                raise ConfigError("Model version policy is in wrong format")
            return cls("latest", num_versions=n)
        if kind == "specific":
            versions = body.get("versions")
            if not isinstance(versions, list) or not all(isinstance(v, int) and v > 0 for v in versions):
                raise ConfigError("Model version policy is in wrong format")
            return cls("specific", versions=list(versions))
        if kind == "all":
            return cls("all")
        raise ConfigError("Model version policy contains unsupported key")


@dataclass
class ModelConfig:
    """One served model, as in an OVMS ``model_config_list`` entry."""

    name: str
    base_path: str
    target_device: str = "CPU"
    nireq: int = 0                      # 0 = OpenVINO's OPTIMAL_NUMBER_OF_INFER_REQUESTS
    plugin_config: Dict[str, Any] = field(default_factory=dict)
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    batch_size: Optional[Union[int, str]] = None
    shape: Shape = None
    layout: Optional[Union[str, Dict[str, str]]] = None

    @classmethod
    def from_json(cls, raw: Dict[str, Any], defaults: "ModelConfig") -> "ModelConfig":
        if not isinstance(raw, dict) or not raw.get("name") or not raw.get("base_path"):
            raise ConfigError("config entry needs 'name' and 'base_path'")
        plugin = raw.get("plugin_config", defaults.plugin_config) or {}
        if isinstance(plugin, str):
            plugin = _json_arg(plugin, "plugin_config")
        if not isinstance(plugin, dict):
            raise ConfigError("Plugin config is in wrong format")
        nireq = raw.get("nireq", defaults.nireq) or 0
        if not isinstance(nireq, int) or nireq < 0:
            raise ConfigError("nireq must be a non-negative integer")
        batch = raw.get("batch_size")
        if isinstance(batch, str) and batch not in ("auto", "") and not batch.isdigit():
            raise ConfigError("batch_size must be an integer or 'auto'")
        return cls(name=str(raw["name"]), base_path=str(raw["base_path"]),
                   target_device=str(raw.get("target_device", defaults.target_device) or "CPU"),
                   nireq=nireq, plugin_config=dict(plugin),
                   version_policy=VersionPolicy.parse(raw.get("model_version_policy")),
                   batch_size=batch, shape=raw.get("shape"), layout=raw.get("layout"))


@dataclass
class ServerConfig:
    port: int
    rest_port: int
    grpc_workers: int
    log_level: str
    models: List[ModelConfig]
    config_path: Optional[str]
    grpc_bind_address: str = "0.0.0.0"

    @property
    def grpc_address(self) -> str:
        """``host:port`` to bind (an IPv6 literal in brackets)."""
        host = self.grpc_bind_address
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m emulators.ovms",
                                description="Local OpenVINO Model Server stand-in (KServe v2 + TFS gRPC)")
    p.add_argument("--port", type=int, default=9000, help="gRPC port (KServe v2 and TFS APIs)")
    p.add_argument("--rest_port", type=int, default=0, help="accepted for compatibility; no REST API is served")
    p.add_argument("--grpc_bind_address", default="0.0.0.0",
                   help="address (or host name) the gRPC server listens on; OVMS's default: 0.0.0.0, "
                        "every interface")
    p.add_argument("--rest_bind_address", default="0.0.0.0", help="accepted for compatibility")
    p.add_argument("--grpc_workers", type=int, default=0, help="gRPC handler threads (0 = automatic)")
    p.add_argument("--config_path", default=None, help="OVMS config.json")
    p.add_argument("--model_name", default=None)
    p.add_argument("--model_path", default=None, help="local folder or az://container/path")
    p.add_argument("--target_device", default="CPU")
    p.add_argument("--nireq", type=int, default=0, help="infer requests per model version (0 = optimal)")
    p.add_argument("--plugin_config", default=None, help="JSON object passed to OpenVINO compile_model")
    p.add_argument("--batch_size", default=None)
    p.add_argument("--shape", default=None)
    p.add_argument("--layout", default=None)
    p.add_argument("--model_version_policy", default=None, help="JSON, e.g. '{\"all\": {}}'")
    p.add_argument("--log_level", default="INFO",
                   choices=["TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "trace", "debug", "info", "warning",
                            "error"])
    p.add_argument("--file_system_poll_wait_seconds", type=int, default=1, help="accepted; config is read once")
    p.add_argument("--metrics_enable", action="store_true", help="accepted; no metrics endpoint")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> ServerConfig:
    """Parse the OVMS command line (and config.json when given) into a ServerConfig."""
    args = build_parser().parse_args(argv)
    if args.config_path and (args.model_name or args.model_path):
        raise ConfigError("Use either --config_path or --model_name/--model_path, not both")
    defaults = ModelConfig(name="", base_path="", target_device=args.target_device, nireq=args.nireq,
                           plugin_config=_json_arg(args.plugin_config, "plugin_config") if args.plugin_config else {})
    models: List[ModelConfig] = []
    if args.config_path:
        models = load_config_file(args.config_path)
    elif args.model_name or args.model_path:
        if not (args.model_name and args.model_path):
            raise ConfigError("--model_name and --model_path go together")
        raw: Dict[str, Any] = {"name": args.model_name, "base_path": args.model_path}
        if args.batch_size:
            raw["batch_size"] = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
        if args.shape:
            raw["shape"] = _json_arg(args.shape, "shape") if args.shape.strip().startswith(("{", "[")) else args.shape
        if args.layout:
            raw["layout"] = args.layout
        if args.model_version_policy:
            raw["model_version_policy"] = _json_arg(args.model_version_policy, "model_version_policy")
        models = [ModelConfig.from_json(raw, defaults)]
    else:
        raise ConfigError("Use --config_path, or --model_name with --model_path")
    if not args.grpc_bind_address.strip():
        raise ConfigError("--grpc_bind_address must not be empty")
    return ServerConfig(port=args.port, rest_port=args.rest_port, grpc_workers=args.grpc_workers,
                        log_level=args.log_level.upper(), models=models, config_path=args.config_path,
                        grpc_bind_address=args.grpc_bind_address.strip())


def load_config_file(path: str) -> List[ModelConfig]:
    """Models listed in an OVMS config.json (``model_config_list``); relative base paths are resolved
    against the config file's folder, as OVMS does."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"The file is not valid json: {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model_config_list", []), list):
        raise ConfigError("config.json needs a 'model_config_list' array")
    defaults = ModelConfig(name="", base_path="")
    models: List[ModelConfig] = []
    names = set()
    for entry in data.get("model_config_list", []):
        raw = entry.get("config") if isinstance(entry, dict) else None
        cfg = ModelConfig.from_json(raw, defaults)  # type: ignore[arg-type]
        if cfg.name in names:
            raise ConfigError(f"Duplicated model name: {cfg.name}")
        names.add(cfg.name)
        if "://" not in cfg.base_path and not os.path.isabs(cfg.base_path):
            cfg.base_path = os.path.join(os.path.dirname(os.path.abspath(path)), cfg.base_path)
        models.append(cfg)
    if data.get("pipeline_config_list") or data.get("mediapipe_config_list"):
        log.warning("pipelines/mediapipe graphs are not supported by this emulator; ignored")
    return models
