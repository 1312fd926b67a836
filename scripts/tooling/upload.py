"""Upload model files to Azure Blob storage in the OVMS repository layout (idempotent).

Layout in the container (default ``ovms``)::

    <model>/<version>/<model>.xml, .bin, ...   the model (what ``--model_path az://ovms/<model>`` reads)
    <model>/<side file>                        side files (char lists, .npy, labels), outside versions

A blob whose size and MD5 already match the local file is not uploaded again. Names that could
escape the container path (``..``, ``/``, ``\\``, absolute paths, empty, a trailing newline) are
refused, and so is a ``folder`` holding symbolic links (a link could point anywhere: to
``/etc/passwd``, to a key); files named explicitly (``files``, ``extra_files``) are the caller's
choice and may be links.

The storage is a connection string (Azurite locally: the default) or, with ``--auth-mode login``
and ``--account-name``, an Azure account reached with the user's own Entra ID login (``az login``,
through azure-identity's ``DefaultAzureCredential``): no key, the Storage Blob Data Contributor role
instead (deploy/terraform grants it to whoever applies it).

From Python::

    from scripts.tooling.upload import upload_model
    report = upload_model(conn_str, "human-pose-estimation", folder=Path(".../human-pose-estimation-0001"))
    report = upload_model(AccountLogin.for_account("ovaasprodovaas1a2b3c"), "human-pose-estimation", ...)
    report.uploaded, report.skipped
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import mimetypes
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from shared.resources import probe_endpoint

log = logging.getLogger(__name__)

DEFAULT_CONTAINER = "ovms"
# fullmatch, not match with "$": "$" also matches before a trailing newline ("model\n").
_SAFE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_CONTAINER = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
_MODEL_SUFFIXES = (".xml", ".bin", ".onnx")


@dataclass(frozen=True)
class AccountLogin:
    """A storage account reached with the user's Entra ID login (no key)."""

    account_url: str

    @classmethod
    def for_account(cls, account_name: str) -> "AccountLogin":
        if not re.fullmatch(r"[a-z0-9]{3,24}", account_name or ""):
            raise UploadError(f"invalid storage account name {account_name!r} (3-24 lowercase letters and digits)")
        return cls(f"https://{account_name}.blob.core.windows.net")


#: where an upload goes: a connection string, or an account and the user's login
Target = Union[str, AccountLogin]
AUTH_MODES = ("key", "login")


def storage_target(connection_string: Optional[str] = None, account_name: Optional[str] = None,
                   auth_mode: str = "key") -> Target:
    """The upload's storage, as the az CLI picks it: ``login`` = the account by name with the
    user's login (a connection string is then refused: it would carry a key); ``key`` = the
    connection string given, else $AZURE_STORAGE_CONNECTION_STRING, else the local Azurite."""
    if auth_mode not in AUTH_MODES:
        raise UploadError(f"--auth-mode must be one of {', '.join(AUTH_MODES)}, not {auth_mode!r}")
    if auth_mode == "login":
        if connection_string:
            raise UploadError("--auth-mode login takes --account-name, not a connection string")
        if not account_name:
            raise UploadError("--auth-mode login needs --account-name (terraform output storage_account_name)")
        return AccountLogin.for_account(account_name)
    if account_name and not connection_string:
        raise UploadError("--account-name needs --auth-mode login (or give a connection string)")
    return connection_string or default_connection_string()


class UploadError(Exception):
    """An upload failed for a reason the user can fix (message is meant to be printed)."""


class StorageUnreachable(UploadError):
    """The storage endpoint did not answer (or refused the credentials)."""


@dataclass
class UploadReport:
    """What an upload did: blob names uploaded and skipped (already identical)."""

    container: str
    uploaded: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)


def safe_part(part: str, what: str = "name") -> str:
    """Return ``part`` if it is one safe path segment, else raise UploadError."""
    if not isinstance(part, str) or not _SAFE_PART.fullmatch(part) or part in (".", ".."):
        raise UploadError(f"refusing {what} {part!r}: only letters, digits, '.', '_' and '-' are "
                          "allowed (no '/', '\\', '..' or absolute paths)")
    return part


