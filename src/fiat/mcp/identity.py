"""Who the agent is on the HTTP face: an OAuth 2.1 bearer token, verified here (the gateway is a resource server).

Following the MCP authorization specification (2025-11-25, "Authorization"): the gateway is an
OAuth 2.1 resource server; it publishes its protected resource metadata (RFC 9728) and answers
a request without a valid token with 401 and ``WWW-Authenticate: Bearer ... resource_metadata=``
(both served by the SDK, :mod:`fiat.api.mcp`). A token is accepted only when (RFC 9068 / RFC 7519):

1. it is a compact JWS whose ``alg`` is one of ``identity.algorithms`` (asymmetric only: EdDSA,
   ES256, RS256; never ``none`` or HMAC) and whose signature verifies with the issuer key its
   ``kid`` names in the configured JWKS (RFC 7517; a JWKS of one key needs no ``kid``);
2. ``iss`` is the configured issuer;
3. ``aud`` is (or contains) the gateway's resource URL: the token was issued for this gateway
   (RFC 8707 resource indicators; "Token Audience Binding and Validation");
4. ``exp`` is in the future and ``nbf``, when present, is not (60 s of leeway each);
5. the principal claim (``sub`` by default) is a string; the principal is
   ``identity.principal_prefix`` + that string (``agent:<sub>``), which must be a Fiat principal.

The token is the agent's credential for this gateway alone: it is never sent upstream
("Token Passthrough" is forbidden); upstreams get only their own configured headers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from mcp.server.auth.provider import AccessToken

from fiat.errors import ConfigError, MalformedError
from fiat.formats import jws
from fiat.formats.action import entity_uid
from fiat.formats.encoding import b64url_decode
from fiat.mcp.settings import IdentitySettings

LEEWAY = 60.0

PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def _int(value: Any, what: str) -> int:
    return int.from_bytes(b64url_decode(str(value), what), "big")


def public_key(jwk: dict[str, Any]) -> PublicKey:
    """A JWK (RFC 7517/7518/8037) as a public key: OKP Ed25519, EC P-256, or RSA."""
    kty = jwk.get("kty")
    if kty == "OKP":
        return Ed25519PublicKey.from_public_bytes(jws.public_key_from_jwk(jwk, "JWK"))
    if kty == "EC" and jwk.get("crv") == "P-256":
        nums = ec.EllipticCurvePublicNumbers(_int(jwk.get("x"), "JWK x"), _int(jwk.get("y"), "JWK y"), ec.SECP256R1())
        return nums.public_key()
    if kty == "RSA":
        return rsa.RSAPublicNumbers(_int(jwk.get("e"), "JWK e"), _int(jwk.get("n"), "JWK n")).public_key()
    raise MalformedError("JWK", f"unsupported key type {kty!r} (OKP Ed25519, EC P-256 or RSA)")


_ALG_KEY = {"EdDSA": Ed25519PublicKey, "ES256": ec.EllipticCurvePublicKey, "RS256": rsa.RSAPublicKey}


def _verify(alg: str, key: PublicKey, signature: bytes, data: bytes) -> bool:
    if not isinstance(key, _ALG_KEY.get(alg, ())):
        return False
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def load_jwks(path: Path) -> dict[str | None, PublicKey]:
    """The issuer's keys by ``kid`` (a JWKS file, RFC 7517 §5)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"identity.jwks: cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"identity.jwks: {path} is not JSON: {exc}") from exc
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ConfigError(f"identity.jwks: {path} is not a JWK Set (an object with a non-empty keys list)")
    out: dict[str | None, PublicKey] = {}
    for i, jwk in enumerate(keys):
        if not isinstance(jwk, dict):
            raise ConfigError(f"identity.jwks: key {i} of {path} is not a JWK object")
        try:
            out[jwk.get("kid")] = public_key(jwk)
        except (MalformedError, ValueError) as exc:
            raise ConfigError(f"identity.jwks: key {i} of {path}: {exc}") from exc
    return out


class TokenRejected(Exception):
    """Why a bearer token was not accepted (logged; the agent sees 401 ``invalid_token``)."""


