"""HTTPS with uvicorn's own TLS (``start_server.sh --ssl_certfile CERT --ssl_keyfile KEY``), on the real server with
a self-signed certificate: the Slicer module's client clicks over it (trusting that certificate), plain HTTP to
the port gets nothing, and our viewer's page and code load in Chromium over it."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
import requests

from conftest import asymmetric_array, write_volume

from .harness import running_server, slicer_client, wait_for_model


def self_signed(folder: Path):
    """A certificate and key for 127.0.0.1, as an admin makes one with openssl for a test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("https")
    (root / "studies").mkdir()
    write_volume(root / "studies" / "oblique.nii.gz", asymmetric_array((40, 30, 12)))
    tls = self_signed(root)
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0"}
    with running_server(root / "studies", root / "server.log", env=env, tls=tls) as url:
        yield url, tls, root


def test_slicer_clicks_over_https_and_plain_http_gets_nothing(tls_site, tmp_path, monkeypatch):
    url, (cert, _), _ = tls_site
    assert url.startswith("https://")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # the client trusts this server's certificate
    assert wait_for_model(url)["available"]  # requests trusts the certificate through REQUESTS_CA_BUNDLE
    info = requests.get(f"{url}/info/", timeout=30, verify=str(cert)).json()
    assert "medicosam_interactive" in info["models"]
    client = slicer_client(url, tmp_path / "client")
    _, params = client.infer("medicosam_interactive", "oblique",
                             {"foreground": [[30, 7, 5]], "label": "organ", "client_id": "https"})
    assert params["slice"] == 5
    with pytest.raises(requests.RequestException):
        requests.get(url.replace("https://", "http://") + "/info/", timeout=10)
    untrusting = requests.Session()
    untrusting.trust_env = False  # without the certificate (REQUESTS_CA_BUNDLE ignored): refused, not "fine"
    with pytest.raises(requests.exceptions.SSLError):
        untrusting.get(f"{url}/info/", timeout=10)


def test_the_viewer_loads_over_https(tls_site):
    from playwright.sync_api import sync_playwright

    from browser.viewer_page import CHROMIUM

    url, _, _ = tls_site
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(ignore_https_errors=True)  # the test's self-signed certificate
        page = context.new_page()
        failed = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        answers = []
        page.on("response", lambda response: answers.append((response.status, response.url)))
        page.goto(f"{url}/ohif/")
        page.wait_for_function("() => window.config && window.config.extensions.length === 1", timeout=60_000)
        page.wait_for_timeout(2000)
        browser.close()
    ours = [(status, address) for status, address in answers if "/ohif/" in address]
    assert ours and all(address.startswith("https://") for _, address in ours)
    assert all(status < 400 for status, _ in ours), [a for a in ours if a[0] >= 400]
    assert not [address for address in failed if "/ohif/" in address]
    assert any("/ohif/medicosam/index.js" in address for _, address in ours)  # our extension loaded
