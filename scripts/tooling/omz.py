"""GetModelList / DownloadModel: Open Model Zoo models for a release, verified and resumable.

Where things come from (each overridable, so the logic can be tested against a local server):

* ``OMZ_REPO_URL`` (default ``https://raw.githubusercontent.com/openvinotoolkit/open_model_zoo``):
  ``<repo>/<tag>/models/<intel|public>/<model>/model.yml`` (what omz_downloader reads) and side
  files such as ``<repo>/<tag>/data/dataset_classes/kondate_nakayosi.txt``.
* ``OMZ_BASE_URL`` (default ``https://storage.openvinotoolkit.org/repositories/open_model_zoo``):
  replaces that prefix in model.yml ``source`` URLs (``<base>/2021.4/models_bin/3/<model>/FP16/...``).
* ``OMZ_MIRROR_URL`` (default none): other absolute sources (GitHub, vendor sites) are fetched as
  ``<mirror>/<host>/<path>`` when set.

model.yml ``files`` entries: ``name`` (relative path, ``FP16/<model>.xml`` for IR models), ``size``,
and the checksum: ``sha256: <hex>`` in older releases, ``checksum: <hex>`` (SHA-384) in newer ones.
Files land in ``models/<intel|public>/<model>/<name>``; a partial download is kept as ``<file>.part``
and resumed with an HTTP Range request. Public models that need conversion are not converted here:
the exact commands are printed.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence, Tuple

from scripts.tooling.modelsearch import PROJECT_ROOT

log = logging.getLogger(__name__)

DEFAULT_REPO_URL = "https://raw.githubusercontent.com/openvinotoolkit/open_model_zoo"
DEFAULT_BASE_URL = "https://storage.openvinotoolkit.org/repositories/open_model_zoo"
INDEX_PATH = PROJECT_ROOT / "scripts" / "omz_models.json"
MODELS_DIR = PROJECT_ROOT / "models"
_NAME = re.compile(r"[0-9A-Za-z._-]+")  # used with fullmatch: "$" would let "name\n" through
_CHUNK = 1 << 16


class DownloadError(Exception):
    """A download failed (message is meant for the user)."""


class ChecksumMismatch(DownloadError):
    """A downloaded file does not have the checksum model.yml records."""


@dataclass
class Settings:
    """Where OMZ files are fetched from."""

    repo_url: str = DEFAULT_REPO_URL
    base_url: str = DEFAULT_BASE_URL
    mirror_url: Optional[str] = None
    timeout: float = 30.0
    retries: int = 5

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(repo_url=os.environ.get("OMZ_REPO_URL", DEFAULT_REPO_URL).rstrip("/"),
                   base_url=os.environ.get("OMZ_BASE_URL", DEFAULT_BASE_URL).rstrip("/"),
                   mirror_url=(os.environ.get("OMZ_MIRROR_URL") or "").rstrip("/") or None)

    def rewrite(self, source: str) -> str:
        """The URL to fetch for a model.yml ``source``."""
        if source.startswith(DEFAULT_BASE_URL + "/"):
            return self.base_url + source[len(DEFAULT_BASE_URL):]
        if self.mirror_url:
            u = urllib.parse.urlsplit(source)
            return f"{self.mirror_url}/{u.netloc}{u.path}"
        return source


@dataclass
class FileSpec:
    """One file to fetch: relative destination, expected size and checksum, URL."""

    name: str
    size: Optional[int]
    algorithm: Optional[str]
    digest: Optional[str]
    url: str


@dataclass
class DownloadResult:
    """What DownloadModel produced."""

    model: str
    group: str
    folder: Path
    downloaded: List[Path] = field(default_factory=list)
    unchanged: List[Path] = field(default_factory=list)
    framework: str = "dldt"
    conversion_help: Optional[str] = None


def load_index(path: Path = INDEX_PATH) -> dict:
    """The shipped model index (releases -> tag and models, side files)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def release_tag(release: str, index: dict) -> str:
    """The git tag of an OMZ release (``latest`` = ``master``)."""
    info = index.get("releases", {}).get(release)
    if info:
        return info["tag"]
    if release == "latest":
        return "master"
    if not re.fullmatch(r"\d{4}\.\d+(\.\d+)?", release):
        raise DownloadError(f"unknown Open Model Zoo release {release!r} (e.g. latest, 2021.1, 2023.0)")
    return release


