"""Side files a task needs (char lists, colour coefficients, labels), read once per worker.

A location is a local path or ``az://container/path/in/container``; the latter is read with
azure-storage-blob from the account ``shared.config.storage_source()`` names, so a deployed app
reads them from the same storage account that holds the models: with a connection string (Azurite
locally), or with an account URL and ``azure-identity``'s ``DefaultAzureCredential`` (the Function
App's managed identity on Azure: no key in its settings). Relative local paths are resolved
against the app's root folder (where host.json lives).
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Dict, Tuple
from urllib.parse import urlsplit

from shared import config
from shared.errors import RETRY_STORAGE_S, Misconfigured, ModelUnavailable
from shared.logs import get_logger

log = get_logger("resources")

APP_ROOT = Path(__file__).resolve().parent.parent
_cache: Dict[str, bytes] = {}
_failures: Dict[str, Tuple[float, ModelUnavailable]] = {}
_lock = threading.Lock()
# A side file that could not be read is not retried for this long: requests fail fast meanwhile.
FAILURE_TTL_S = 5.0
# Storage that accepts connections but does not answer (paused, overloaded) fails a read in about
# this long: the connect and each socket read are bounded by it, and the SDK does not retry.
STORAGE_TIMEOUT_S = 2.0


def parse_az_url(location: str) -> Tuple[str, str]:
    """``az://container/a/b.txt`` -> (``container``, ``a/b.txt``)."""
    rest = location[len("az://"):]
    container, _, blob = rest.partition("/")
    if not container or not blob:
        raise ValueError(f"not an az://container/path location: {location!r}")
    return container, blob


def read_bytes(location: str, setting: str = "", timeout_s: float = STORAGE_TIMEOUT_S) -> bytes:
    """The bytes at ``location``, cached for the life of the worker.

    A missing or unreadable side file is a deployment fault, answered as 503 naming the setting.
    """
    data = _cache.get(location)
    if data is not None:
        return data
    with _lock:
        data = _cache.get(location)
        if data is not None:
            return data
        failed = _failures.get(location)
        if failed is not None and time.monotonic() - failed[0] < FAILURE_TTL_S:
            raise failed[1]
        try:
            data = _read_uncached(location, setting, timeout_s)
        except ModelUnavailable as exc:  # Misconfigured included
            _failures[location] = (time.monotonic(), exc)
            raise
        _failures.pop(location, None)
        _cache[location] = data
    return data


def side_file_name(setting: str) -> str:
    """How answers and logs name a side file: by its setting, never by its location (a path or
    URL is the setting's value)."""
    return f"the side file of setting {setting}" if setting else "a side file"


def read_text(location: str, setting: str = "") -> str:
    """The UTF-8 text at ``location`` (cached); 503 naming the setting when it is not UTF-8."""
    try:
        return read_bytes(location, setting).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Misconfigured(f"{side_file_name(setting)} is not UTF-8 text") from None


def _read_uncached(location: str, setting: str, timeout_s: float) -> bytes:
    name = side_file_name(setting)
    if location.startswith("az://"):
        try:
            container, blob = parse_az_url(location)
        except ValueError:
            raise Misconfigured(f"{name} is an invalid location (not az://container/path or a "
                                "file path)") from None
        source = config.storage_source()
        if source is None:
            raise Misconfigured(f"{name} is in storage (az://), which needs AZURE_STORAGE_ACCOUNT_URL "
                                "(identity) or AZURE_STORAGE_CONNECTION_STRING")
        try:
            service = blob_service(source, timeout_s)
            probe_endpoint(service.url, timeout_s)
            data = service.get_blob_client(container, blob).download_blob(
                timeout=max(1, int(timeout_s))).readall()
        except Exception as exc:  # azure raises many types; none of them must reach the client
            log.info("reading %s from storage failed: %s (answered as 503)", name, type(exc).__name__)
            raise ModelUnavailable(f"{name} could not be read from storage",
                                   retry_after=RETRY_STORAGE_S) from None
        log.info("read %s from storage (%d bytes)", name, len(data))
        return data
    path = Path(location)
    if not path.is_absolute():
        path = APP_ROOT / path
    try:
        data = path.read_bytes()
    except OSError:
        raise Misconfigured(f"{name} was not found") from None
    log.info("read %s (%d bytes)", name, len(data))
    return data


_credential = None
_credential_lock = threading.Lock()


def credential():
    """The worker's one ``DefaultAzureCredential`` (it caches its tokens): the managed identity
    on Azure, the Azure CLI login on a workstation."""
    global _credential
    with _credential_lock:
        if _credential is None:
            from azure.identity import DefaultAzureCredential  # imported on first use only

            _credential = DefaultAzureCredential()
        return _credential


def blob_service(source: config.StorageSource, timeout_s: float = STORAGE_TIMEOUT_S):
    """A BlobServiceClient for ``source``: from its connection string, or its account URL with
    :func:`credential` (no request is made here)."""
    from azure.storage.blob import BlobServiceClient  # imported on first use only

    options = dict(connection_timeout=timeout_s, read_timeout=timeout_s, retry_total=0)
    if source.uses_identity:
        return BlobServiceClient(source.account_url, credential=credential(), **options)
    return BlobServiceClient.from_connection_string(source.connection_string, **options)


def probe_endpoint(url: str, timeout_s: float) -> None:
    """Fail at once (OSError) when the storage endpoint does not accept connections; the SDK's
    own retries would otherwise hold a request for many seconds."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
        pass


def clear_cache() -> None:
    """Forget cached side files and failures (tests)."""
    with _lock:
        _cache.clear()
        _failures.clear()
