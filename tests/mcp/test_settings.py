"""The gateway's configuration and its bearer-token rules, in-process (no server needed).

Each rule of :mod:`fiat.mcp.settings` and :mod:`fiat.mcp.identity` has a case that would pass
on code lacking it: a configuration error names the setting; a token that breaks one rule is refused.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.errors import ConfigError
from fiat.formats import jws
from fiat.mcp import settings
from fiat.mcp.identity import JwtVerifier, TokenRejected

AUD = "http://127.0.0.1:8760/mcp"


def _config(**servers: Any) -> dict[str, Any]:
    return {"identity": {"static": "agent:dev"}, "servers": servers}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_config(), "at least one upstream"),
        (_config(desk={}), "exactly one of command"),
        (_config(desk={"command": ["x"], "url": "http://h/mcp"}), "exactly one of command"),
        (_config(desk={"url": "ftp://h"}), "http:// or https://"),
        (_config(**{"a___b": {"command": ["x"]}}), "server name"),
        # ``a_`` + ``___`` + ``x`` is ``a____x``, as ``a`` + ``___`` + ``_x``: no server name ends (or
        # starts) with ``_``, and no tool starting with ``_`` is proxied, so a name splits one way only.
        (_config(**{"a_": {"command": ["x"]}}), "server name"),
        (_config(**{"_a": {"command": ["x"]}}), "server name"),
        (
            _config(desk={"command": ["x"], "tools": {"t": {"resource_argument": "a", "resource_type": "no spaces"}}}),
            "Cedar entity type",
        ),
        (_config(desk={"command": ["x"], "bogus": 1}), "bogus"),
        ({"identity": {}, "servers": {"desk": {"command": ["x"]}}}, "either static"),
        ({"identity": {"issuer": "https://i"}, "servers": {"desk": {"command": ["x"]}}}, "both issuer and jwks"),
        (
            {
                "identity": {"issuer": "https://i", "jwks": "k", "algorithms": ["HS256"]},
                "servers": {"d": {"command": ["x"]}},
            },
            "asymmetric",
        ),
    ],
)
def test_a_bad_configuration_names_the_setting(data: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        settings.parse(data, "gateway.toml")


def test_the_resource_url_is_public_url_and_path(tmp_path: Path) -> None:
    f = tmp_path / "g.toml"
    f.write_text(
        '[gateway]\npublic_url = "https://mcp.example.com/"\n'
        '[identity]\nstatic = "agent:x"\n[servers.d]\ncommand = ["x"]\n'
    )
    assert settings.load(f).resource_url() == "https://mcp.example.com/mcp"
    f.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        settings.load(f)


@pytest.fixture
def issuer(tmp_path: Path) -> tuple[Ed25519PrivateKey, JwtVerifier]:
    key = Ed25519PrivateKey.generate()
    (tmp_path / "jwks.json").write_text(
        json.dumps({"keys": [{**jws.jwk(key.public_key().public_bytes_raw()), "kid": "k"}]})
    )
    ident = settings.IdentitySettings(
        issuer="https://issuer.test", jwks=str(tmp_path / "jwks.json"), required_scopes=["tools"]
    )
    return key, JwtVerifier(ident, AUD)


def _token(key: Ed25519PrivateKey, header: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "https://issuer.test", "aud": AUD, "sub": "desk-bot", "exp": now + 60, "scope": "tools", **claims}
    return jws.sign_with_header(header or {"alg": "EdDSA", "kid": "k"}, json.dumps(body).encode(), key)


def test_a_good_token_names_the_agent(issuer: tuple[Ed25519PrivateKey, JwtVerifier]) -> None:
    key, verifier = issuer
    assert verifier.check(_token(key))["principal"] == "agent:desk-bot"
    assert verifier.check(_token(key, aud=["https://other", AUD]))["principal"] == "agent:desk-bot"


def _unsigned(alg: str, **claims: Any) -> str:
    def b64(v: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(v).encode()).rstrip(b"=").decode()

    now = int(time.time())
    body = {"iss": "https://issuer.test", "aud": AUD, "sub": "desk-bot", "exp": now + 60, "scope": "tools", **claims}
    return f"{b64({'alg': alg, 'kid': 'k'})}.{b64(body)}.{'A' * 43 if alg != 'none' else ''}"


@pytest.mark.parametrize(
    ("why", "make", "says"),
    [
        ("alg none", lambda key: _unsigned("none"), "alg"),
        ("HMAC", lambda key: _unsigned("HS256"), "alg"),
        ("unknown kid", lambda key: _token(key, {"alg": "EdDSA", "kid": "other"}), "no issuer key"),
        ("another key", lambda key: _token(Ed25519PrivateKey.generate()), "signature"),
        ("another issuer", lambda key: _token(key, iss="https://rogue"), "iss"),
        ("another audience (RFC 8707)", lambda key: _token(key, aud="http://127.0.0.1:9/mcp"), "aud"),
        ("expired", lambda key: _token(key, exp=int(time.time()) - 120), "expired"),
        ("not yet valid", lambda key: _token(key, nbf=int(time.time()) + 600), "nbf"),
        ("no subject", lambda key: _token(key, sub=7), "principal claim"),
        ("a subject that is no principal", lambda key: _token(key, sub="x" * 2000), "not a principal"),
        # Attack: entity syntax in the subject would make ``agent:`` + it another entity type.
        ("a subject spelling another entity", lambda key: _token(key, sub=':User::"alice"'), "not a plain id"),
        ("missing scope", lambda key: _token(key, scope="other"), "scope"),
        ("critical header", lambda key: _token(key, {"alg": "EdDSA", "kid": "k", "crit": ["x"]}), "critical"),
    ],
)
def test_a_token_breaking_one_rule_is_refused(
    issuer: tuple[Ed25519PrivateKey, JwtVerifier], why: str, make: Any, says: str
) -> None:
    key, verifier = issuer
    with pytest.raises(TokenRejected, match=says):
        verifier.check(make(key))