def list_models(release: str, index: Optional[dict] = None) -> Dict[str, List[str]]:
    """GetModelList: ``{"intel": [...], "public": [...]}`` for a release (from the shipped index)."""
    index = index or load_index()
    info = index.get("releases", {}).get(release)
    if info is None:
        raise DownloadError(f"no model index for release {release!r}; known: "
                            f"{', '.join(sorted(index.get('releases', {})))}")
    out: Dict[str, List[str]] = {"intel": [], "public": []}
    for name, group in sorted(info["models"].items()):
        out.setdefault(group, []).append(name)
    return out


# --- HTTP ----------------------------------------------------------------------------------

def _open(url: str, settings: Settings, headers: Optional[Dict[str, str]] = None):
    req = urllib.request.Request(url, headers={"User-Agent": "ovaas-downloader/1", **(headers or {})})
    return urllib.request.urlopen(req, timeout=settings.timeout)  # noqa: S310 - http(s) only


def fetch_bytes(url: str, settings: Settings) -> bytes:
    """GET a small file (model.yml)."""
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"refusing non-HTTP URL {url}")
    try:
        with _open(url, settings) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"cannot reach {url}: {getattr(exc, 'reason', exc)} "
                            "(no internet? see OMZ_BASE_URL / OMZ_REPO_URL / OMZ_MIRROR_URL)") from exc


class _Progress:
    def __init__(self, label: str, total: Optional[int], enabled: bool) -> None:
        self.label, self.total, self.enabled, self.last = label, total, enabled, -1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        if self.total:
            pct = int(done * 100 / self.total)
            if pct // 10 != self.last // 10 or done == self.total:
                self.last = pct
                print(f"  {self.label}: {pct:3d}% ({done}/{self.total} bytes)", file=sys.stderr,
                      flush=True)
        elif done and self.last < 0:
            self.last = 0
            print(f"  {self.label}: downloading", file=sys.stderr, flush=True)


def _hash_file(path: Path, algorithm: str) -> "hashlib._Hash":
    h = hashlib.new(algorithm)
    if path.exists():
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h


def _verify(path: Path, spec: FileSpec) -> bool:
    if spec.size is not None and path.stat().st_size != spec.size:
        return False
    if spec.algorithm and spec.digest:
        return _hash_file(path, spec.algorithm).hexdigest() == spec.digest.lower()
    return True


def download_file(spec: FileSpec, dest: Path, settings: Settings, progress: bool = True) -> bool:
    """Fetch one file to ``dest`` via ``dest.part`` (resumed with Range); verify; True if fetched.

    An existing ``dest`` that verifies is kept (returns False). A checksum mismatch deletes the
    partial file and raises ChecksumMismatch.
    """
    if dest.exists() and _verify(dest, spec):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    bar = _Progress(spec.name, spec.size, progress)
    attempt = 0
    while True:
        attempt += 1
        have = part.stat().st_size if part.exists() else 0
        if spec.size is not None and have > spec.size:
            part.unlink()
            have = 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            if spec.size is not None and have == spec.size:
                break
            with _open(spec.url, settings, headers) as resp:
                if have and resp.status != 206:
                    have = 0  # server ignored Range: start over
                mode = "ab" if have else "wb"
                with open(part, mode) as out:
                    done = have
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        done += len(chunk)
                        bar.update(done)
            if spec.size is None or part.stat().st_size >= spec.size:
                break
            raise DownloadError("connection closed early")
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # range not satisfiable: the part is complete or bad
                break
            raise DownloadError(f"{spec.url}: HTTP {exc.code}") from exc
        except (http.client.IncompleteRead, ConnectionError, TimeoutError, DownloadError,
                urllib.error.URLError, OSError) as exc:
            if attempt >= settings.retries:
                raise DownloadError(f"{spec.url}: {exc} (gave up after {attempt} attempts; "
                                    f"re-run to resume from {part})") from exc
            log.warning("download of %s interrupted (%s); resuming", spec.name, exc)
            if progress:
                print(f"  {spec.name}: interrupted ({type(exc).__name__}), resuming",
                      file=sys.stderr, flush=True)
    if not _verify(part, spec):
        got_size = part.stat().st_size
        part.unlink()
        raise ChecksumMismatch(f"{spec.name}: checksum/size mismatch (got {got_size} bytes, "
                               f"expected {spec.size} with {spec.algorithm} {spec.digest}); "
                               "the partial file was deleted")
    os.replace(part, dest)
    return True


