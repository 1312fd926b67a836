"""Model repositories in OVMS layout (``<base_path>/<version>/*.xml|*.bin|*.onnx``), local or on Azure Blob.

``az://container/path`` is read with ``azure-storage-blob`` using ``AZURE_STORAGE_CONNECTION_STRING``
(as OVMS does); version folders are downloaded to a local cache before loading.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

log = logging.getLogger("ovms.storage")

MODEL_SUFFIXES = (".xml", ".onnx")


class StorageError(RuntimeError):
    """The base path cannot be read (OVMS: PATH_INVALID / AS_* statuses)."""


class Repository:
    """Lists versions of one model and gives a local folder for each."""

    def versions(self) -> List[int]:
        raise NotImplementedError

    def local_version_dir(self, version: int) -> Path:
        raise NotImplementedError


class LocalRepository(Repository):
    def __init__(self, base: str) -> None:
        self.base = Path(base).expanduser()

    def versions(self) -> List[int]:
        if not self.base.is_dir():
            raise StorageError(f"The provided base path is invalid or doesn't exists: {self.base}")
        found = [int(p.name) for p in self.base.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0]
        if not found:
            raise StorageError(f"Not a single model version directory has valid numeric name: {self.base}")
        return sorted(found)

    def local_version_dir(self, version: int) -> Path:
        return self.base / str(version)


class AzureBlobRepository(Repository):
    """``az://container/path/to/model`` on Azure Blob Storage (or Azurite)."""

    def __init__(self, url: str, cache_root: Optional[Path] = None) -> None:
        rest = url.split("://", 1)[1]
        container, _, prefix = rest.partition("/")
        if not container:
            raise StorageError(f"AS Invalid path: {url}")
        self.url = url
        self.container = container
        self.prefix = prefix.strip("/")
        conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if not conn:
            raise StorageError("AS Invalid access rights: AZURE_STORAGE_CONNECTION_STRING is not set "
                               f"(needed to read {url})")
        from azure.storage.blob import BlobServiceClient  # imported lazily: only az:// needs it

        try:
            self._client = BlobServiceClient.from_connection_string(conn).get_container_client(container)
        except ValueError as exc:
            raise StorageError(f"AS Invalid access rights: bad AZURE_STORAGE_CONNECTION_STRING: {exc}") from exc
        self._cache = Path(tempfile.mkdtemp(prefix="ovms-az-", dir=cache_root))
        self._blobs: Optional[Dict[int, List[str]]] = None

    def _list(self) -> Dict[int, List[str]]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        pre = f"{self.prefix}/" if self.prefix else ""
        found: Dict[int, List[str]] = {}
        try:
            for blob in self._client.list_blobs(name_starts_with=pre):
                rel = blob.name[len(pre):]
                head, _, tail = rel.partition("/")
                if head.isdigit() and int(head) > 0 and tail:
                    found.setdefault(int(head), []).append(blob.name)
        except ResourceNotFoundError as exc:
            raise StorageError(f"AS Container not found: {self.container} ({self.url})") from exc
        except AzureError as exc:
            raise StorageError(f"AS Failed to list objects: {self.url}: {exc}") from exc
        if not found:
            raise StorageError(f"Not a single model version directory has valid numeric name: {self.url}")
        return found

    def versions(self) -> List[int]:
        self._blobs = self._list()
        return sorted(self._blobs)

    def local_version_dir(self, version: int) -> Path:
        from azure.core.exceptions import AzureError

        blobs = (self._blobs or self._list()).get(version, [])
        pre = f"{self.prefix}/" if self.prefix else ""
        target = self._cache / str(version)
        for name in blobs:
            dest = target / name[len(pre) + len(str(version)) + 1:]
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(dest, "wb") as f:
                    self._client.download_blob(name).readinto(f)
            except AzureError as exc:
                raise StorageError(f"AS Failed to get object from path: {name}: {exc}") from exc
        log.info("downloaded %d file(s) of %s version %d to %s", len(blobs), self.url, version, target)
        return target


def open_repository(base_path: str) -> Repository:
    """A repository for a local folder or an ``az://`` URL."""
    scheme = base_path.split("://", 1)[0].lower() if "://" in base_path else ""
    if scheme in ("az", "azure"):
        return AzureBlobRepository(base_path)
    if scheme:
        raise StorageError(f"Unsupported model repository scheme '{scheme}://' in {base_path} "
                           "(this emulator reads local folders and az://)")
    return LocalRepository(base_path)


def find_model_file(folder: Path) -> Path:
    """The model file in a version folder: the first ``.xml`` (with its ``.bin``) or ``.onnx``."""
    for suffix in MODEL_SUFFIXES:
        files = sorted(p for p in folder.glob(f"*{suffix}") if p.is_file())
        if files:
            return files[0]
    raise StorageError(f"File not found or cannot open: no .xml or .onnx model in {folder}")
