"""The authority's trust boundaries, each against a real ``fiat serve`` on 127.0.0.1 (issue 11).

* The DPoP replay cache lives in the store: a proof accepted once is refused after a
  restart of the server, and by a second server over the same home (RFC 9449 §11.1).
* ``htu`` must name ``server.public_url``: a proof for another authority is refused
  whatever ``Host`` says, and ``X-Forwarded-*`` count only from ``server.trusted_proxies``.
* ``fiat serve`` refuses to start with a missing, empty or weak admin token.
* Every file in the home is 0600 and every directory 0700.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.authorize.dpop import make_proof
from fiat.config import load_config
from fiat.home import keyring
from support.processes import EXIT_ERROR, FiatServer, clean_env, err, fiat_text, free_port, ok

pytestmark = pytest.mark.timeout(300)

PROBLEM = "application/problem+json"


@dataclass
class Home:
    path: Path
    kid: str
    key: Ed25519PrivateKey

    def body(self) -> dict[str, object]:
        return {"principal": "agent:a", "action": "deploy", "resource": "service:docs", "runtimeKid": self.kid}


def new_home(tmp_path: Path, name: str = "home") -> Home:
    path = tmp_path / name
    ok(fiat_text("init", "--home", path))
    with clean_env():
        rec, key = keyring(load_config(path, require=True)).signing_key("runtime")
    return Home(path, rec.kid, key)


def authorize(url: str, home: Home, proof: str, **headers: str) -> httpx.Response:
    return httpx.post(url + "/v1/authorize", json=home.body(), headers={"DPoP": proof, **headers}, timeout=30)


def assert_refused(r: httpx.Response, words: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert words in r.json()["detail"], r.json()


# -- the replay cache ---------------------------------------------------------------------


def test_a_proof_used_once_is_refused_after_a_restart(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    port = free_port()
    env = {"FIAT_SERVER_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    proof = make_proof(home.key, "POST", url + "/v1/authorize")
    with FiatServer(home.path, env=env, port=port):
        first = authorize(url, home, proof)
        assert first.status_code == 200, first.text  # decided (denied: no policy), the proof accepted
        assert_refused(authorize(url, home, proof), "replay")
    with FiatServer(home.path, env=env, port=port):  # the same home, a new process
        assert_refused(authorize(url, home, proof), "replay")
        fresh = authorize(url, home, make_proof(home.key, "POST", url + "/v1/authorize"))
        assert fresh.status_code == 200, fresh.text


def test_two_servers_over_one_home_refuse_each_others_proofs(tmp_path: Path) -> None:
    """Replicas share the store's replay cache: a proof one accepted, the other refuses."""
    home = new_home(tmp_path)
    public = "http://authority.test"  # both serve the one public URL (a load balancer's)
    env = {"FIAT_SERVER_PUBLIC_URL": public}
    with FiatServer(home.path, env=env) as a, FiatServer(home.path, env=env) as b:
        proof = make_proof(home.key, "POST", public + "/v1/authorize")
        assert authorize(a.url, home, proof).status_code == 200
        assert_refused(authorize(b.url, home, proof), "replay")
        proof = make_proof(home.key, "POST", public + "/v1/authorize")
        assert authorize(b.url, home, proof).status_code == 200
        assert_refused(authorize(a.url, home, proof), "replay")


# -- htu and forwarded headers ----------------------------------------------------------------


def test_htu_must_name_the_public_url_behind_a_trusted_proxy(tmp_path: Path) -> None:
    """With 127.0.0.1 a trusted proxy and an https public URL, a proof for that URL is accepted and
    one for the address the server listens on is not; another authority's URL never is."""
    home = new_home(tmp_path)
    public = "https://fiat.example.test/authority"  # a path prefix, as a proxy may add
    env = {"FIAT_SERVER_PUBLIC_URL": public + "/", "FIAT_SERVER_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"}
    with FiatServer(home.path, env=env) as server:
        assert f"public URL (DPoP htu): {public}" in server.text()
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        r = authorize(server.url, home, make_proof(home.key, "POST", public + "/v1/authorize"), **forwarded)
        assert r.status_code == 200, r.text
        r = authorize(server.url, home, make_proof(home.key, "POST", public + "/v1/authorize"))
        assert r.status_code == 200, r.text  # the public URL decides, not the headers
        for htu in (server.url + "/v1/authorize", "https://evil.example/authority/v1/authorize"):
            r = authorize(server.url, home, make_proof(home.key, "POST", htu), **forwarded)
            assert_refused(r, "htu")


