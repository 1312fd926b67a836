"""A model repository on Azure Blob (Azurite) read through ``az://`` as OVMS does."""
from __future__ import annotations

import os
import time
import uuid

import numpy as np
import ovmsclient
import tritonclient.grpc as tg

from tests import modelgen


def _upload(conn: str, container: str, prefix: str, base) -> None:
    from azure.storage.blob import BlobServiceClient

    svc = BlobServiceClient.from_connection_string(conn)
    cc = svc.create_container(container)
    for path in sorted(base.rglob("*")):
        if path.is_file():
            cc.upload_blob(f"{prefix}/{path.relative_to(base).as_posix()}", path.read_bytes())


def test_model_from_azurite(azurite, model_server, tmp_path):
    base = tmp_path / "aff"
    for v in (1, 2):
        modelgen.write_version(base, v, modelgen.affine_model, scale=float(v * 10), shape=(1, 4))
    container = f"models-{uuid.uuid4().hex[:8]}"
    _upload(azurite, container, "repo/aff", base)
    env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": azurite}
    srv = model_server(config=[{"name": "aff", "base_path": f"az://{container}/repo/aff",
                                "model_version_policy": {"all": {}}}], env=env)
    x = np.array([[1, 2, 3, 4]], np.float32)
    oc = ovmsclient.make_grpc_client(srv.address)
    assert sorted(oc.get_model_status("aff")) == [1, 2]
    assert np.array_equal(oc.predict({"x": x}, "aff"), x * 20)
    assert np.array_equal(oc.predict({"x": x}, "aff", model_version=1), x * 10)
    c = tg.InferenceServerClient(srv.address)
    assert c.get_model_metadata("aff").inputs[0].name == "x"


def test_azure_errors_are_reported(azurite, model_server):
    env = {k: v for k, v in os.environ.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    srv = model_server(config=[{"name": "noconn", "base_path": "az://nothing/here"}], env=env, wait=False)
    srv2 = model_server(config=[{"name": "nocontainer", "base_path": "az://no-such-container/m"}],
                        env={**os.environ, "AZURE_STORAGE_CONNECTION_STRING": azurite}, wait=False)
    for s, name, needle in ((srv, "noconn", "AZURE_STORAGE_CONNECTION_STRING"),
                            (srv2, "nocontainer", "AS Container not found")):
        s.wait_ready(models=[])
        c = tg.InferenceServerClient(s.address)
        deadline = time.monotonic() + 20
        while not c.is_server_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not c.is_model_ready(name)
        assert needle in s.log_text()