# --- model.yml -----------------------------------------------------------------------------

def _checksum(entry: dict) -> Tuple[Optional[str], Optional[str]]:
    if "sha256" in entry:
        return "sha256", str(entry["sha256"])
    value = entry.get("checksum")
    if isinstance(value, dict):
        return str(value.get("$type", "sha384")), str(value["value"])
    if isinstance(value, str):
        return ("sha256" if len(value) == 64 else "sha384"), value
    return None, None


def _source_url(source) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, dict) and source.get("$type") == "http":
        return source["url"]
    raise DownloadError(f"unsupported file source {source!r} (use omz_downloader for it)")


def model_files(model_yml: dict, settings: Settings, precisions: Optional[Sequence[str]] = None
                ) -> List[FileSpec]:
    """The files of a model.yml, with checked names, filtered to ``precisions`` for IR models."""
    specs = []
    for entry in model_yml.get("files", []):
        name = str(entry["name"])
        pp = PurePosixPath(name)
        if pp.is_absolute() or ".." in pp.parts or "\\" in name or not all(
                _NAME.fullmatch(p) for p in pp.parts):
            raise DownloadError(f"refusing file name {name!r} from model.yml")
        if precisions and len(pp.parts) == 2 and pp.parts[0].startswith("FP") \
                and pp.parts[0] not in precisions:
            continue
        algorithm, digest = _checksum(entry)
        size = entry.get("size")
        specs.append(FileSpec(name, int(size) if size is not None else None, algorithm, digest,
                              settings.rewrite(_source_url(entry["source"]))))
    return specs


def conversion_help(model: str, framework: str, group_dir: Path, output: Path,
                    precision: Optional[str]) -> str:
    """Exact commands to convert a public model with OpenVINO's own tools, in an isolated venv."""
    extra = {"caffe": "caffe", "tf": "tensorflow2", "pytorch": "pytorch", "onnx": "onnx",
             "mxnet": "mxnet", "paddle": "paddle"}.get(framework, framework)
    version = "2022.3.2" if framework in ("caffe", "mxnet") else "2023.0.2"
    prec = precision or "FP32"
    return "\n".join([
        f"{model} is a {framework} model: it must be converted to OpenVINO IR. Run, from {PROJECT_ROOT}:",
        "  python3 -m venv .omz-venv",
        f"  .omz-venv/bin/pip install \"openvino-dev[{extra}]=={version}\"",
        f"  .omz-venv/bin/omz_downloader --name {model} --output_dir {output}",
        f"  .omz-venv/bin/omz_converter --name {model} --download_dir {output} --output_dir {output} "
        f"--precisions {prec}",
        f"The IR then is {group_dir}/{prec}/{model}.xml (+ .bin)."
        + (" Caffe models need an openvino-dev whose Model Optimizer still reads Caffe "
           "(2022.3 does)." if framework == "caffe" else ""),
    ])


def _apply_postprocessing(model_yml: dict, folder: Path) -> None:
    for step in model_yml.get("postprocessing", []):
        if step.get("$type") == "regex_replace":
            target = folder / step["file"]
            if target.is_file():
                text = target.read_text(encoding="utf-8")
                new, n = re.subn(step["pattern"], step["replacement"], text,
                                 count=step.get("count", 0))
                if n:
                    target.write_text(new, encoding="utf-8")
        else:
            log.warning("postprocessing step %s not applied (run omz_downloader)", step.get("$type"))