def test_a_bad_public_url_or_proxy_is_a_clear_error(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    cases = {
        "FIAT_SERVER_PUBLIC_URL": ("ftp://x.example", "server.public_url 'ftp://x.example' must be an http"),
        "FIAT_SERVER_TRUSTED_PROXIES": ("10.0.0.300", "server.trusted_proxies: '10.0.0.300' is not an IP address"),
    }
    for name, (value, message) in cases.items():
        p = fiat_text("serve", "--home", home.path, "--port", "0", env={name: value}, timeout=60)
        assert p.returncode == EXIT_ERROR and message in err(p), p.stderr
    p = fiat_text("serve", "--home", home.path, "--port", "0", env={"FIAT_SERVER_PUBLIC_URL": "https://a.test/?q=1"})
    assert p.returncode == EXIT_ERROR and "must not carry credentials, a query or a fragment" in err(p), p.stderr


# -- the admin token --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "is missing"),
        ("", "it is empty"),
        ("\n  \n", "it is empty"),
        ("fiat_admin_" + "Ab1-" * 5, "it is too weak"),  # 20 base64url characters: 120 bits
        ("0123456789abcdef" * 2, None),  # 32 hex digits: 128 bits, accepted
        ("0123456789abcdef" + "0123456789abcde", "it is too weak"),  # 31 hex digits
        ("a" * 64, "it is too weak"),  # one character repeated
        ("fiat admin token with spaces in it", "holds spaces"),
    ],
    ids=["missing", "empty", "blank", "20-base64url", "32-hex", "31-hex", "repeated", "spaces"],
)
def test_serve_refuses_a_missing_empty_or_weak_admin_token(tmp_path: Path, content: str | None, problem: str) -> None:
    home = new_home(tmp_path)
    token = home.path / "keys" / "admin.token"
    if content is None:
        token.unlink()
    else:
        token.write_text(content)
        token.chmod(0o600)
    if problem is None:
        with FiatServer(home.path) as server:  # a strong hand-written token is fine
            r = httpx.get(server.url + "/v1/approvals", headers={"Authorization": f"Bearer {content}"})
            assert r.status_code == 200 and r.json() == [], r.text
        return
    p = fiat_text("serve", "--home", home.path, "--port", str(free_port()), timeout=60)
    assert p.returncode == EXIT_ERROR, p.stdout + p.stderr
    message = err(p)
    assert f"the admin token {token}" in message and problem in message, message
    assert f"run `fiat init --home {home.path}`, which writes a new token" in message, message
    # The fix the message names works: a new, strong token, every key kept.
    report = json.loads(ok(fiat_text("init", "--home", home.path, "--json")).stdout)
    assert any(name.startswith("keys/admin.token") for name in report["created"]), report
    assert not any("(runtime)" in name for name in report["created"]), report
    assert len(token.read_text().strip()) >= 43 and stat.S_IMODE(token.stat().st_mode) == 0o600


def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    token = home.path / "keys" / "admin.token"
    token.chmod(0o644)
    p = fiat_text("serve", "--home", home.path, "--port", str(free_port()), timeout=60)
    assert p.returncode == EXIT_ERROR and f"run `chmod 600 {token}`" in err(p), p.stderr


def test_an_empty_bearer_value_is_never_admin(tmp_path: Path) -> None:
    """The attack of the issue (an empty token file, ``Authorization: Bearer`` enrolls a key), aimed at a
    server whose token is fine: refused, and the key is not enrolled."""
    home = new_home(tmp_path)
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    body = {"role": "runtime", "name": "intruder", "publicKey": base64.urlsafe_b64encode(stranger).decode().rstrip("=")}
    data = json.dumps(body).encode()
    with FiatServer(home.path) as server:
        for value in (b"Bearer", b"Bearer ", b"bearer  ", b"Bearer \t", b'Bearer ""'):
            # Raw bytes: an HTTP client refuses to send a header value ending in whitespace.
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                sock.sendall(
                    b"POST /v1/enrollments HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\nAuthorization: %s\r\n\r\n%s"
                    % (len(data), value, data)
                )
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 401 "), (value, answer[:300])
    keys = json.loads(ok(fiat_text("keys", "list", "--home", home.path, "--json")).stdout)["keys"]
    assert "intruder" not in {k["name"] for k in keys}


# -- file modes ---------------------------------------------------------------------------------


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            found[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return found


def loose(found: dict[str, int], root: Path) -> dict[str, str]:
    return {name: f"{mode:04o}" for name, mode in found.items() if mode != (0o700 if (root / name).is_dir() else 0o600)}


def test_every_file_in_the_home_is_private(tmp_path: Path) -> None:
    """After ``fiat init`` and a ``fiat serve`` that decided and logged a request (under umask 022,
    which this process passes on): files 0600 (fiat.db, -wal, -shm too), directories 0700."""
    old = os.umask(0o022)
    try:
        home = new_home(tmp_path)
        with FiatServer(home.path) as server:
            proof = make_proof(home.key, "POST", server.url + "/v1/authorize")
            assert authorize(server.url, home, proof).status_code == 200
            found = modes(home.path)
            assert {"fiat.db", "fiat.db-wal", "fiat.db-shm", "fiat.toml", "keys/admin.token"} <= set(found), found
            assert loose(found, home.path) == {}, found
        assert loose(modes(home.path), home.path) == {}
    finally:
        os.umask(old)


def test_a_home_an_older_fiat_left_readable_is_tightened(tmp_path: Path) -> None:
    """The database files and fiat.toml an older Fiat wrote 0644 are tightened, silently, when the
    home is opened (``fiat init`` also tightens fiat.toml and the directories)."""
    home = new_home(tmp_path)
    with FiatServer(home.path) as server:
        assert httpx.get(server.url + "/healthz").status_code == 200
    for name in ("fiat.db", "fiat.db-wal", "fiat.db-shm", "fiat.toml"):
        if (home.path / name).exists():
            (home.path / name).chmod(0o644)
    (home.path / "keys").chmod(0o755)
    with FiatServer(home.path) as server:
        assert httpx.get(server.url + "/healthz").status_code == 200
        found = modes(home.path)
        assert all(found[n] == 0o600 for n in ("fiat.db", "fiat.db-wal", "fiat.db-shm") if n in found), found
    ok(fiat_text("init", "--home", home.path))
    assert loose(modes(home.path), home.path) == {}
