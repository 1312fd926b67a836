"""Settings for the app in tests: what points an endpoint at a model server."""
from __future__ import annotations

from typing import Dict


def endpoint_env(prefix: str, port: int, model: str, **extra: str) -> Dict[str, str]:
    """Settings that point endpoint ``prefix`` (e.g. ``OBJECTDETECTION``) at ``model`` on the model
    server on ``port`` over KServe, plus ``extra``."""
    env = {f"{prefix}_IPADDRESS": "127.0.0.1", f"{prefix}_PORT": str(port), f"{prefix}_MODEL_NAME": model,
           f"{prefix}_MODEL_VERSION": "latest", "OVMS_API": "kserve"}
    env.update(extra)
    return env
