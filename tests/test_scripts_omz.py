"""GetModelList / DownloadModel against a local HTTP server serving a fixture Open Model Zoo tree."""
from __future__ import annotations

import hashlib
import http.server
import re
import subprocess
import sys
import threading
from typing import Dict, List

import pytest
import yaml

from scripts.tooling import omz
from scripts.tooling.modelsearch import PROJECT_ROOT, find_model, find_side_file

STORE = omz.DEFAULT_BASE_URL
HW = "handwritten-japanese-recognition-0001"


class FixtureServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: Dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files
        self.truncate_once: set = set()
        self.log: List[tuple] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        srv: FixtureServer = self.server  # type: ignore[assignment]
        rng = self.headers.get("Range")
        srv.log.append((self.path, rng))
        data = srv.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if rng:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not rng and self.path in srv.truncate_once:
            srv.truncate_once.discard(self.path)
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def sha(data: bytes, algo: str = "sha256") -> str:
    return hashlib.new(algo, data).hexdigest()


@pytest.fixture
def omz_server(tmp_path):
    xml = b"<net name='hw'/>" * 10
    binary = bytes(range(256)) * 400  # 100 KB
    charlist = "あ\nい\nう\n".encode()
    npy = b"\x93NUMPY fake 313x2" * 20
    proto = b'layer {\n  name: "Silence"\n  type: "Silence"\n  bottom: "class8_ab"\n}\nrest\n'
    caffemodel = b"caffe" * 100
    det_xml, det_bin = b"<net name='det'/>", b"\x01\x02" * 1000
    hw_src = f"{STORE}/2021.4/models_bin/3/{HW}"
    files_hw = [
        {"name": f"FP16/{HW}.xml", "size": len(xml), "sha256": sha(xml), "source": f"{hw_src}/FP16/{HW}.xml"},
        {"name": f"FP16/{HW}.bin", "size": len(binary), "sha256": sha(binary), "source": f"{hw_src}/FP16/{HW}.bin"},
        {"name": f"FP32/{HW}.xml", "size": 3, "sha256": sha(b"abc"), "source": f"{hw_src}/FP32/{HW}.xml"},
        {"name": f"FP32/{HW}.bin", "size": 3, "sha256": sha(b"abc"), "source": f"{hw_src}/FP32/{HW}.bin"},
    ]
    gh = "https://github.com/richzhang/colorization"
    files_col = [
        {"name": "colorization-v2.prototxt", "size": len(proto), "sha256": sha(proto),
         "source": "https://raw.githubusercontent.com/richzhang/colorization/master/models/colorization_deploy_v2.prototxt"},
        {"name": "colorization-v2.caffemodel", "size": len(caffemodel), "sha256": sha(caffemodel),
         "source": "http://eecs.berkeley.edu/~rich.zhang/projects/2016_colorization/files/demo_v2/colorization_release_v2.caffemodel"},
        {"name": "colorization-v2.npy", "size": len(npy), "sha256": sha(npy),
         "source": f"{gh}/raw/master/resources/pts_in_hull.npy"},
    ]
    det = "person-detection-retail-0013"
    det_src = f"{STORE}/2022.1/models_bin/3/{det}/FP16"
    files_det = [  # newer model.yml: `checksum` = SHA-384
        {"name": f"FP16/{det}.xml", "size": len(det_xml), "checksum": sha(det_xml, "sha384"), "source": f"{det_src}/{det}.xml"},
        {"name": f"FP16/{det}.bin", "size": len(det_bin), "checksum": sha(det_bin, "sha384"), "source": f"{det_src}/{det}.bin"},
    ]
    bad = [{"name": "FP16/bad-model.xml", "size": len(xml), "sha256": "0" * 64,
            "source": f"{STORE}/2023.0/models_bin/1/bad-model/FP16/bad-model.xml"},
           {"name": "FP16/bad-model.bin", "size": 1, "sha256": "0" * 64,
            "source": f"{STORE}/2023.0/models_bin/1/bad-model/FP16/bad-model.bin"}]
    evil = [{"name": "../../escape.xml", "size": 1, "sha256": "0" * 64, "source": f"{STORE}/x"}]

    def yml(files, framework="dldt", **extra):
        return yaml.safe_dump({"description": "d", "task_type": "detection", "files": files,
                               "framework": framework, "license": "x", **extra}).encode()

    served = {
        f"/repo/2021.1/models/intel/{HW}/model.yml": yml(files_hw),
        f"/storage/2021.4/models_bin/3/{HW}/FP16/{HW}.xml": xml,
        f"/storage/2021.4/models_bin/3/{HW}/FP16/{HW}.bin": binary,
        "/repo/2021.1/data/dataset_classes/kondate_nakayosi.txt": charlist,
        "/repo/2021.1/models/public/colorization-v2/model.yml": yml(
            files_col, "caffe", model_optimizer_args=["--framework=caffe"],
            postprocessing=[{"$type": "regex_replace", "file": "colorization-v2.prototxt",
                             "pattern": 'layer {\\n  name: "Silence"\\n  type: "Silence"\\n  bottom: "class8_ab"\\n}',
                             "replacement": ""}]),
        "/mirror/raw.githubusercontent.com/richzhang/colorization/master/models/colorization_deploy_v2.prototxt": proto,
        "/mirror/eecs.berkeley.edu/~rich.zhang/projects/2016_colorization/files/demo_v2/colorization_release_v2.caffemodel": caffemodel,
        "/mirror/github.com/richzhang/colorization/raw/master/resources/pts_in_hull.npy": npy,
        f"/repo/2023.0/models/intel/{det}/model.yml": yml(files_det),
        f"/storage/2022.1/models_bin/3/{det}/FP16/{det}.xml": det_xml,
        f"/storage/2022.1/models_bin/3/{det}/FP16/{det}.bin": det_bin,
        "/repo/2023.0/models/intel/bad-model/model.yml": yml(bad),
        "/storage/2023.0/models_bin/1/bad-model/FP16/bad-model.xml": xml,
        "/storage/2023.0/models_bin/1/bad-model/FP16/bad-model.bin": b"x",
        "/repo/2023.0/models/intel/evil-model/model.yml": yml(evil),
    }
    server = FixtureServer(served)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings = omz.Settings(repo_url=server.url + "/repo", base_url=server.url + "/storage",
                            mirror_url=server.url + "/mirror", timeout=5, retries=3)
    index = {"releases": {"2021.1": {"tag": "2021.1", "models": {HW: "intel", "colorization-v2": "public"}},
                          "2023.0": {"tag": "2023.0", "models": {det: "intel"}}},
             "side_files": {HW: [{"name": "kondate_nakayosi.txt",
                                  "repo_path": "data/dataset_classes/kondate_nakayosi.txt",
                                  "size": len(charlist), "sha256": sha(charlist)}]}}
    server.content = {"xml": xml, "bin": binary, "charlist": charlist, "npy": npy}
    yield server, settings, index
    server.shutdown()
    server.server_close()


