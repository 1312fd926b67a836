"""shared.config: typed settings from the environment."""
from __future__ import annotations

import pytest

from shared import config


def test_defaults_use_the_original_names():
    s = config.model_settings("HUMANPOSE", {})
    assert (s.model_name, s.host, s.port, s.model_version, s.api) == ("human-pose-estimation", "127.0.0.1", 9000, None, "kserve")
    assert config.model_settings("OBJECTDETECTION", {}).model_name == "object-detection"


def test_values_and_overrides():
    env = {"HANDWRITTEN_IPADDRESS": "10.0.0.5", "HANDWRITTEN_PORT": "9001", "HANDWRITTEN_MODEL_VERSION": "3",
           "OVMS_API": "kserve", "HANDWRITTEN_OVMS_API": "TFS", "OVMS_TIMEOUT_SECONDS": "4",
           "HANDWRITTEN_TIMEOUT_SECONDS": "2.5"}
    s = config.model_settings("HANDWRITTEN", env)
    assert s.address == "10.0.0.5:9001" and s.model_version == 3 and s.api == "tfs" and s.timeout_s == 2.5
    assert config.model_settings("COLORIZATION", env).timeout_s == 4.0
    assert config.model_settings("X", {"X_IPADDRESS": "::1"}).address == "[::1]:9000"
    assert config.model_settings("X", {"X_MODEL_VERSION": "latest"}).model_version is None


@pytest.mark.parametrize("env", [{"OVMS_API": "rest"}, {"X_PORT": "abc"}, {"X_PORT": "0"},
                                 {"X_MODEL_VERSION": "v2"}, {"OVMS_TIMEOUT_SECONDS": "-1"}])
def test_malformed_settings_are_reported(env):
    with pytest.raises(config.SettingsError):
        config.model_settings("X", env)


def test_limits_and_storage():
    lim = config.limits({"MAX_BODY_BYTES": "10", "MAX_IMAGE_PIXELS": "20", "MAX_IMAGE_SIDE": "5"})
    assert (lim.max_body_bytes, lim.max_image_pixels, lim.max_image_side) == (10, 20, 5)
    dev = config.storage_connection_string({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    from azure.storage.blob import BlobServiceClient  # the SDK itself reads it as the local Azurite
    assert BlobServiceClient.from_connection_string(dev).url == "http://127.0.0.1:10000/devstoreaccount1/"
    assert config.storage_connection_string({"AZURE_STORAGE_CONNECTION_STRING": "X=1", "AzureWebJobsStorage": "Y"}) == "X=1"
    assert config.storage_connection_string({}) is None
