"""Compact JWS with Ed25519 (RFC 7515, RFC 8037), verification side; standard library + cryptography.

Accepts ``alg`` = ``EdDSA`` (RFC 8037 §3.1) and ``Ed25519`` (RFC 9864, the
fully-specified name). Anything else — including ``none`` — is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fiat.errors import MalformedError, VerificationError
from fiat.formats.encoding import b64url, b64url_decode, loads_strict

ACCEPTED_ALGS = ("EdDSA", "Ed25519")
MAX_TOKEN = 64 * 1024


@lru_cache(maxsize=64)
def _protected_header(kid: str, typ: str) -> bytes:
    header = {"alg": "EdDSA", "kid": kid, "typ": typ}
    return b64url(json.dumps(header, separators=(",", ":")).encode("ascii")).encode("ascii")


def sign_with_header(header: dict[str, Any], payload: bytes, key: Ed25519PrivateKey) -> str:
    """A compact JWS over ``payload`` with this protected header (``alg`` is set to EdDSA, RFC 8037 §3.1)."""
    protected = b64url(json.dumps({"alg": "EdDSA", **header}, separators=(",", ":")).encode("ascii"))
    signing_input = protected.encode("ascii") + b"." + b64url(payload).encode("ascii")
    return (signing_input + b"." + b64url(key.sign(signing_input)).encode("ascii")).decode("ascii")


def sign_compact(payload: bytes, key: Ed25519PrivateKey, *, kid: str, typ: str) -> str:
    """A compact JWS (RFC 7515 §7.1) over ``payload`` (JSON claims), signed with Ed25519 (RFC 8037 §3.1).

    ``BASE64URL(header) || '.' || BASE64URL(payload) || '.' || BASE64URL(signature)``,
    the signature taken over the first two parts (RFC 7515 §5.1 steps 4-6).
    """
    signing_input = _protected_header(kid, typ) + b"." + b64url(payload).encode("ascii")
    return (signing_input + b"." + b64url(key.sign(signing_input)).encode("ascii")).decode("ascii")


@lru_cache(maxsize=4096)
def jwk_thumbprint(public_key: bytes) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 key (RFC 8037 §2 OKP JWK)."""
    # RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64url(public_key)}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def jwk(public_key: bytes) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(public_key)}


def public_key_from_jwk(value: Any, what: str) -> bytes:
    if not isinstance(value, dict) or value.get("kty") != "OKP" or value.get("crv") != "Ed25519":
        raise MalformedError(what, "expected an Ed25519 OKP JWK (RFC 8037 §2)")
    raw = b64url_decode(value.get("x", ""), what)
    if len(raw) != 32:
        raise MalformedError(what, "an Ed25519 public key is 32 bytes")
    return raw


@dataclass(frozen=True)
class Jws:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    token: str

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the compact serialization: how evidence refers to this token."""
        return hashlib.sha256(self.token.encode("ascii")).hexdigest()


def parse(token: str) -> Jws:
    """Split and decode a compact JWS (RFC 7515 §7.1) without verifying it."""
    what = "JWS"
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise MalformedError(what, "expected a compact JWS string of at most 64 KiB")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedError(what, "a compact JWS has three dot-separated parts")
    header = loads_strict(b64url_decode(parts[0], "JWS header"), "JWS header")
    claims = loads_strict(b64url_decode(parts[1], "JWS payload"), "JWS payload")
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise MalformedError(what, "the header and the payload must be JSON objects")
    signature = b64url_decode(parts[2], "JWS signature")
    return Jws(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature, token)


def verify_signature(jws: Jws, public_key: bytes, step: str) -> None:
    """RFC 7515 §5.2 steps for one Ed25519 key; raises :class:`VerificationError` at ``step``."""
    alg = jws.header.get("alg")
    if alg not in ACCEPTED_ALGS:
        raise VerificationError(step, f"alg {alg!r} is not accepted (only EdDSA or Ed25519)")
    if "crit" in jws.header:
        raise VerificationError(step, "the JWS header has critical extensions Fiat does not understand")
    if len(jws.signature) != 64:
        raise VerificationError(step, "an Ed25519 signature is 64 bytes")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(jws.signature, jws.signing_input)
    except InvalidSignature:
        raise VerificationError(step, "the JWS signature does not verify") from None