def test_download_precision_side_file_and_layout(omz_server, tmp_path):
    server, settings, index = omz_server
    result = omz.download_model(HW, "2021.1", "FP16", output=tmp_path, settings=settings,
                                index=index, progress=False)
    folder = tmp_path / "intel" / HW
    assert (folder / "FP16" / f"{HW}.bin").read_bytes() == server.content["bin"]
    assert (folder / "FP16" / f"{HW}.xml").read_bytes() == server.content["xml"]
    assert not (folder / "FP32").exists()  # only the asked precision
    assert (folder / "kondate_nakayosi.txt").read_bytes() == server.content["charlist"]
    assert len(result.downloaded) == 3 and result.conversion_help is None
    assert not list(folder.rglob("*.part"))
    # what the rest of the project looks for
    assert find_model(HW, [tmp_path]) == folder / "FP16"
    assert find_side_file(HW, "kondate_nakayosi.txt", [tmp_path]) == folder / "kondate_nakayosi.txt"
    # a second run fetches nothing
    n = len(server.log)
    again = omz.download_model(HW, "2021.1", "FP16", output=tmp_path, settings=settings,
                               index=index, progress=False)
    assert again.downloaded == [] and len(again.unchanged) == 3
    assert len(server.log) == n + 1  # only model.yml


