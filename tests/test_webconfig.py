"""TLS and basic auth on the exporter's endpoints, with a real process and real certificates."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path

import bcrypt
import pytest
import requests

from exporter.config import ConfigError
from exporter.serve.webconfig import BasicAuth, load_web_config
from tests.conftest import config_dict, run_exporter, write_config

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def call(app, path: str, authorization: str | None = None) -> str:
    environ = {"PATH_INFO": path}
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    status: list[str] = []
    app(environ, lambda s, headers: status.append(s))
    return status[0]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_middleware() -> None:
    app = BasicAuth(lambda environ, start: start("200 OK", []) or [b""], {"prom": HASH.encode()})
    assert call(app, "/metrics") == "401 Unauthorized"
    assert call(app, "/metrics", basic("prom", "wrong")) == "401 Unauthorized"
    assert call(app, "/metrics", basic("other", "s3cret")) == "401 Unauthorized"
    assert call(app, "/metrics", "Bearer x") == "401 Unauthorized"
    assert call(app, "/metrics", "Basic !!notbase64") == "401 Unauthorized"
    assert call(app, "/metrics", basic("prom", "s3cret")) == "200 OK"
    assert call(app, "/metrics", basic("prom", "s3cret")) == "200 OK"  # remembered
    assert call(app, "/healthz") == "200 OK"  # liveness needs no credentials
    assert call(app, "/metrics", basic("prom", "x" * 100)) == "401 Unauthorized"  # > 72 bytes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config: {cert_file: a.crt}\n", "tls_server_config.key_file: required"),
        ("tls_server_config: {cert_file: a.crt, key_file: a.key}\n", "cannot load cert_file"),
        ("basic_auth_users: {prom: plain}\n", "basic_auth_users.prom: not a bcrypt hash"),
        ("http_server_config: {http2: true}\n", "http_server_config: unsupported key"),
        ("tls_server_config: {certfile: x}\n", "tls_server_config.certfile: unsupported key"),
        ("[1, 2]\n", "the top level must be a mapping"),
    ],
)
def test_bad_web_config_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(path))
    assert message in str(caught.value)


def test_a_bad_web_config_file_is_exit_2(simulator, tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("basic_auth_users: {prom: plain}\n")
    result = run_exporter("--config", str(write_config(tmp_path / "c.yaml",
                                                       config_dict(simulator))),
                          "--web.config.file", str(tmp_path / "web.yml"))
    assert result.returncode == 2
    assert "not a bcrypt hash" in result.stderr and "Traceback" not in result.stderr


def test_tls_and_basic_auth_end_to_end(simulator, start_exporter, certificate, tmp_path) -> None:
    cert, key = certificate
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config: {{cert_file: {cert.name}, key_file: {key.name}}}\n"
        f"basic_auth_users: {{prom: '{HASH}'}}\n"
    )
    exporter = start_exporter("--config", str(write_config(tmp_path / "c.yaml",
                                                           config_dict(simulator))),
                              "--web.config.file", str(web))
    url = exporter.url.replace("http://", "https://")
    for _ in range(100):
        try:
            if requests.get(url + "/ready", verify=str(cert), auth=("prom", "s3cret"),
                            timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    scrape = requests.get(url + "/metrics", verify=str(cert), auth=("prom", "s3cret"), timeout=5)
    assert scrape.status_code == 200 and "whatsapp_conversations{" in scrape.text
    assert requests.get(url + "/metrics", verify=str(cert), timeout=5).status_code == 401
    assert requests.get(url + "/healthz", verify=str(cert), timeout=5).status_code == 200
    plain = requests.get(exporter.url + "/metrics", timeout=5)  # plain HTTP is not served
    assert plain.status_code == 400 and "HTTPS" in plain.text
    assert requests.get(url + "/metrics", verify=str(cert), auth=("prom", "s3cret"),
                        timeout=5).status_code == 200, "a failed plain request broke nothing"


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ("client_auth_type: RequestClientCert", "client_auth_type: one of NoClientCert"),
        ("client_ca_file: server.crt", "set client_auth_type too"),
        ("client_auth_type: RequireAndVerifyClientCert", "client_ca_file: required"),
    ],
)
def test_client_certificate_settings_python_cannot_honour_are_refused(
    certificate, tmp_path: Path, tls: str, message: str
) -> None:
    cert, key = certificate
    path = tmp_path / "web.yml"
    path.write_text(
        f"tls_server_config: {{cert_file: {cert.name}, key_file: {key.name}, {tls}}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(path))
    assert message in str(caught.value)


def test_required_client_certificates_are_verified(certificate, tmp_path: Path) -> None:
    cert, key = certificate
    path = tmp_path / "web.yml"
    path.write_text(
        f"tls_server_config: {{cert_file: {cert.name}, key_file: {key.name}, "
        f"client_auth_type: RequireAndVerifyClientCert, client_ca_file: {cert.name}}}\n"
    )
    import ssl

    assert load_web_config(str(path)).tls.verify_mode == ssl.CERT_REQUIRED
