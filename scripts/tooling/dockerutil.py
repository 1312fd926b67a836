"""Is a Docker engine usable here? (``docker info`` succeeds.)"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess


@functools.lru_cache(maxsize=1)
def docker_available() -> bool:
    """True when the docker CLI exists and ``docker info`` succeeds (an engine answers).

    ``OVAAS_NO_DOCKER=1`` forces False (use the local stand-ins even where Docker runs).
    """
    if os.environ.get("OVAAS_NO_DOCKER", "").lower() in ("1", "true", "yes"):
        return False
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