def blob_name(*parts: str) -> str:
    """Join checked segments into a blob name."""
    return "/".join(safe_part(p, "path segment") for p in parts)


def _walk(folder: Path) -> List[Path]:
    """The files under ``folder`` (hidden ones left out); UploadError if any entry is a symbolic
    link, file or folder: it is refused, not skipped, so a model is never uploaded incomplete."""
    files: List[Path] = []
    links: List[str] = []
    for root, dirs, names in os.walk(folder):  # does not descend into linked folders
        here = Path(root)
        links += [str((here / n).relative_to(folder)) for n in dirs + names if (here / n).is_symlink()]
        files += [here / n for n in names if not n.startswith(".") and (here / n).is_file()]
    if links:
        raise UploadError(f"refusing to upload {folder}: it holds symbolic links ({', '.join(sorted(links))}); "
                          "copy the files in, or name them with --xml_file_path/--bin_file_path/"
                          "--extra_file")
    return sorted(files)


def plan_model_upload(model_name: str, *, files: Sequence[Path] = (), folder: Optional[Path] = None,
                      version: int = 1, extra_files: Sequence[Path] = ()) -> List[Tuple[Path, str]]:
    """The (local file, blob name) pairs of one model upload.

    ``files`` go to ``<model>/<version>/``. ``folder`` in OVMS layout (numeric version folders) is
    mirrored as is, its loose files becoming side files; any other folder (an Open Model Zoo
    precision folder, say) goes to ``<model>/<version>/``. ``extra_files`` go to ``<model>/``.
    """
    safe_part(model_name, "model name")
    if not isinstance(version, int) or version < 1:
        raise UploadError(f"version must be a positive integer, not {version!r}")
    plan: List[Tuple[Path, str]] = []
    for f in files:
        plan.append((Path(f), blob_name(model_name, str(version), Path(f).name)))
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise UploadError(f"{folder} is not a folder")
        walked = _walk(folder)
        version_dirs = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
        if version_dirs:
            for path in walked:
                rel = path.relative_to(folder).parts
                plan.append((path, blob_name(model_name, *rel)))
        else:
            for path in walked:
                rel = path.relative_to(folder).parts
                plan.append((path, blob_name(model_name, str(version), *rel)))
    for f in extra_files:  # an explicit side file wins over a same-named one found in the folder
        name = blob_name(model_name, Path(f).name)
        plan = [(p, b) for p, b in plan if b != name]
        plan.append((Path(f), name))
    if not plan:
        raise UploadError("nothing to upload: give --xml_file_path/--bin_file_path, --folder "
                          "or --extra_file")
    missing = [str(p) for p, _ in plan if not p.is_file()]
    if missing:
        raise UploadError("file(s) not found: " + ", ".join(missing))
    names = [b for _, b in plan]
    dupes = sorted({b for b in names if names.count(b) > 1})
    if dupes:
        raise UploadError("two files map to the same blob: " + ", ".join(dupes))
    if not any(b.endswith(_MODEL_SUFFIXES) for b in names if b.count("/") >= 2):
        log.warning("no .xml/.bin/.onnx in the upload of %s: OVMS will find no model version",
                    model_name)
    return plan


def file_md5(path: Path) -> bytes:
    """MD5 digest of a file (what Blob storage keeps as Content-MD5)."""
    h = hashlib.md5()  # noqa: S324 - integrity comparison with Blob's Content-MD5, not security
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def _client(target: Target, timeout: float):
    from azure.storage.blob import BlobServiceClient
    options = dict(retry_total=2, retry_connect=1, retry_backoff_factor=0.2,
                   connection_timeout=timeout, read_timeout=max(timeout, 60))
    if isinstance(target, AccountLogin):
        from azure.identity import DefaultAzureCredential

        # the Azure CLI login (or any other non-interactive source DefaultAzureCredential knows)
        return BlobServiceClient(target.account_url, credential=DefaultAzureCredential(), **options)
    try:
        return BlobServiceClient.from_connection_string(target, **options)
    except ValueError as exc:
        raise UploadError(f"invalid storage connection string: {exc}") from exc