class JwtVerifier:
    """The SDK's ``TokenVerifier`` for the HTTP face: a bearer JWT → an ``AccessToken`` naming the principal."""

    def __init__(self, settings: IdentitySettings, audience: str) -> None:
        assert settings.issuer is not None and settings.jwks is not None
        self.settings, self.audience = settings, settings.audience or audience
        self.keys = load_jwks(Path(settings.jwks))
        self.last_rejection: str | None = None

    def check(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The token's claims (with ``principal`` added) once every rule of the module holds."""
        now = time.time() if now is None else now
        try:
            parsed = jws.parse(token)
        except MalformedError as exc:
            raise TokenRejected(f"not a compact JWS: {exc.reason}") from None
        alg = parsed.header.get("alg")
        if alg not in self.settings.algorithms or alg not in _ALG_KEY:
            raise TokenRejected(f"alg {alg!r} is not accepted")
        if "crit" in parsed.header:
            raise TokenRejected("critical header extensions are not understood")
        kid = parsed.header.get("kid")
        key = self.keys.get(kid) if kid is not None else None
        if key is None and kid is None and len(self.keys) == 1:
            key = next(iter(self.keys.values()))
        if key is None:
            raise TokenRejected(f"no issuer key {kid!r} in the JWKS")
        if not _verify(str(alg), key, parsed.signature, parsed.signing_input):
            raise TokenRejected("the signature does not verify")
        c = parsed.claims
        if c.get("iss") != self.settings.issuer:
            raise TokenRejected(f"iss {c.get('iss')!r} is not the configured issuer")
        aud = c.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if self.audience.rstrip("/") not in [a.rstrip("/") for a in auds if isinstance(a, str)]:
            raise TokenRejected(f"aud {aud!r} does not name this gateway ({self.audience})")
        exp, nbf = c.get("exp"), c.get("nbf")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp + LEEWAY <= now:
            raise TokenRejected("the token has expired (or carries no exp)")
        if nbf is not None and (not isinstance(nbf, int | float) or nbf - LEEWAY > now):
            raise TokenRejected("the token is not valid yet (nbf)")
        who = c.get(self.settings.principal_claim)
        if not isinstance(who, str) or not who:
            raise TokenRejected(f"the principal claim {self.settings.principal_claim!r} is not a string")
        if '"' in who or "::" in who or any(ord(ch) < 0x20 for ch in who):
            # ``:User::"alice"`` after ``agent:`` would spell another entity type (``agent::User::…``)
            # than the configured one: the claim is an id, never a piece of entity syntax.
            raise TokenRejected(f"the principal claim {self.settings.principal_claim!r} is not a plain id")
        principal = self.settings.principal_prefix + who
        try:
            entity_uid(principal, "principal")
        except MalformedError as exc:
            raise TokenRejected(f"{principal!r} is not a principal: {exc.reason}") from None
        scopes = str(c.get("scope", "")).split()
        missing = [s for s in self.settings.required_scopes if s not in scopes]
        if missing:
            raise TokenRejected(f"the token lacks the scope(s) {', '.join(missing)}")
        return {**c, "principal": principal}

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = self.check(token)
        except TokenRejected as exc:
            self.last_rejection = str(exc)
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or claims["principal"]),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=str(claims.get("sub") or ""),
            claims={"iss": claims["iss"], "principal": claims["principal"]},
        )


def principal_of_request(ctx: Any, static: str | None = None) -> str:
    """The principal of an HTTP-face request: ``static``, else the one its verified bearer token names
    (the SDK's authentication middleware put the token's ``AccessToken`` on the request)."""
    if static is not None:
        return static
    from mcp.shared.exceptions import MCPError
    from mcp_types.jsonrpc import INVALID_REQUEST

    request = getattr(ctx, "request", None)
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    token = getattr(user, "access_token", None)
    principal = (getattr(token, "claims", None) or {}).get("principal")
    if not isinstance(principal, str):
        raise MCPError(INVALID_REQUEST, "no authenticated principal for this request")
    return principal
