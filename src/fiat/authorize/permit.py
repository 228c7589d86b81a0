"""Minting permits: compact JWS (RFC 7515) signed with Ed25519 (RFC 8037).

Claims (documented in docs/formats.md):

* registered (RFC 7519 §4.1): ``iss sub aud iat nbf exp jti``; on a delegated permit (one with
  a parent) ``sub`` is the lineage root's principal and ``act`` (RFC 8693 §4.1) nests the actors,
  this permit's principal outermost (:func:`fiat.verify.permit.act_chain`);
* ``cnf`` (RFC 7800 §3.2): the runtime's public key as a JWK — only that runtime can use the permit;
* Fiat's: ``action`` (name, resource, digest), ``policy`` (digest, version, determining
  policies), ``environment`` (measurement digest), ``constraints``, ``parent``, ``approvals``,
  and, on a renewal only, ``renews`` (the permit it succeeds in the same execution); when asked,
  ``scope`` (what descendants may be permitted), and on a delegated permit ``delegation`` (the
  attenuation the authority checked: depth, each ancestor principal Cedar allowed, the parent
  chain's expiry that capped ``exp``).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.formats import jws
from fiat.formats.action import action_digest
from fiat.formats.canonical import compact
from fiat.formats.encoding import b64url
from fiat.verify.permit import PERMIT_TYP, act_chain


@dataclass(frozen=True)
class PolicyRef:
    digest: str
    version: int
    determining: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"digest": {"sha256": self.digest}, "version": self.version, "determining": list(self.determining)}


@dataclass(frozen=True)
class Constraints:
    max_duration: int | None = None  # seconds
    heartbeat_interval_ms: int | None = None
    single_use: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"singleUse": self.single_use}
        if self.max_duration is not None:
            out["maxDuration"] = self.max_duration
        if self.heartbeat_interval_ms is not None:
            out["heartbeatIntervalMs"] = self.heartbeat_interval_ms
        return out


@dataclass(frozen=True)
class PermitRequest:
    request: dict[str, Any]
    runtime_public_key: bytes
    policy: PolicyRef
    environment_digest: str
    ttl: int = 60
    constraints: Constraints = field(default_factory=Constraints)
    approvals: tuple[str, ...] = ()
    action_digest: str | None = None  # when the caller already computed it
    renews: str | None = None  # a renewal: the permit this one succeeds (docs/formats.md, "Renewal")
    scope: list[dict[str, str]] | None = None  # what descendants may be permitted ("Delegation")
    #: A delegated permit: the lineage from its parent up (principals, parent first; the last is the
    #: root, who becomes ``sub``), the latest ``exp`` its parent chain allows, and the evidence.
    lineage: tuple[str, ...] = ()
    exp_cap: int | None = None
    delegation: dict[str, Any] | None = None


class _RandomPool:
    """Bytes from the OS CSPRNG, fetched 4 KiB at a time.

    One ``getrandom`` call serves 256 permit ids instead of one each (a system call
    hands the interpreter lock to another thread and waits to get it back). A forked
    child starts with an empty pool, so parent and child never share bytes.
    """

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._buf, self._pos = b"", 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pos + n > len(self._buf):
                self._buf, self._pos = os.urandom(max(self.SIZE, n)), 0
            out = self._buf[self._pos : self._pos + n]
            self._pos += n
            return out


_RANDOM = _RandomPool()


def new_permit_id() -> str:
    """``pmt_`` and 128 random bits, base64url (as ``secrets.token_urlsafe(16)``)."""
    return "pmt_" + b64url(_RANDOM.take(16))


def mint_permit(
    spec: PermitRequest,
    *,
    key: Ed25519PrivateKey,
    kid: str,
    issuer: str,
    audience: str,
    now: int | None = None,
    jti: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign a permit; returns (compact token, claims)."""
    t = int(time.time()) if now is None else now
    req = spec.request
    exp = t + spec.ttl if spec.exp_cap is None else min(t + spec.ttl, spec.exp_cap)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": spec.lineage[-1] if spec.lineage else req["principal"],
        "aud": audience,
        "iat": t,
        "nbf": t,
        "exp": exp,
        "jti": jti or new_permit_id(),
        "cnf": {"jwk": jws.jwk(spec.runtime_public_key)},
        "action": {
            "name": req["action"],
            "resource": req["resource"],
            "digest": {"sha256": spec.action_digest or action_digest(req)},
        },
        "policy": spec.policy.to_json(),
        "environment": {"digest": {"sha256": spec.environment_digest}},
        "constraints": spec.constraints.to_json(),
        "parent": req.get("parent"),
        "approvals": list(spec.approvals),
    }
    if spec.renews is not None:
        claims["renews"] = spec.renews
    if spec.lineage:  # RFC 8693 §4.1: current actor outermost; the root is ``sub``, not an actor
        claims["act"] = act_chain([req["principal"], *spec.lineage[:-1]])
    if spec.scope is not None:
        claims["scope"] = spec.scope
    if spec.delegation is not None:
        claims["delegation"] = spec.delegation
    token = jws.sign_compact(compact(claims), key, kid=kid, typ=PERMIT_TYP)
    return token, claims
