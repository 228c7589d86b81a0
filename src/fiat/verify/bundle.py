"""The evidence bundle: one JSON file per execution (``application/vnd.fiat.bundle.v1+json``).

::

    {
      "mediaType": "application/vnd.fiat.bundle.v1+json",
      "actionRequest": {principal, action, resource, context, parent},
      "permit": {"token": "<compact JWS>", "tlogProof": "<c2sp.org/tlog-proof@v1 text>"},
      "statements": [{"envelope": {DSSE}, "tlogProof": "..."}, ...],
      "consistency": [{"oldSize": m, "newSize": n, "proof": ["<base64 hash>", ...]}, ...],
      "ancestors": [<bundle without ancestors>, ...]      (nearest parent first)
    }

An ancestor bundle may carry ``"renewals": [{"token", "tlogProof"}, ...]``: its
permit's renewal chain, in order, from its first successor up to the permit
the next descendant names as ``delegation.parentHead`` (at most
:data:`MAX_RENEWALS`); the top-level bundle carries none (its permit is its
chain's last). The logged bytes of the permit are its compact token (ASCII);
those of a statement are the RFC 8785 form of its DSSE envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fiat.errors import MalformedError
from fiat.formats import jws
from fiat.formats.dsse import Envelope
from fiat.formats.encoding import b64std, b64std_decode, loads_strict
from fiat.formats.statement import Statement
from fiat.tlog.merkle import HASH_SIZE
from fiat.tlog.proof_file import TlogProof
from fiat.verify.trust_root import MAX_LINEAGE_DEPTH

MEDIA_TYPE = "application/vnd.fiat.bundle.v1+json"
MAX_BUNDLE = 8 << 20
MAX_STATEMENTS = 256
MAX_ANCESTORS = MAX_LINEAGE_DEPTH
#: The most renewals of one ancestor a bundle carries (docs/formats.md, "Delegation"): a parent
#: renewed every 20 s (the guard renews at a third of a 60 s ttl) for almost six hours.
MAX_RENEWALS = 1024


@dataclass(frozen=True)
class Consistency:
    old_size: int
    new_size: int
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"oldSize": self.old_size, "newSize": self.new_size, "proof": [b64std(h) for h in self.proof]}


@dataclass(frozen=True)
class BundleStatement:
    envelope: Envelope
    statement: Statement
    tlog_proof: TlogProof

    @property
    def entry(self) -> bytes:
        return self.envelope.encode()


@dataclass(frozen=True)
class BundlePermit:
    """A permit and its tlog-proof, as an ancestor's renewals are carried."""

    permit: jws.Jws
    tlog_proof: TlogProof

    def to_json(self) -> dict[str, str]:
        return {"token": self.permit.token, "tlogProof": self.tlog_proof.encode().decode("utf-8")}


