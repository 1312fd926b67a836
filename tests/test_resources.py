"""shared.resources: side files from local paths and az://, cached; failures fast and remembered."""
from __future__ import annotations

import logging
import time

import pytest

from scripts.tooling.azurite import connection_string, free_port
from shared import config, resources
from shared.errors import Misconfigured, ModelUnavailable


@pytest.fixture(autouse=True)
def _clean():
    resources.clear_cache()
    yield
    resources.clear_cache()


@pytest.fixture
def storage_reads(monkeypatch):
    """The locations read from their source (local file or storage) from now on, in order."""
    reads = []
    read = resources._read_uncached

    def counted(location, setting, timeout_s):
        reads.append(location)
        return read(location, setting, timeout_s)
    monkeypatch.setattr(resources, "_read_uncached", counted)
    return reads


def _failure_logged(caplog, exc_name: str) -> bool:
    """The app logged a failed side-file read with ``exc_name`` as its cause."""
    return any(r.name == "ovaas.resources" and f"failed: {exc_name} " in r.getMessage() for r in caplog.records)


def test_local_file_is_read_once(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("a\nb\n")
    assert resources.read_text(str(f)) == "a\nb\n"
    f.write_text("changed")
    assert resources.read_text(str(f)) == "a\nb\n"  # cached for the worker's life


def test_missing_local_file_is_503_naming_the_setting(tmp_path):
    with pytest.raises(ModelUnavailable, match="MY_SETTING"):
        resources.read_bytes(str(tmp_path / "nope.txt"), "MY_SETTING")


def test_az_location_from_azurite(azurite, monkeypatch):
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    try:
        service.create_container("side")
    except Exception:  # already there from another test
        pass
    service.get_blob_client("side", "dir/chars.txt").upload_blob("字\n".encode(), overwrite=True)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    assert resources.read_text("az://side/dir/chars.txt") == "字\n"
    with pytest.raises(ModelUnavailable, match="could not be read"):
        resources.read_bytes("az://side/dir/missing.txt", "S")


def test_unreachable_storage_fails_fast_and_is_remembered(monkeypatch, caplog, storage_reads):
    caplog.set_level(logging.INFO, logger="ovaas.resources")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string("127.0.0.1", free_port()))
    t = time.monotonic()
    with pytest.raises(ModelUnavailable):
        resources.read_bytes("az://ovms/x/labels.txt", "S")
    # fast: refused by the connection probe, before the storage SDK and its retries. Measured with
    # two busy loops on the 2 cores: at most 0.003 s over 30 reads; 3 s is the bound.
    assert time.monotonic() - t < 3.0
    assert _failure_logged(caplog, "ConnectionRefusedError")
    with pytest.raises(ModelUnavailable):
        resources.read_bytes("az://ovms/x/labels.txt", "S")
    assert len(storage_reads) == 1  # the failure is remembered for a few seconds: storage not asked again
    monkeypatch.setattr(resources, "FAILURE_TTL_S", 0.0)
    with pytest.raises(ModelUnavailable):  # and retried once it expires
        resources.read_bytes("az://ovms/x/labels.txt", "S")
    assert len(storage_reads) == 2


