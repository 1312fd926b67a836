"""Side files read with an Entra ID token and no key (AZURE_STORAGE_ACCOUNT_URL), against a real
Azurite in its OAuth mode: HTTPS with a certificate made in the test (bearer tokens travel over TLS
only), ``--oauth basic`` (it checks each token's audience, issuer and lifetime, not the signature).
The app's credential is replaced by one that hands out such a token: what the managed identity does
on Azure is the one part not tried here."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, List

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from scripts.tooling import azurite as az
from shared import resources
from shared.errors import ModelUnavailable
from tests.tls_ingress import issue, make_ca

#: the longest Azurite gets to open its port (reached only when it does not start)
START_S = 60.0
SIDE_FILE = "az://ovms/handwritten-japanese-recognition/chars.txt"


def _jwt(audience: str, issuer: str = "https://sts.windows.net/00000000-0000-0000-0000-000000000000/") -> str:
    """An unsigned JWT shaped as Entra ID's (Azurite's basic OAuth does not check signatures);
    valid from a day ago to a day ahead, so no clock skew matters."""
    now = int(time.time())
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return ".".join([part({"alg": "RS256", "typ": "JWT"}),
                     part({"aud": audience, "iss": issuer, "iat": now - 86400, "nbf": now - 86400,
                           "exp": now + 86400, "oid": "11111111-1111-1111-1111-111111111111"}),
                     "c2lnbmF0dXJl"])


class FakeIdentity:
    """A TokenCredential as the managed identity is one: records the scopes asked for."""

    def __init__(self, token: str = "", error: bool = False) -> None:
        self.token, self.error, self.scopes = token, error, []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        if self.error:
            raise ClientAuthenticationError("no managed identity endpoint")
        return AccessToken(self.token, int(time.time()) + 3600)


@contextlib.contextmanager
def oauth_azurite(folder: Path) -> Iterator[dict]:
    ca = make_ca(folder, "azurite test CA")
    cert, key = issue(ca, folder)
    port = az.free_port()
    cmd: List[str] = az.command(folder / "data", blob_port=port) + [
        "--oauth", "basic", "--cert", str(cert), "--key", str(key)]
    (folder / "data").mkdir()
    log = open(folder / "azurite.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + START_S
        while True:  # wait for the listening socket (the event), failing on exit or the deadline
            assert proc.poll() is None, (folder / "azurite.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "Azurite did not open its port"
                time.sleep(0.1)
        url = f"https://127.0.0.1:{port}/{az.ACCOUNT}"
        yield {"url": url, "ca": str(ca.cert_path),
               "key_connection": f"DefaultEndpointsProtocol=https;AccountName={az.ACCOUNT};"
                                 f"AccountKey={az.ACCOUNT_KEY};BlobEndpoint={url};"}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    if az.find_binary("azurite-blob") is None:
        pytest.fail("Azurite is not installed: run `bash scripts/bootstrap.sh`")
    with oauth_azurite(tmp_path_factory.mktemp("azurite-oauth")) as s:
        from azure.storage.blob import BlobServiceClient

        # the upload (as the deployer's) with the account key, trusting the test CA
        with BlobServiceClient.from_connection_string(s["key_connection"], connection_verify=s["ca"]) as svc:
            svc.create_container("ovms")
            svc.get_blob_client("ovms", "handwritten-japanese-recognition/chars.txt").upload_blob(
                "あいう\n".encode())
        yield s


@pytest.fixture
def identity_env(storage, monkeypatch):
    """The deployed app's settings: an account URL and no connection string anywhere."""
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", storage["url"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", storage["ca"])  # requests' trust of the test CA
    resources.clear_cache()
    yield
    resources.clear_cache()


def test_a_side_file_is_read_with_a_token_and_no_key(identity_env, monkeypatch):
    identity = FakeIdentity(_jwt("https://storage.azure.com"))
    monkeypatch.setattr(resources, "_credential", identity)
    assert resources.read_text(SIDE_FILE, "HANDWRITTEN_CHARLIST_PATH") == "あいう\n"
    assert identity.scopes and all(s == ("https://storage.azure.com/.default",) for s in identity.scopes)


def test_a_token_the_storage_refuses_is_a_503(identity_env, monkeypatch):
    monkeypatch.setattr(resources, "_credential", FakeIdentity(_jwt("https://vault.azure.net")))
    with pytest.raises(ModelUnavailable) as ei:
        resources.read_bytes(SIDE_FILE, "HANDWRITTEN_CHARLIST_PATH")
    assert ei.value.status == 503 and "HANDWRITTEN_CHARLIST_PATH" in ei.value.message


def test_no_identity_is_a_503_not_a_500(identity_env, monkeypatch):
    monkeypatch.setattr(resources, "_credential", FakeIdentity(error=True))
    with pytest.raises(ModelUnavailable) as ei:
        resources.read_bytes(SIDE_FILE, "HANDWRITTEN_CHARLIST_PATH")
    assert ei.value.status == 503 and "could not be read" in ei.value.message
