"""UploadModelFilesToAzureStorage against a real Azurite: layout, idempotence, refusals, errors."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from scripts.tooling import azurite as az
from scripts.tooling.modelsearch import PROJECT_ROOT
from scripts.tooling.upload import UploadError, StorageUnreachable, upload_model

SCRIPT = PROJECT_ROOT / "scripts" / "UploadModelFilesToAzureStorage.py"


def _blobs(cs: str, container: str) -> dict:
    from azure.storage.blob import BlobServiceClient
    with BlobServiceClient.from_connection_string(cs) as svc:
        cc = svc.get_container_client(container)
        return {b.name: cc.download_blob(b.name).readall() for b in cc.list_blobs()}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60, cwd=str(PROJECT_ROOT))


@pytest.fixture
def model_files(tmp_path):
    xml, binary = tmp_path / "m.xml", tmp_path / "m.bin"
    xml.write_text("<net/>")
    binary.write_bytes(bytes(range(256)) * 64)
    return xml, binary


@pytest.mark.needs_azurite
def test_original_arguments_upload_then_reupload_uploads_nothing(azurite, model_files):
    xml, binary = model_files
    args = ["--model_name", "orig-model", "--xml_file_path", str(xml), "--bin_file_path",
            str(binary), "--connection_string", azurite, "--container", "origtest"]
    first = _run(*args)
    assert first.returncode == 0, first.stderr
    assert "2 uploaded, 0 unchanged" in first.stdout
    blobs = _blobs(azurite, "origtest")
    assert blobs == {"orig-model/1/m.xml": xml.read_bytes(), "orig-model/1/m.bin": binary.read_bytes()}
    second = _run(*args)
    assert second.returncode == 0 and "0 uploaded, 2 unchanged" in second.stdout
    # a changed file is uploaded again, the other is not
    binary.write_bytes(b"changed")
    third = _run(*args)
    assert "1 uploaded, 1 unchanged" in third.stdout
    assert _blobs(azurite, "origtest")["orig-model/1/m.bin"] == b"changed"


@pytest.mark.needs_azurite
def test_folder_mode_version_and_side_files(azurite, tmp_path):
    ovms_layout = tmp_path / "pose"
    (ovms_layout / "1").mkdir(parents=True)
    (ovms_layout / "2").mkdir()
    for v in ("1", "2"):
        (ovms_layout / v / "pose.xml").write_text(f"<v{v}/>")
        (ovms_layout / v / "pose.bin").write_bytes(b"b" * 10)
    (ovms_layout / "labels.txt").write_text("person\n")
    report = upload_model(azurite, "human-pose-estimation", folder=ovms_layout, container="foldertest")
    assert sorted(report.uploaded) == [
        "human-pose-estimation/1/pose.bin", "human-pose-estimation/1/pose.xml",
        "human-pose-estimation/2/pose.bin", "human-pose-estimation/2/pose.xml",
        "human-pose-estimation/labels.txt"]
    # an OMZ precision folder goes to --version; extra files beside the versions
    omz = tmp_path / "FP16"
    omz.mkdir()
    (omz / "hw.xml").write_text("<hw/>")
    (omz / "hw.bin").write_bytes(b"w" * 5)
    chars = tmp_path / "kondate_nakayosi.txt"
    chars.write_text("あ\n")
    report = upload_model(azurite, "handwritten-japanese-recognition", folder=omz, version=3,
                          extra_files=[chars], container="foldertest")
    assert sorted(report.uploaded) == ["handwritten-japanese-recognition/3/hw.bin",
                                       "handwritten-japanese-recognition/3/hw.xml",
                                       "handwritten-japanese-recognition/kondate_nakayosi.txt"]
    again = upload_model(azurite, "handwritten-japanese-recognition", folder=omz, version=3,
                         extra_files=[chars], container="foldertest")
    assert again.uploaded == [] and len(again.skipped) == 3
    blobs = _blobs(azurite, "foldertest")
    assert blobs["handwritten-japanese-recognition/kondate_nakayosi.txt"] == chars.read_bytes()
    assert hashlib.md5(blobs["human-pose-estimation/2/pose.xml"]).digest() == \
        hashlib.md5(b"<v2/>").digest()


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "/abs", "a\\b", "", "."])
def test_names_that_escape_the_container_are_refused(name, model_files):
    xml, binary = model_files
    with pytest.raises(UploadError, match="refusing"):
        upload_model("UseDevelopmentStorage=true", name, files=[xml, binary])


def test_cli_refuses_escape_before_touching_storage(model_files):
    xml, binary = model_files
    proc = _run("--model_name", "../../etc", "--xml_file_path", str(xml), "--bin_file_path",
                str(binary), "--connection_string", az.connection_string("127.0.0.1", 9))
    assert proc.returncode == 2
    assert "refusing" in proc.stderr and "Traceback" not in proc.stderr


def test_unreachable_storage_is_a_clear_error(model_files):
    xml, binary = model_files
    port = az.free_port()  # nothing listens there
    cs = az.connection_string("127.0.0.1", port)
    with pytest.raises(StorageUnreachable, match="cannot reach Blob storage"):
        upload_model(cs, "m", files=[xml, binary], timeout=2)
    proc = _run("--model_name", "m", "--xml_file_path", str(xml), "--bin_file_path", str(binary),
                "--connection_string", cs, "--timeout", "2")
    assert proc.returncode == 3
    assert f"127.0.0.1:{port}" in proc.stderr and "Azurite" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_file_is_a_clear_error(tmp_path):
    proc = _run("--model_name", "m", "--xml_file_path", str(tmp_path / "nope.xml"))
    assert proc.returncode == 2 and "not found" in proc.stderr


# ---- issue 14 item 10: a trailing newline, symbolic links --------------------------------------------

@pytest.mark.needs_azurite
def test_model_name_ending_in_a_newline_is_refused(azurite, model_files):
    """``$`` matches before a final newline: "model\\n" passed the check and made blobs
    ``ovms/model\\n/1/m.xml``. Refused now, before anything reaches the storage."""
    xml, binary = model_files
    for name in ("model\n", "model\r\n", "\nmodel"):
        with pytest.raises(UploadError, match="refusing"):
            upload_model(azurite, name, files=[xml, binary], container="newlinetest")
    with pytest.raises(UploadError, match="container"):
        upload_model(azurite, "model", files=[xml, binary], container="newlinetest\n")
    proc = _run("--model_name", "model\n", "--xml_file_path", str(xml), "--bin_file_path", str(binary),
                "--connection_string", azurite, "--container", "newlinetest")
    assert proc.returncode == 2 and "refusing" in proc.stderr and "Traceback" not in proc.stderr
    from azure.core.exceptions import ResourceNotFoundError
    try:
        names = list(_blobs(azurite, "newlinetest"))
    except ResourceNotFoundError:  # the container was never even created
        names = []
    assert names == []


def _folder_with_link(tmp_path, link_dir: bool = False):
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    folder = tmp_path / "model"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "m.xml").write_text("<net/>")
    (folder / "1" / "m.bin").write_bytes(b"\x00" * 16)
    if link_dir:
        (folder / "1" / "extra").symlink_to(secret.parent, target_is_directory=True)
    else:
        (folder / "1" / "passwd").symlink_to(secret)
    return folder


@pytest.mark.needs_azurite
@pytest.mark.parametrize("link_dir", [False, True], ids=["file link", "folder link"])
def test_folder_with_symbolic_links_is_refused_whole(azurite, tmp_path, link_dir):
    """``--folder`` followed links (a link to /etc/passwd was uploaded). A folder holding a link is
    refused, nothing uploaded (skipping could upload a model without its .bin)."""
    folder = _folder_with_link(tmp_path, link_dir)
    container = f"linktest-{int(link_dir)}"
    with pytest.raises(UploadError, match="symbolic links"):
        upload_model(azurite, "linked", folder=folder, container=container)
    proc = _run("--model_name", "linked", "--folder", str(folder), "--connection_string", azurite,
                "--container", container)
    assert proc.returncode == 2 and "symbolic links" in proc.stderr and "1/" in proc.stderr
    from azure.core.exceptions import ResourceNotFoundError
    try:
        names = list(_blobs(azurite, container))
    except ResourceNotFoundError:
        names = []
    assert names == []
    # without the link the same folder uploads
    link = folder / "1" / ("extra" if link_dir else "passwd")
    link.unlink()
    report = upload_model(azurite, "linked", folder=folder, container=container)
    assert sorted(report.uploaded) == ["linked/1/m.bin", "linked/1/m.xml"]


@pytest.mark.needs_azurite
def test_files_named_explicitly_may_be_links(azurite, model_files, tmp_path):
    """A file the user names is the user's choice (e.g. a .bin kept in a cache and linked)."""
    xml, binary = model_files
    link = tmp_path / "linked.bin"
    link.symlink_to(binary)
    report = upload_model(azurite, "explicit", files=[xml, link], container="linktest2")
    assert sorted(report.uploaded) == ["explicit/1/linked.bin", "explicit/1/m.xml"]
    assert _blobs(azurite, "linktest2")["explicit/1/linked.bin"] == binary.read_bytes()