def _hint(target: Target) -> str:
    if isinstance(target, AccountLogin):
        return ("Are you logged in (az login) with the Storage Blob Data Contributor role on the "
                "account, and is the account name right?")
    return "Is Azurite running (scripts/LaunchAzurite.sh) or the connection string right?"


def upload_files(connection_string: Target, plan: Iterable[Tuple[Path, str]],
                 container: str = DEFAULT_CONTAINER, timeout: float = 5.0,
                 progress: bool = False) -> UploadReport:
    """Upload (file, blob) pairs, skipping blobs whose size and MD5 already match."""
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                       ResourceExistsError, ServiceRequestError)
    from azure.storage.blob import ContentSettings

    if not _CONTAINER.fullmatch(container):
        raise UploadError(f"invalid container name {container!r} (3-63 lowercase letters, digits, "
                          "single hyphens)")
    plan = list(plan)
    for _, name in plan:
        for part in name.split("/"):
            safe_part(part, "path segment")
    report = UploadReport(container)
    service = _client(connection_string, timeout)
    endpoint = service.url
    try:  # fail fast instead of azure-core's retry loop when nothing listens there
        probe_endpoint(endpoint, timeout)
    except OSError as exc:
        raise StorageUnreachable(
            f"cannot reach Blob storage at {endpoint}: {exc}. {_hint(connection_string)}") from exc
    try:
        cc = service.get_container_client(container)
        try:
            cc.create_container()
        except ResourceExistsError:
            pass
        prefixes = sorted({name.split("/", 1)[0] + "/" for _, name in plan})
        existing = {}
        for prefix in prefixes:
            for b in cc.list_blobs(name_starts_with=prefix):
                existing[b.name] = (b.size, bytes(b.content_settings.content_md5 or b""))
        for path, name in plan:
            md5 = file_md5(path)
            size = path.stat().st_size
            if existing.get(name) == (size, md5):
                report.skipped.append(name)
                if progress:
                    print(f"  unchanged  {container}/{name}")
                continue
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if progress:
                print(f"  uploading  {container}/{name} ({size} bytes)", flush=True)
            with open(path, "rb") as data:
                cc.upload_blob(name, data, overwrite=True, length=size, max_concurrency=2,
                               content_settings=ContentSettings(content_type=ctype,
                                                                content_md5=bytearray(md5)))
            report.uploaded.append(name)
    except ServiceRequestError as exc:
        raise StorageUnreachable(
            f"cannot reach Blob storage at {endpoint}: {exc.message if hasattr(exc, 'message') else exc}. "
            f"{_hint(connection_string)}") from exc
    except ClientAuthenticationError as exc:
        raise StorageUnreachable(f"Blob storage at {endpoint} refused the credentials: "
                                 f"{str(exc).splitlines()[0]}. {_hint(connection_string)}") from exc
    except HttpResponseError as exc:
        raise UploadError(f"Blob storage at {endpoint} answered {exc.status_code}: "
                          f"{str(exc).splitlines()[0]}") from exc
    finally:
        service.close()
    log.info("upload to %s: %d uploaded, %d unchanged", container, len(report.uploaded),
             len(report.skipped))
    return report


def with_u8_inputs(plan: List[Tuple[Path, str]], workdir: Path) -> List[Tuple[Path, str]]:
    """The plan with each model version's IR (.xml and its .bin) replaced by a copy whose image
    inputs take u8 (``scripts.tooling.modelprep``), written under ``workdir``; same blob names."""
    from scripts.tooling.modelprep import u8_image_inputs

    converted = {}
    for path, blob in plan:
        if path.suffix == ".xml" and blob.count("/") >= 2:
            target = workdir / str(len(converted))
            changed = u8_image_inputs(path, target)
            log.info("%s: u8 inputs %s", blob, ", ".join(changed) or "none (unchanged)")
            converted[path.with_suffix("")] = target
    return [(converted[path.with_suffix("")] / path.name, blob)
            if path.suffix in (".xml", ".bin") and path.with_suffix("") in converted else (path, blob)
            for path, blob in plan]


