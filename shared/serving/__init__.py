"""Inference adapters behind one small interface (``shared.serving.base.InferenceAdapter``).

``get_adapter(settings)`` returns the worker's single adapter for a model (one gRPC channel per
model-server address, reused across invocations). The API is chosen by the ``OVMS_API``
setting: ``kserve`` (default; OVMS 2026.3+ serves only this) or ``tfs`` (OVMS <= 2026.2); the
channel is plain or TLS by ``<PREFIX>_TLS`` / ``OVMS_TLS`` (``shared.serving.grpc_common``).
gRPC modules are imported on first use, keeping function-module import cheap.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Dict

from shared.config import API_TFS, ModelSettings

if TYPE_CHECKING:  # pragma: no cover
    from shared.serving.base import InferenceAdapter
    from shared.serving.grpc_common import ManagedChannel

_adapters: Dict[tuple, "InferenceAdapter"] = {}
_channels: Dict[tuple, "ManagedChannel"] = {}
_lock = threading.Lock()


def get_adapter(settings: ModelSettings) -> "InferenceAdapter":
    """The cached adapter for ``settings`` (created on first use)."""
    key = (settings.api, settings.address, settings.model_name, settings.model_version,
           settings.timeout_s, settings.connect_timeout_s, settings.metadata_ttl_s,
           settings.tls, settings.tls_ca_file)
    adapter = _adapters.get(key)
    if adapter is not None:
        return adapter
    with _lock:
        adapter = _adapters.get(key)
        if adapter is None:
            from shared.serving.grpc_common import ManagedChannel, read_ca_file, tls_channel_factory

            channel_key = (settings.address, settings.connect_timeout_s, settings.tls, settings.tls_ca_file)
            channel = _channels.get(channel_key)
            if channel is None:
                factory = None
                if settings.tls:
                    roots = read_ca_file(settings.tls_ca_file) if settings.tls_ca_file else None
                    factory = tls_channel_factory(roots)
                channel = ManagedChannel(settings.address, settings.connect_timeout_s, factory, settings.tls)
                _channels[channel_key] = channel
            if settings.api == API_TFS:
                from shared.serving.tfs import TfsAdapter as cls
            else:
                from shared.serving.kserve import KServeAdapter as cls
            adapter = cls(channel, settings.model_name, settings.model_version,
                          settings.timeout_s, settings.metadata_ttl_s)
            _adapters[key] = adapter
    return adapter


def reset() -> None:
    """Close every cached channel and forget every adapter (tests)."""
    with _lock:
        channels = list(_channels.values())
        _channels.clear()
        _adapters.clear()
    for channel in channels:
        channel.stop_watching()
    if channels:
        time.sleep(0.25)  # let gRPC's polling threads exit before the channels close
    for channel in channels:
        try:
            channel.close(settle_s=0)
        except Exception:  # closing a broken channel must not fail a test teardown
            pass
