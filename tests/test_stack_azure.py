"""Production's storage path, end to end, against a real Azurite: models and side files uploaded
to Blob storage in the OVMS layout, the model server reading them from az://, and an endpoint
(with its labels read from az:// too) answering over HTTP through the local Functions host."""
from __future__ import annotations

import json
import urllib.request

import pytest

from pathlib import Path

from scripts.tooling import upload
from tests.realmodels import real_model

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"


@pytest.fixture(scope="module")
def detector_base():
    return real_model("person-detection-retail-0013")


def test_upload_is_idempotent_and_served_from_az(azurite, detector_base, tmp_path, model_server, functions_host):
    labels = tmp_path / "labels.txt"
    labels.write_text("background\nperson\n")
    first = upload.upload_model(azurite, "object-detection", folder=detector_base, extra_files=[labels])
    assert first.uploaded and not first.skipped
    assert {b.split("/", 1)[1] for b in first.uploaded} >= {"1/person-detection-retail-0013.xml",
                                                             "1/person-detection-retail-0013.bin", "labels.txt"}
    again = upload.upload_model(azurite, "object-detection", folder=detector_base, extra_files=[labels])
    assert not again.uploaded and sorted(again.skipped) == sorted(first.uploaded)

    server = model_server(["--model_name", "object-detection", "--model_path", "az://ovms/object-detection"],
                          env={"AZURE_STORAGE_CONNECTION_STRING": azurite}, timeout=120)
    host = functions_host(env={
        "OBJECTDETECTION_IPADDRESS": "127.0.0.1", "OBJECTDETECTION_PORT": str(server.port),
        "OBJECTDETECTION_MODEL_NAME": "object-detection",
        "OBJECTDETECTION_LABELS_PATH": "az://ovms/object-detection/labels.txt",
        "AZURE_STORAGE_CONNECTION_STRING": azurite,
    })
    image = (IMAGES / "people1.jpeg").read_bytes()
    req = urllib.request.Request(host.url("/api/HttpTriggerObjectDetection"), data=image, method="POST",
                                 headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        payload = json.loads(resp.read())
    assert payload["model"]["name"] == "object-detection"
    people = [d for d in payload["detections"] if d["label"] == "person"]
    assert len(people) >= 5, payload["detections"]  # the MANIFEST's sanity run found 7 above 0.5
    assert "AccountKey" not in host.output()
