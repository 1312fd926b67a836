"""The app's gRPC client over TLS (``<PREFIX>_TLS`` / ``OVMS_TLS``, ``OVMS_TLS_CA_FILE``) against the
OVMS emulator behind a TLS-terminating ingress (tests/tls_ingress.py, what Container Apps puts in
front of OVMS), with certificates made in the test: a trusted CA lets inference through, an
untrusted certificate is a fast 503 that says TLS is on and names no path."""
from __future__ import annotations

import json

import azure.functions as func
import cv2
import numpy as np
import pytest

from shared import config, errors, http, serving, tasks
from shared.serving.grpc_common import ManagedChannel
from tests import modelgen
from tests.tls_ingress import TlsIngress, issue, make_ca

#: the longest a handshake refusal is waited for (reached only when the client never tried)
EVENT_S = 30.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    trusted, stranger = make_ca(folder, "ovaas test CA"), make_ca(folder, "someone else CA")
    return {"ca": trusted.cert_path, "good": issue(trusted, folder), "bad": issue(stranger, folder),
            "other_ca": stranger.cert_path}


@pytest.fixture(scope="module")
def ovms(model_repo):
    from emulators.ovms.launcher import start_server, write_config

    base = model_repo.add("tls-affine", modelgen.affine_model, scale=2.0, bias=1.0, shape=(1, 4))
    pose = model_repo.add("human-pose-estimation-0001", modelgen.pose_model)
    cfg = write_config(model_repo.root / "config-tls.json",
                       [{"name": "affine", "base_path": str(base)},
                        {"name": "human-pose-estimation", "base_path": str(pose)}])
    srv = start_server(["--config_path", str(cfg)], timeout=60)
    yield srv
    assert srv.stop() == 0


@pytest.fixture(autouse=True)
def fresh_channels():
    serving.reset()
    yield
    serving.reset()


def _env(port, **extra):
    return {"HUMANPOSE_IPADDRESS": "localhost", "HUMANPOSE_PORT": str(port), "HUMANPOSE_MODEL_NAME": "affine",
            "OVMS_CONNECT_TIMEOUT_SECONDS": "2", **extra}


def test_tls_settings_per_model_and_global():
    s = config.model_settings("HUMANPOSE", env={})
    assert (s.tls, s.tls_ca_file) == (False, None)            # plain by default (local, in-cluster)
    assert config.model_settings("HUMANPOSE", env={"OVMS_TLS": "true"}).tls
    assert not config.model_settings("HUMANPOSE", env={"OVMS_TLS": "true", "HUMANPOSE_TLS": "false"}).tls
    assert config.model_settings("HUMANPOSE", env={"HUMANPOSE_TLS": "1"}).tls
    assert not config.model_settings("COLORIZATION", env={"HUMANPOSE_TLS": "1"}).tls
    with pytest.raises(config.SettingsError) as ei:
        config.model_settings("HUMANPOSE", env={"HUMANPOSE_TLS": "sometimes"})
    assert ei.value.setting == "HUMANPOSE_TLS" and "sometimes" not in ei.value.message


def test_inference_over_tls_with_the_ca_trusted_through_the_setting(ovms, pki):
    with TlsIngress(("127.0.0.1", ovms.port), *pki["good"]) as ingress:
        s = config.model_settings("HUMANPOSE", env=_env(ingress.port, HUMANPOSE_TLS="true",
                                                      OVMS_TLS_CA_FILE=str(pki["ca"])))
        adapter = serving.get_adapter(s)
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        out = adapter.infer({"x": x})
        np.testing.assert_array_equal(out["y"], x * 2 + 1)
        assert adapter.status().ready
        assert ingress.connections >= 1 and ingress.handshake_failures == 0
        # the same port spoken to in plain gRPC is not a model server
        plain = serving.get_adapter(config.model_settings("HUMANPOSE", env=_env(
            ingress.port, OVMS_CONNECT_TIMEOUT_SECONDS="0.5")))
        with pytest.raises(errors.ModelUnavailable):
            plain.infer({"x": x})