def upload_model(connection_string: Target, model_name: str, *, files: Sequence[Path] = (),
                 folder: Optional[Path] = None, version: int = 1,
                 container: str = DEFAULT_CONTAINER, extra_files: Sequence[Path] = (),
                 timeout: float = 5.0, progress: bool = False, u8_input: bool = False) -> UploadReport:
    """Upload one model (and its side files) in OVMS layout; see :func:`plan_model_upload`.
    ``u8_input``: upload its IR with u8 image inputs (``scripts.tooling.modelprep``)."""
    plan = plan_model_upload(model_name, files=files, folder=folder, version=version,
                             extra_files=extra_files)
    if not u8_input:
        return upload_files(connection_string, plan, container=container, timeout=timeout, progress=progress)
    with tempfile.TemporaryDirectory(prefix="ovaas-u8-") as tmp:
        return upload_files(connection_string, with_u8_inputs(plan, Path(tmp)), container=container,
                            timeout=timeout, progress=progress)


def default_connection_string() -> str:
    """AZURE_STORAGE_CONNECTION_STRING, else the local Azurite account."""
    from scripts.tooling.azurite import connection_string
    return os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or connection_string()


def main(argv: Optional[List[str]] = None) -> int:
    """CLI of UploadModelFilesToAzureStorage.py."""
    p = argparse.ArgumentParser(
        prog="UploadModelFilesToAzureStorage.py",
        description="Upload model files to Blob storage as <container>/<model>/<version>/<file> "
                    "(side files as <container>/<model>/<file>). Re-running uploads nothing "
                    "unchanged.")
    p.add_argument("--model_name", "--model-name", required=True, help="the model name OVMS serves")
    p.add_argument("--xml_file_path", "--xml-file-path", type=Path)
    p.add_argument("--bin_file_path", "--bin-file-path", type=Path)
    p.add_argument("--folder", type=Path,
                   help="upload a whole folder (OVMS layout <ver>/..., or a folder of model files)")
    p.add_argument("--extra_file", "--extra-file", type=Path, action="append", default=[],
                   help="side file stored beside the versions as <model>/<file> (repeatable)")
    p.add_argument("--version", type=int, default=1, help="model version folder (default 1)")
    p.add_argument("--container", default=DEFAULT_CONTAINER, help="container (default ovms)")
    p.add_argument("--connection_string", "--connection-string", default=None,
                   help="default: $AZURE_STORAGE_CONNECTION_STRING, else local Azurite")
    p.add_argument("--account-name", "--account_name", default=None,
                   help="with --auth-mode login: the storage account (terraform output storage_account_name)")
    p.add_argument("--auth-mode", "--auth_mode", choices=AUTH_MODES, default="key",
                   help="key: a connection string (default); login: your Azure CLI login, no key (as az storage)")
    p.add_argument("--timeout", type=float, default=5.0, help="connect timeout, seconds")
    p.add_argument("--u8-input", action="store_true",
                   help="upload the IR with u8 image inputs, converted to f32 inside the model: identical "
                        "answers from an endpoint that feeds whole 8-bit levels (pose, detection, "
                        "handwriting), a quarter of the bytes per request (needs the openvino package)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    files = [f for f in (args.xml_file_path, args.bin_file_path) if f is not None]
    try:
        report = upload_model(storage_target(args.connection_string, args.account_name, args.auth_mode),
                              args.model_name, files=files, folder=args.folder,
                              version=args.version, container=args.container,
                              extra_files=args.extra_file, timeout=args.timeout, progress=True,
                              u8_input=args.u8_input)
    except StorageUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except UploadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(report.uploaded)} uploaded, {len(report.skipped)} unchanged "
          f"(container '{report.container}', model '{args.model_name}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
