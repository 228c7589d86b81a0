"""``fiat serve`` over TLS (issue 11): ``server.tls_cert``/``server.tls_key`` serve HTTPS, and every
client — ``fiat run``'s guard and trust monitor, the CLI — verifies the certificate against
``server.tls_ca``, failing closed with a message that says what to set when it does not chain.

The certificates are made here with ``cryptography``'s X.509 builder: a CA, and a server
certificate it issues for the IP address 127.0.0.1 (RFC 5280 §4.2.1.6 subjectAltName); a
second, unrelated CA stands for a wrong ``server.tls_ca``. The server, the runs and the CLI
are real child processes on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import fiat
from support.processes import FiatServer, ok
from support.processes import fiat_text as cli

EXAMPLES = Path(fiat.__file__).resolve().parent / "examples" / "policies"
PRINCIPAL, ACTION, RESOURCE = "agent:release-bot", "shell:run", "repo:fiat"


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA bundle that issued the server's certificate
    other_ca: Path  # a CA that did not
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )  # digitalSignature, keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = _ca("Fiat test CA")
    _, other = _ca("Some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(d / "ca.pem", d / "other-ca.pem", d / "server.pem", d / "server.key")
    pki.ca.write_bytes(_pem(ca))
    pki.other_ca.write_bytes(_pem(other))
    pki.cert.write_bytes(_pem(cert))
    pki.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pki


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[FiatServer]:
    home = tmp_path_factory.mktemp("tls") / "home"
    ok(cli("init", "--home", str(home), "--json"))
    ok(cli("policy", "publish", str(EXAMPLES), "--home", str(home), "--json"))
    env = {
        "FIAT_SERVER_TLS_CERT": str(pki.cert),
        "FIAT_SERVER_TLS_KEY": str(pki.key),
        "FIAT_AUTHORITY_TRUST_INTERVAL_MS": "100",
    }
    s = FiatServer(home, env=env, tls_ca=pki.ca).start()
    try:
        yield s
    finally:
        s.stop()


def _run(server: FiatServer, ca: Path, *command: str) -> tuple[int, dict[str, object], str]:
    p = cli(
        "run",
        "--json",
        *("--home", str(server.home), "--url", server.url),
        *("--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE),
        "--",
        *command,
        env=dict(FIAT_SERVER_TLS_CA=str(ca), FIAT_RUNTIME_CONTAINMENT="process"),
    )
    return p.returncode, json.loads(p.stdout[p.stdout.rfind("{\n") :]), p.stderr


def test_fiat_serve_speaks_https_only(tls_server: FiatServer, pki: Pki) -> None:
    """With server.tls_cert/tls_key the authority answers HTTPS with that certificate, and
    announces an https:// URL; a plain-HTTP request on its port gets no API answer."""
    assert tls_server.url.startswith("https://")
    r = httpx.get(tls_server.url + "/healthz", verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=5)
    assert r.status_code == 200
    assert f"Fiat authority at {tls_server.url}" in tls_server.text()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=5).raise_for_status()


def test_fiat_run_over_tls(tls_server: FiatServer, pki: Pki, tmp_path: Path) -> None:
    """A governed run through https://: the permit (DPoP for the https URL), the trust stream
    (the guard's gate needs a fresh signed state) and the receipt all travel over TLS."""
    marker = tmp_path / "ran"
    code, result, err = _run(tls_server, pki.ca, sys.executable, "-c", f"open({str(marker)!r}, 'w').close()")
    assert code == 0 and result["outcome"] == "completed", (result, err)
    assert marker.exists()
    assert result["receiptLogIndex"] is not None, result


def test_a_wrong_ca_fails_closed(tls_server: FiatServer, pki: Pki, tmp_path: Path) -> None:
    """server.tls_ca naming a CA that did not issue the server's certificate: nothing runs, and
    both ``fiat run`` and the CLI say the certificate is not trusted and what to set."""
    marker = tmp_path / "ran"
    code, result, err = _run(tls_server, pki.other_ca, sys.executable, "-c", f"open({str(marker)!r}, 'w').close()")
    assert code == 126 and result["outcome"] == "not-established", (result, err)
    assert not marker.exists()
    reason = str(result["reason"])
    assert "TLS certificate is not trusted" in reason and "server.tls_ca" in reason, reason
    p = cli(
        "revoke",
        *("--permit", "pmt_nothing", "--reason", "test", "--home", str(tls_server.home), "--url", tls_server.url),
        env=dict(FIAT_SERVER_TLS_CA=str(pki.other_ca)),
    )
    assert p.returncode != 0
    said = " ".join(p.stderr.split())
    assert "TLS certificate is not trusted" in said and "server.tls_ca" in said, said


def test_tls_settings_are_checked_before_serving(tmp_path: Path, pki: Pki) -> None:
    """A certificate without its key, or a key that is not the certificate's, is refused at start."""
    home = tmp_path / "home"
    ok(cli("init", "--home", str(home), "--json"))
    p = cli("serve", "--home", str(home), "--port", "0", env=dict(FIAT_SERVER_TLS_CERT=str(pki.cert)))
    assert p.returncode != 0 and "go together" in " ".join(p.stderr.split()), p.stderr
    p = cli(
        "serve",
        *("--home", str(home), "--port", "0"),
        env=dict(FIAT_SERVER_TLS_CERT=str(pki.cert), FIAT_SERVER_TLS_KEY=str(pki.ca)),
    )
    assert p.returncode != 0 and "do not load" in " ".join(p.stderr.split()), p.stderr
