"""shared.resources: side files from local paths and az://, cached; failures fast and remembered."""
from __future__ import annotations

import time

import pytest

from scripts.tooling.azurite import connection_string, free_port
from shared import config, resources
from shared.errors import ModelUnavailable


@pytest.fixture(autouse=True)
def _clean():
    resources.clear_cache()
    yield
    resources.clear_cache()


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


def test_unreachable_storage_fails_fast_and_is_remembered(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string("127.0.0.1", free_port()))
    t = time.monotonic()
    with pytest.raises(ModelUnavailable):
        resources.read_bytes("az://ovms/x/labels.txt", "S")
    assert time.monotonic() - t < 3.0
    t = time.monotonic()
    with pytest.raises(ModelUnavailable):
        resources.read_bytes("az://ovms/x/labels.txt", "S")
    assert time.monotonic() - t < 0.05  # the failure is cached for a few seconds
    monkeypatch.setattr(resources, "FAILURE_TTL_S", 0.0)
    with pytest.raises(ModelUnavailable):  # and retried once it expires
        resources.read_bytes("az://ovms/x/labels.txt", "S")


@pytest.mark.parametrize("location", ["az://", "az://container", "az://container/"])
def test_malformed_az_location(location, monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    with pytest.raises(ModelUnavailable, match="invalid"):
        resources.read_bytes(location, "S")


def test_health_cache_zero_means_no_cache():
    assert config.health_cache_seconds({"HEALTH_CACHE_SECONDS": "0"}) == 0.0
    with pytest.raises(config.SettingsError):
        config.health_cache_seconds({"HEALTH_CACHE_SECONDS": "-1"})