@dataclass(frozen=True)
class Bundle:
    action_request: dict[str, Any]
    permit: jws.Jws
    permit_proof: TlogProof
    statements: tuple[BundleStatement, ...]
    consistency: tuple[Consistency, ...] = ()
    ancestors: tuple[Bundle, ...] = field(default_factory=tuple)
    #: On an ancestor: its permit's renewals up to the head its descendant names, first successor first.
    renewals: tuple[BundlePermit, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": MEDIA_TYPE,
            "actionRequest": self.action_request,
            "permit": {"token": self.permit.token, "tlogProof": self.permit_proof.encode().decode("utf-8")},
            "statements": [
                {"envelope": s.envelope.to_json(), "tlogProof": s.tlog_proof.encode().decode("utf-8")}
                for s in self.statements
            ],
            "consistency": [c.to_json() for c in self.consistency],
        }
        if self.ancestors:
            out["ancestors"] = [a.to_json() for a in self.ancestors]
        if self.renewals:
            out["renewals"] = [r.to_json() for r in self.renewals]
        return out

    @classmethod
    def parse(cls, data: bytes) -> Bundle:
        return cls.from_json(loads_strict(data, "bundle", max_size=MAX_BUNDLE))

    @classmethod
    def from_json(cls, v: Any, nested: bool = False) -> Bundle:
        what = "bundle"
        if not isinstance(v, dict):
            raise MalformedError(what, "expected a JSON object")
        if v.get("mediaType") != MEDIA_TYPE:
            raise MalformedError(what, f"mediaType must be {MEDIA_TYPE}")
        known = {"mediaType", "actionRequest", "permit", "statements", "consistency", "ancestors", "renewals"}
        unknown = set(v) - known
        if unknown:
            raise MalformedError(what, f"unknown members {sorted(unknown)}")
        request = v.get("actionRequest")
        if not isinstance(request, dict):
            raise MalformedError(what, "actionRequest must be an object")
        permit = v.get("permit")
        if not isinstance(permit, dict) or not isinstance(permit.get("token"), str):
            raise MalformedError(what, "permit.token must be a compact JWS string")
        token = jws.parse(permit["token"])
        permit_proof = _proof(permit.get("tlogProof"), "permit.tlogProof")
        statements = v.get("statements")
        if not isinstance(statements, list) or len(statements) > MAX_STATEMENTS:
            raise MalformedError(what, f"statements must be a list of at most {MAX_STATEMENTS}")
        parsed = []
        for i, s in enumerate(statements):
            if not isinstance(s, dict):
                raise MalformedError(what, f"statements[{i}] must be an object")
            env = Envelope.from_json(s.get("envelope"))
            parsed.append(
                BundleStatement(env, Statement.from_envelope(env), _proof(s.get("tlogProof"), f"statements[{i}]"))
            )
        consistency = v.get("consistency", [])
        if not isinstance(consistency, list) or len(consistency) > MAX_STATEMENTS:
            raise MalformedError(what, "consistency must be a list")
        cons = []
        for c in consistency:
            if not isinstance(c, dict):
                raise MalformedError(what, "each consistency proof must be an object")
            old, new, path = c.get("oldSize"), c.get("newSize"), c.get("proof")
            if not isinstance(old, int) or not isinstance(new, int) or not _uint(old) or not _uint(new):
                raise MalformedError(what, "a consistency proof needs integer oldSize and newSize")
            if not isinstance(path, list) or len(path) > 128:
                raise MalformedError(what, "a consistency proof needs oldSize, newSize and a list of hashes")
            hashes = tuple(b64std_decode(h, "consistency proof") for h in path)
            if any(len(h) != HASH_SIZE for h in hashes):
                raise MalformedError(what, "consistency proof hashes are 32 bytes")
            cons.append(Consistency(old, new, hashes))
        ancestors = v.get("ancestors", [])
        if not isinstance(ancestors, list) or len(ancestors) > MAX_ANCESTORS:
            raise MalformedError(what, f"ancestors must be a list of at most {MAX_ANCESTORS}")
        if nested and ancestors:
            raise MalformedError(what, "an ancestor bundle cannot carry ancestors of its own; list them flat")
        anc = tuple(cls.from_json(a, nested=True) for a in ancestors)
        renewals = v.get("renewals", [])
        if not isinstance(renewals, list) or len(renewals) > MAX_RENEWALS:
            raise MalformedError(what, f"renewals must be a list of at most {MAX_RENEWALS}")
        if renewals and not nested:
            raise MalformedError(what, "only an ancestor bundle carries renewals (its parent chain up to the head)")
        renewed = []
        for i, r in enumerate(renewals):
            if not isinstance(r, dict) or set(r) != {"token", "tlogProof"} or not isinstance(r["token"], str):
                raise MalformedError(what, f"renewals[{i}] must be an object with a token and a tlogProof")
            renewed.append(BundlePermit(jws.parse(r["token"]), _proof(r["tlogProof"], f"renewals[{i}].tlogProof")))
        return cls(request, token, permit_proof, tuple(parsed), tuple(cons), anc, tuple(renewed))


def _uint(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**63


def _proof(value: Any, where: str) -> TlogProof:
    if not isinstance(value, str):
        raise MalformedError("bundle", f"{where} must be a c2sp.org/tlog-proof@v1 text")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedError("bundle", f"{where} contains a lone UTF-16 surrogate") from exc
    return TlogProof.parse(raw)