def test_interrupted_download_is_resumed_with_range(omz_server, tmp_path, capsys):
    server, settings, index = omz_server
    path = f"/storage/2021.4/models_bin/3/{HW}/FP16/{HW}.bin"
    server.truncate_once.add(path)
    omz.download_model(HW, "2021.1", "FP16", output=tmp_path, settings=settings, index=index)
    got = (tmp_path / "intel" / HW / "FP16" / f"{HW}.bin").read_bytes()
    assert got == server.content["bin"]
    requests = [r for r in server.log if r[0] == path]
    assert requests[0] == (path, None)
    assert requests[1][1] == f"bytes={len(server.content['bin']) // 3}-"  # resumed, not restarted
    err = capsys.readouterr().err
    assert "resuming" in err and "100%" in err  # progress shown


def test_resume_from_existing_part_file(omz_server, tmp_path):
    server, settings, index = omz_server
    folder = tmp_path / "intel" / HW / "FP16"
    folder.mkdir(parents=True)
    (folder / f"{HW}.bin.part").write_bytes(server.content["bin"][:1000])
    omz.download_model(HW, "2021.1", "FP16", output=tmp_path, settings=settings, index=index,
                       progress=False)
    assert (folder / f"{HW}.bin").read_bytes() == server.content["bin"]
    assert (f"/storage/2021.4/models_bin/3/{HW}/FP16/{HW}.bin", "bytes=1000-") in server.log


def test_checksum_mismatch_is_rejected(omz_server, tmp_path):
    _, settings, index = omz_server
    with pytest.raises(omz.ChecksumMismatch, match="bad-model.xml"):
        omz.download_model("bad-model", "2023.0", output=tmp_path, settings=settings,
                           index=index, progress=False)
    folder = tmp_path / "intel" / "bad-model" / "FP16"
    assert not (folder / "bad-model.xml").exists()
    assert not (folder / "bad-model.xml.part").exists()


def test_path_escape_in_model_yml_is_refused(omz_server, tmp_path):
    _, settings, index = omz_server
    with pytest.raises(omz.DownloadError, match="refusing"):
        omz.download_model("evil-model", "2023.0", output=tmp_path, settings=settings,
                           index=index, progress=False)
    assert not (tmp_path.parent / "escape.xml").exists()


def test_sha384_checksums_of_newer_releases(omz_server, tmp_path):
    _, settings, index = omz_server
    det = "person-detection-retail-0013"
    result = omz.download_model(det, "2023.0", "FP16", output=tmp_path, settings=settings,
                                index=index, progress=False)
    assert len(result.downloaded) == 2
    assert (tmp_path / "intel" / det / "FP16" / f"{det}.xml").is_file()


def test_public_caffe_model_side_file_and_conversion_help(omz_server, tmp_path):
    server, settings, index = omz_server
    result = omz.download_model("colorization-v2", "2021.1", output=tmp_path, settings=settings,
                                index=index, progress=False)
    folder = tmp_path / "public" / "colorization-v2"
    assert (folder / "colorization-v2.npy").read_bytes() == server.content["npy"]  # 313 clusters
    assert "Silence" not in (folder / "colorization-v2.prototxt").read_text()  # postprocessing
    assert result.framework == "caffe"
    assert "omz_converter --name colorization-v2" in result.conversion_help
    assert "python3 -m venv .omz-venv" in result.conversion_help


def test_unreachable_source_is_a_clear_error(tmp_path):
    settings = omz.Settings(repo_url="http://127.0.0.1:9/repo", base_url="http://127.0.0.1:9",
                            timeout=2, retries=1)
    with pytest.raises(omz.DownloadError, match="cannot reach"):
        omz.download_model(HW, "2021.1", output=tmp_path, settings=settings, progress=False)


def test_model_list_per_release():
    models = omz.list_models("2021.1")
    assert "human-pose-estimation-0001" in models["intel"]
    assert "colorization-v2" in models["public"]
    assert "person-detection-0200" in omz.list_models("2023.0")["intel"]
    assert omz.release_tag("latest", omz.load_index()) == "master"
    proc = subprocess.run([sys.executable, "-m", "scripts.tooling.omz", "list", "2021.1"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "intel/handwritten-japanese-recognition-0001" in proc.stdout


def test_cli_download_offline_exits_nonzero_without_traceback(tmp_path):
    env = {"OMZ_REPO_URL": "http://127.0.0.1:9/repo", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "scripts.tooling.omz", "download", HW, "2021.1",
                           "FP16", "--output", str(tmp_path)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot reach" in proc.stderr and "Traceback" not in proc.stderr