def download_model(model: str, release: str = "latest", precision: Optional[str] = None, *,
                   output: Path = MODELS_DIR, settings: Optional[Settings] = None,
                   index: Optional[dict] = None, progress: bool = True) -> DownloadResult:
    """DownloadModel: fetch a model (and its side files) into ``output/<group>/<model>/``."""
    import yaml  # requirements-dev

    if not _NAME.fullmatch(model):
        raise DownloadError(f"invalid model name {model!r}")
    settings = settings or Settings.from_env()
    index = index or load_index()
    tag = release_tag(release, index)
    known = index.get("releases", {}).get(release, {}).get("models", {})
    groups = [known[model]] if model in known else ["intel", "public"]
    model_yml, group, errors = None, None, []
    for g in groups:
        url = f"{settings.repo_url}/{tag}/models/{g}/{model}/model.yml"
        try:
            model_yml, group = yaml.safe_load(fetch_bytes(url, settings)), g
            break
        except DownloadError as exc:
            errors.append(str(exc))
    if model_yml is None or group is None:
        raise DownloadError(f"model {model} not found for release {release}: " + "; ".join(errors))
    folder = Path(output) / group / model
    precisions = [precision] if precision else None
    specs = model_files(model_yml, settings, precisions)
    if precision and not any(s.name.startswith(precision + "/") for s in specs) \
            and model_yml.get("framework", "dldt") == "dldt":
        raise DownloadError(f"{model} has no {precision} files in release {release}")
    result = DownloadResult(model, group, folder, framework=model_yml.get("framework", "dldt"))
    for spec_ in specs:
        dest = folder / spec_.name
        (result.downloaded if download_file(spec_, dest, settings, progress)
         else result.unchanged).append(dest)
    for side in index.get("side_files", {}).get(model, []):
        spec_ = FileSpec(side["name"], side.get("size"), "sha256" if side.get("sha256") else None,
                         side.get("sha256"), f"{settings.repo_url}/{tag}/{side['repo_path']}")
        if not _NAME.fullmatch(spec_.name):
            raise DownloadError(f"refusing side file name {spec_.name!r}")
        dest = folder / spec_.name
        (result.downloaded if download_file(spec_, dest, settings, progress)
         else result.unchanged).append(dest)
    _apply_postprocessing(model_yml, folder)
    if result.framework != "dldt":
        result.conversion_help = conversion_help(model, result.framework, folder, Path(output),
                                                 precision)
    return result


# --- CLI -----------------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    """``list <release>`` (GetModelList) and ``download <model> <release> [precision]`` (DownloadModel)."""
    p = argparse.ArgumentParser(prog="python -m scripts.tooling.omz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("list", help="GetModelList: models of a release")
    lp.add_argument("release", nargs="?", default="latest")
    lp.add_argument("--json", action="store_true")
    dp = sub.add_parser("download", help="DownloadModel: fetch a model into models/")
    dp.add_argument("model")
    dp.add_argument("release", nargs="?", default="latest")
    dp.add_argument("precision", nargs="?", default=None, help="FP32, FP16, FP16-INT8 (default: all)")
    dp.add_argument("--output", type=Path, default=MODELS_DIR)
    dp.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.cmd == "list":
            models = list_models(args.release)
            if args.json:
                print(json.dumps(models, indent=2))
            else:
                for group, names in models.items():
                    for name in names:
                        print(f"{group}/{name}")
            return 0
        result = download_model(args.model, args.release, args.precision, output=args.output,
                                progress=not args.quiet)
    except ChecksumMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.model}: {len(result.downloaded)} downloaded, {len(result.unchanged)} already "
          f"present, in {result.folder}")
    if result.conversion_help:
        print(result.conversion_help)
    return 0


if __name__ == "__main__":
    sys.exit(main())