@pytest.mark.parametrize("location", ["az://", "az://container", "az://container/"])
def test_malformed_az_location(location, monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    with pytest.raises(ModelUnavailable, match="invalid"):
        resources.read_bytes(location, "S")


def test_health_cache_zero_means_no_cache():
    assert config.health_cache_seconds({"HEALTH_CACHE_SECONDS": "0"}) == 0.0
    with pytest.raises(config.SettingsError):
        config.health_cache_seconds({"HEALTH_CACHE_SECONDS": "-1"})


@pytest.mark.parametrize("content", [b"\xff\xfe\x00b\x00a\x00d", b"caf\xe9\n"])
def test_a_side_file_that_is_not_utf8_is_503_naming_the_setting(tmp_path, content):
    """Issue 14 item 5: a char list or labels file in another encoding is a deployment fault (503
    'misconfigured' naming the setting), not a 500."""
    from shared.errors import Misconfigured

    path = tmp_path / "labels.txt"
    path.write_bytes(content)
    with pytest.raises(Misconfigured) as info:
        resources.read_text(str(path), "OBJECTDETECTION_LABELS_PATH")
    assert info.value.status == 503 and info.value.code == "misconfigured"
    assert "OBJECTDETECTION_LABELS_PATH" in info.value.message and "UTF-8" in info.value.message


def test_a_non_utf8_labels_file_reaches_the_caller_as_503(tmp_path, monkeypatch):
    from shared.errors import Misconfigured
    from shared.tasks.detection import LABELS_SETTING, DetectionTask

    path = tmp_path / "labels.txt"
    path.write_bytes(b"person\n\xe9tre\n")
    monkeypatch.setenv(LABELS_SETTING, str(path))
    with pytest.raises(Misconfigured, match=LABELS_SETTING):
        DetectionTask().label_names()


def test_storage_that_does_not_answer_is_a_fast_503(tmp_path, monkeypatch, caplog, storage_reads):
    """Issue 14 item 6: storage that accepts connections but does not answer (Azurite paused) used
    to hold the first read 10-11 s; now about STORAGE_TIMEOUT_S, then remembered."""
    import os
    import signal

    from azure.storage.blob import BlobServiceClient

    from scripts.tooling import azurite as az

    if az.find_binary("azurite-blob") is None:
        pytest.skip("needs_azurite: Azurite is not installed (run `bash scripts/bootstrap.sh`)")
    port = az.free_port()
    proc = az.start(tmp_path, blob_port=port, log_file=tmp_path / "azurite.log")
    cs = az.connection_string("127.0.0.1", port)
    try:
        with BlobServiceClient.from_connection_string(cs) as svc:
            svc.create_container("ovms").upload_blob("x/labels.txt", b"person\n")
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", cs)
        assert resources.read_text("az://ovms/x/labels.txt", "S") == "person\n"  # storage works
        resources.clear_cache()
        caplog.set_level(logging.INFO, logger="ovaas.resources")
        os.killpg(proc.pid, signal.SIGSTOP)  # paused: the kernel still accepts its connections
        t = time.monotonic()
        with pytest.raises(ModelUnavailable) as info:
            resources.read_bytes("az://ovms/x/labels.txt", "S")
        took = time.monotonic() - t
        # The bound is the behaviour (was 10-11 s). Measured with two busy loops on the 2 cores:
        # 2.00 to 2.03 s over 16 reads, so 2 x STORAGE_TIMEOUT_S + 0.5 = 4.5 s leaves 2.5 s.
        assert took < resources.STORAGE_TIMEOUT_S * 2 + 0.5, took
        assert _failure_logged(caplog, "ServiceResponseTimeoutError")  # the SDK's read timeout fired
        assert info.value.headers["Retry-After"] == "5" and "setting S" in info.value.message
        with pytest.raises(ModelUnavailable):
            resources.read_bytes("az://ovms/x/labels.txt", "S")
        assert storage_reads.count("az://ovms/x/labels.txt") == 2  # remembered: storage not asked again
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


# --- which storage the side files come from --------------------------------------------------

ACCOUNT_URL = "https://ovaasacct.blob.core.windows.net"


@pytest.mark.parametrize("env, setting, identity", [
    ({"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "AZURE_STORAGE_ACCOUNT_URL": ACCOUNT_URL},
     "AZURE_STORAGE_CONNECTION_STRING", False),               # a connection string given wins (local)
    ({"AZURE_STORAGE_ACCOUNT_URL": ACCOUNT_URL, "AzureWebJobsStorage": ""}, "AZURE_STORAGE_ACCOUNT_URL", True),
    ({"AZURE_STORAGE_ACCOUNT_URL": ACCOUNT_URL + "/", "AzureWebJobsStorage__accountName": "ovaasacct"},
     "AZURE_STORAGE_ACCOUNT_URL", True),                      # what deploy/terraform sets
    ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "AzureWebJobsStorage", False),  # local.settings.json
])
def test_the_storage_source_is_chosen_by_the_settings(env, setting, identity):
    source = config.storage_source(env)
    assert source.setting == setting and source.uses_identity is identity
    if identity:
        assert source.account_url == ACCOUNT_URL and source.connection_string is None
    else:
        assert source.connection_string and source.account_url is None


def test_no_storage_setting_means_no_source_and_a_bad_url_is_a_settings_error():
    assert config.storage_source({}) is None
    assert config.storage_source({"AzureWebJobsStorage": "", "AzureWebJobsStorage__accountName": "x"}) is None
    for bad in ("ovaasacct", "ftp://x.example", "https:///"):
        with pytest.raises(config.SettingsError) as ei:
            config.storage_source({"AZURE_STORAGE_ACCOUNT_URL": bad})
        assert ei.value.setting == "AZURE_STORAGE_ACCOUNT_URL" and bad not in ei.value.message


def test_an_account_url_is_read_with_the_default_azure_credential_and_no_key():
    from azure.identity import DefaultAzureCredential

    service = resources.blob_service(config.storage_source({"AZURE_STORAGE_ACCOUNT_URL": ACCOUNT_URL}))
    assert isinstance(service.credential, DefaultAzureCredential)
    assert service.credential is resources.credential()    # one credential per worker (token cache)
    assert service.url.rstrip("/") == ACCOUNT_URL and service.account_name == "ovaasacct"
    local = resources.blob_service(config.storage_source({"AzureWebJobsStorage": connection_string(10000)}))
    assert not isinstance(local.credential, DefaultAzureCredential)


def test_an_az_side_file_without_any_storage_setting_is_a_503_naming_the_settings(monkeypatch):
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL", "AzureWebJobsStorage"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ModelUnavailable) as ei:
        resources.read_bytes("az://ovms/x/labels.txt", "OBJECTDETECTION_LABELS_PATH")
    assert ei.value.status == 503
    assert "AZURE_STORAGE_ACCOUNT_URL" in ei.value.message and "AZURE_STORAGE_CONNECTION_STRING" in ei.value.message


@pytest.mark.parametrize("make", ["missing", "not_utf8", "storage_without_connection", "bad_az"])
def test_side_file_errors_and_logs_name_the_setting_never_its_value(make, tmp_path, monkeypatch, caplog):
    """Issue 25: the answer named the path (side file /tmp/.../chars.txt (setting ...) was not
    found); now the setting only, in the answer and in the log."""
    secret_dir = tmp_path / "secret-folder-7f3a"
    secret_dir.mkdir()
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    location = {"missing": str(secret_dir / "chars.txt"),
                "not_utf8": str(secret_dir / "latin1.txt"),
                "storage_without_connection": "az://secret-container-7f3a/chars.txt",
                "bad_az": "az://secret-container-7f3a"}[make]
    (secret_dir / "latin1.txt").write_bytes(b"\xe9t\xe9")
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(Misconfigured) as info:
            resources.read_text(location, "HANDWRITTEN_CHARLIST_PATH")
    message = info.value.message
    assert "HANDWRITTEN_CHARLIST_PATH" in message
    for text in [message] + [r.getMessage() for r in caplog.records]:
        assert "7f3a" not in text and location not in text, text