def _refused(ovms, pki, env_extra):
    with TlsIngress(("127.0.0.1", ovms.port), *pki["bad"]) as ingress:
        s = config.model_settings("HUMANPOSE", env=_env(ingress.port, **env_extra))
        adapter = serving.get_adapter(s)
        with pytest.raises(errors.ModelUnreachable) as ei:
            adapter.infer({"x": np.zeros((1, 4), np.float32)})
        assert ingress.refused.wait(EVENT_S), "the client never refused a TLS handshake"
        assert ingress.connections >= 1
    return ei.value


def test_an_untrusted_certificate_is_a_clear_503_naming_no_path(ovms, pki):
    exc = _refused(ovms, pki, {"HUMANPOSE_TLS": "true", "OVMS_TLS_CA_FILE": str(pki["ca"])})
    assert exc.status == 503 and exc.code == "model_unavailable"
    assert "over TLS" in exc.message and "OVMS_TLS_CA_FILE" in exc.message
    assert str(pki["ca"]) not in exc.message and "pki" not in exc.message
    # the system roots (no CA setting) do not trust a self-signed CA either
    exc = _refused(ovms, pki, {"OVMS_TLS": "true"})
    assert exc.status == 503 and "over TLS" in exc.message


def test_the_503_is_the_connect_timeouts_not_the_inference_deadlines(ovms, pki):
    """The refused channel never becomes ready, so the call fails in ensure_ready (bounded by the
    connect timeout) and never reaches the inference call (bounded by the much longer deadline)."""
    with TlsIngress(("127.0.0.1", ovms.port), *pki["bad"]) as ingress:
        s = config.model_settings("HUMANPOSE", env=_env(ingress.port, HUMANPOSE_TLS="true",
                                                      OVMS_TLS_CA_FILE=str(pki["ca"]),
                                                      OVMS_CONNECT_TIMEOUT_SECONDS="0.5",
                                                      HUMANPOSE_TIMEOUT_SECONDS="600"))
        adapter = serving.get_adapter(s)
        calls = []
        original = ManagedChannel.ensure_ready

        def spy(self, what):
            calls.append(self.connect_timeout_s)
            return original(self, what)

        ManagedChannel.ensure_ready = spy
        try:
            with pytest.raises(errors.ModelUnreachable):
                adapter.infer({"x": np.zeros((1, 4), np.float32)})
        finally:
            ManagedChannel.ensure_ready = original
        assert calls == [0.5]


def test_a_ca_file_that_cannot_be_read_is_a_503_naming_the_setting(tmp_path):
    for path in (tmp_path / "missing.pem", tmp_path / "empty.pem"):
        if path.name == "empty.pem":
            path.write_text("not a certificate")
        s = config.model_settings("HUMANPOSE", env={"OVMS_TLS": "on", "OVMS_TLS_CA_FILE": str(path)})
        with pytest.raises(config.SettingsError) as ei:
            serving.get_adapter(s)
        assert ei.value.setting == "OVMS_TLS_CA_FILE" and ei.value.status == 503
        assert str(tmp_path) not in ei.value.message


def test_the_endpoint_answers_503_json_through_the_http_layer(ovms, pki, monkeypatch):
    with TlsIngress(("127.0.0.1", ovms.port), *pki["bad"]) as ingress:
        for k, v in _env(ingress.port, HUMANPOSE_TLS="true", OVMS_TLS_CA_FILE=str(pki["ca"]),
                         HUMANPOSE_MODEL_NAME="human-pose-estimation").items():
            monkeypatch.setenv(k, v)
        tasks._instances.pop("pose", None)
        body = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
        req = func.HttpRequest("POST", "http://localhost/api/HttpTriggerHumanPose",
                               headers={"Content-Type": "image/png"}, body=body)
        resp = http.handle(req, "pose", None)
        tasks._instances.pop("pose", None)
    assert resp.status_code == 503 and "Retry-After" in resp.headers
    answer = json.loads(resp.get_body())
    assert answer["error"]["code"] == "model_unavailable" and "over TLS" in answer["error"]["message"]
    assert str(pki["ca"]) not in resp.get_body().decode()