def test_launch_and_download_scripts_refuse_a_trailing_newline():
    from scripts.tooling import omz, ovms

    with pytest.raises(ovms.LaunchError, match="invalid model name"):
        ovms.plan_one("colorization\n", "127.0.0.1", 9000)
    with pytest.raises(omz.DownloadError, match="invalid model name"):
        omz.download_model("human-pose-estimation-0001\n", "2021.1", "FP16", index={})


@pytest.mark.needs_azurite
def test_u8_input_uploads_the_model_with_u8_image_inputs(azurite, tmp_path):
    """--u8-input: the IR uploaded takes u8 (converted inside the model); side files untouched;
    re-running uploads nothing (the conversion is deterministic)."""
    import numpy as np
    import openvino as ov

    from tests import modelgen

    folder = tmp_path / "det"
    modelgen.write_version(folder, 1, modelgen.ssd_model, [[0, 1, 0.9, 0.1, 0.1, 0.5, 0.5]], hw=(64, 96))
    (folder / "labels.txt").write_text("a\nb\n")
    args = ["--model_name", "det", "--folder", str(folder), "--connection_string", azurite,
            "--container", "u8test", "--u8-input"]
    first = _run(*args)
    assert first.returncode == 0, first.stderr
    blobs = _blobs(azurite, "u8test")
    assert set(blobs) == {"det/1/model.xml", "det/1/model.bin", "det/labels.txt"}
    (tmp_path / "got").mkdir()
    for name in ("model.xml", "model.bin"):
        (tmp_path / "got" / name).write_bytes(blobs[f"det/1/{name}"])
    model = ov.Core().read_model(str(tmp_path / "got" / "model.xml"))
    assert [p.get_element_type() for p in model.inputs] == [ov.Type.u8]
    assert blobs["det/labels.txt"] == b"a\nb\n"
    assert (folder / "1" / "model.xml").read_bytes() != blobs["det/1/model.xml"]  # the source stays f32
    second = _run(*args)
    assert second.returncode == 0 and "0 uploaded, 3 unchanged" in second.stdout, second.stdout
    compiled = ov.Core().compile_model(model, "CPU")
    assert np.asarray(next(iter(compiled(np.zeros((1, 3, 64, 96), np.uint8)).values()))).shape[-1] == 7


