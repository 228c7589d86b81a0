"""RFC 9449 DPoP proofs: the caller proves it holds the runtime key the permit will bind (``cnf``).

A proof is a JWT with header ``typ`` = ``dpop+jwt``, ``alg`` EdDSA/Ed25519 and the
public key as ``jwk``; claims ``jti``, ``htm`` (method), ``htu`` (URI without
query or fragment) and ``iat``. Verification follows RFC 9449 §4.3, one step each;
``jti`` values are remembered in the store's replay cache
(:class:`~fiat.persist.protocols.ReplayCache`) until they could no longer pass the
``iat`` window, so a proof cannot be replayed (§11.1) — not after a restart, nor to
another authority process over the same store.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.errors import MalformedError, VerificationError
from fiat.formats import jws
from fiat.formats.canonical import compact
from fiat.persist.protocols import ReplayCache

DPOP_TYP = "dpop+jwt"


class DpopError(VerificationError):
    """A DPoP proof was missing, malformed, stale, replayed or not signed by its key."""


class DpopKeyNotEnrolled(DpopError):
    """A valid proof by a key the server does not know."""


@lru_cache(maxsize=1024)
def normalize_htu(url: str) -> str:
    """Scheme and host lower-cased, default port dropped, no query or fragment (RFC 9449 §4.3 step 9)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host if port is None or port == default else f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", "", ""))


def make_proof(key: Ed25519PrivateKey, method: str, url: str, now: int | None = None) -> str:
    """Create a DPoP proof for one request (the client side: runtimes, CLI)."""
    public = key.public_key().public_bytes_raw()
    claims = {
        "jti": secrets.token_urlsafe(16),
        "htm": method.upper(),
        "htu": normalize_htu(url),
        "iat": int(time.time()) if now is None else now,
    }
    # RFC 9449 §4.2: typ dpop+jwt, the public key as a JWK in the protected header.
    return jws.sign_with_header({"typ": DPOP_TYP, "jwk": jws.jwk(public)}, compact(claims), key)


class DpopVerifier:
    """Checks proofs and remembers their ``jti`` values in a :class:`ReplayCache`.

    A proof is remembered, scoped by its key, until ``iat + max_age + max_future``: past
    that it fails the ``iat`` check anyway (the ``max_future`` margin covers clocks of
    several authority processes that differ a little). Every ``prune_interval`` seconds
    the expired rows are deleted, so the cache holds at most the proofs of one window.
    """

    def __init__(
        self, cache: ReplayCache, max_age: float = 60.0, max_future: float = 5.0, prune_interval: float = 5.0
    ) -> None:
        self.cache = cache
        self.max_age = max_age
        self.max_future = max_future
        self.prune_interval = prune_interval
        self._pruned = 0.0
        self._lock = threading.Lock()

    def verify(
        self,
        proof: str | None,
        method: str,
        url: str,
        now: float | None = None,
        allow: Callable[[str], bool] | None = None,
    ) -> tuple[str, bytes]:
        """Return the proof key's (RFC 7638 thumbprint, public key). Raises :class:`DpopError`."""
        step = "dpop"
        t = time.time() if now is None else now
        # §4.3 step 1–2: exactly one well-formed JWT.
        if not proof:
            raise DpopError(step, "the request carries no DPoP header (RFC 9449)")
        try:
            parsed = jws.parse(proof)
        except MalformedError as exc:
            raise DpopError(step, f"the DPoP proof is not a JWT: {exc.reason}") from exc
        # Step 4: typ.
        if parsed.header.get("typ") != DPOP_TYP:
            raise DpopError(step, f"typ must be {DPOP_TYP}")
        # Step 6–7: a public JWK, no private part; the signature verifies with it (step 5: alg).
        jwk_value = parsed.header.get("jwk")
        if not isinstance(jwk_value, dict) or "d" in jwk_value:
            raise DpopError(step, "the header must carry the public key as jwk, and no private part")
        try:
            public = jws.public_key_from_jwk(jwk_value, "DPoP jwk")
        except MalformedError as exc:
            raise DpopError(step, exc.reason) from exc
        try:
            jws.verify_signature(parsed, public, step)
        except VerificationError as exc:
            raise DpopError(step, exc.reason) from exc
        claims = parsed.claims
        # Step 8: htm.
        if claims.get("htm") != method.upper():
            raise DpopError(step, f"htm {claims.get('htm')!r} is not this request's method {method.upper()}")
        # Step 9: htu.
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalize_htu(htu) != normalize_htu(url):
            raise DpopError(step, f"htu {htu!r} is not this request's URI {normalize_htu(url)!r}")
        # Step 11: iat within the acceptable window.
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise DpopError(step, "iat must be a number")
        if iat > t + self.max_future or iat < t - self.max_age:
            raise DpopError(step, f"the proof's iat is outside the accepted window of {self.max_age:.0f} s")
        # §11.1: a jti is accepted once.
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 8 <= len(jti) <= 256:
            raise DpopError(step, "jti must be a string of 8 to 256 characters")
        kid = jws.jwk_thumbprint(public)
        # Only proofs by known keys are remembered, so strangers cannot fill the replay cache.
        if allow is not None and not allow(kid):
            raise DpopKeyNotEnrolled(step, f"the proof's key {kid} is not enrolled with this authority")
        # The key scopes the jti by the proof key (two runtimes cannot collide) and is a digest,
        # so the stored rows have one size whatever the jti.
        key = hashlib.sha256(f"{kid} {jti}".encode()).hexdigest()
        if not self.cache.remember_proof(key, float(iat) + self.max_age + self.max_future, t):
            raise DpopError(step, "this DPoP proof was already used (replay)")
        self._prune(t)
        return kid, public

    def _prune(self, now: float) -> None:
        with self._lock:
            if now - self._pruned < self.prune_interval:
                return
            self._pruned = now
        self.cache.prune_proofs(now)