# --- --auth-mode login: the user's Azure CLI login, no key ----------------------------------------

def test_login_mode_targets_the_account_with_the_users_login_and_never_a_key(monkeypatch):
    from azure.identity import DefaultAzureCredential

    from scripts.tooling import upload as up

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    target = up.storage_target(None, "ovaasprodovaas1a2b3c", "login")
    assert target == up.AccountLogin("https://ovaasprodovaas1a2b3c.blob.core.windows.net")
    client = up._client(target, 5.0)
    try:
        assert isinstance(client.credential, DefaultAzureCredential)   # no account key anywhere
        assert client.account_name == "ovaasprodovaas1a2b3c"
    finally:
        client.close()
    # key mode keeps the connection string (Azurite locally)
    assert up.storage_target(None, None, "key") == "UseDevelopmentStorage=true"
    for bad in [("UseDevelopmentStorage=true", "acct", "login"), (None, None, "login"),
                (None, "acct", "key"), (None, "Not_An_Account", "login"), (None, "acct", "sas")]:
        with pytest.raises(up.UploadError):
            up.storage_target(*bad)


def test_the_cli_takes_auth_mode_login(monkeypatch, tmp_path, capsys):
    from scripts.tooling import stack, upload as up

    seen = []
    monkeypatch.setattr(up, "upload_model", lambda target, *a, **k: seen.append(target) or up.UploadReport("ovms"))
    model = tmp_path / "m.xml"
    model.write_text("<net/>")
    assert up.main(["--model-name", "m", "--xml-file-path", str(model), "--account-name", "acct123",
                    "--auth-mode", "login"]) == 0
    assert seen == [up.AccountLogin("https://acct123.blob.core.windows.net")]
    assert up.main(["--model-name", "m", "--xml-file-path", str(model), "--auth-mode", "login"]) == 2
    assert "--account-name" in capsys.readouterr().err
    targets = []
    monkeypatch.setattr(stack, "locate_models", lambda *a: [])
    monkeypatch.setattr(stack, "upload_models", lambda target, models: targets.append(target) or {})
    assert stack.main(["--upload-only", "--account-name", "acct123", "--auth-mode", "login"]) == 0
    assert targets == [up.AccountLogin("https://acct123.blob.core.windows.net")]
