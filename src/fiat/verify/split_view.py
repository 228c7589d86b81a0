"""Split-view proofs: offline evidence that a log signed two inconsistent checkpoints.

A log that shows one history to some parties and another to others (a *split view*, or
fork) must sign two checkpoints that do not lie on one append-only history (RFC 9162 §2.1.4).
Neither C2SP nor the RFCs define a file for the evidence, so Fiat defines one
(media type ``application/vnd.fiat.split-view-proof.v1+json``, docs/formats.md,
"Split-view proofs")::

    {
      "mediaType": "application/vnd.fiat.split-view-proof.v1+json",
      "origin": "<the log's origin>",
      "checkpoints": ["<signed note A>", "<signed note B>"],   # A.size <= B.size
      "consistency": {                                       # absent when A.size == B.size
        "oldRoot": "<base64: B's history's root at A.size>",
        "proof": ["<base64 hash>", ...]                       # RFC 9162 §2.1.4 from A.size to B.size
      },
      "observedBy": "<who found it: a witness name or a runtime>",   # information only
      "observedAt": "<RFC 3339 time>"                                   # information only
    }

Verification, one named step each (a failure raises :class:`VerificationError` naming it):

1. ``split-view-format``      the document is well formed (strict JSON, known media type, two notes).
2. ``split-view-signatures``  both checkpoints are signed by a log key the trust root names for the
                              origin (C2SP tlog-checkpoint; unknown signatures ignored).
3. ``split-view-inconsistency`` the two cannot both be honest:
                              * equal sizes: the roots differ (two roots for one tree size);
                              * A.size == 0: A's root is not the empty tree's (RFC 6962 §2.1);
                              * otherwise: the consistency proof verifies from ``oldRoot`` at A.size to
                                B's root at B.size (RFC 9162 §2.1.4.2; so ``oldRoot`` is B's history's
                                root at A.size: a second preimage of SHA-256 aside, a tree has one root
                                for each prefix), and ``oldRoot`` differs from A's root. For an A.size
                                that is a power of 2 the proof does not contain that root (step 2 of
                                §2.1.4.2 prepends it), hence ``oldRoot`` is always carried.
                              Consistency evidence where the case needs none (equal sizes, an empty A)
                              is refused: one document, one reading.

The unsigned ``observedBy`` and ``observedAt`` change nothing the proof shows. No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fiat.errors import MalformedError, VerificationError
from fiat.formats.encoding import loads_strict
from fiat.tlog import merkle, note
from fiat.tlog.checkpoint import SignedCheckpoint, open_with_any

MEDIA_TYPE = "application/vnd.fiat.split-view-proof.v1+json"
MAX_SIZE = 1 << 20
STEPS = ("split-view-format", "split-view-signatures", "split-view-inconsistency")


@dataclass(frozen=True)
class SplitViewProof:
    origin: str
    first: bytes  # signed note A (the smaller or equal tree)
    second: bytes  # signed note B
    old_root: bytes | None = None  # B's history's root at A's size (None: equal sizes or A empty)
    proof: tuple[bytes, ...] = ()
    observed_by: str = ""
    observed_at: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": MEDIA_TYPE,
            "origin": self.origin,
            "checkpoints": [self.first.decode("utf-8"), self.second.decode("utf-8")],
        }
        if self.old_root is not None:
            out["consistency"] = {"oldRoot": note.b64(self.old_root), "proof": [note.b64(h) for h in self.proof]}
        if self.observed_by:
            out["observedBy"] = self.observed_by
        if self.observed_at:
            out["observedAt"] = self.observed_at
        return out

    def encode(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, data: bytes) -> SplitViewProof:
        """Step ``split-view-format``: strict JSON of the shape above, else :class:`MalformedError`."""
        what = "split-view proof"
        v = loads_strict(data, what, max_size=MAX_SIZE)
        if not isinstance(v, dict) or v.get("mediaType") != MEDIA_TYPE:
            raise MalformedError(what, f"mediaType must be {MEDIA_TYPE}")
        unknown = set(v) - {"mediaType", "origin", "checkpoints", "consistency", "observedBy", "observedAt"}
        if unknown:
            raise MalformedError(what, f"unknown member {sorted(unknown)[0]!r}")
        origin, cps = v.get("origin"), v.get("checkpoints")
        if not isinstance(origin, str) or not origin:
            raise MalformedError(what, "origin must be the log's origin")
        if not isinstance(cps, list) or len(cps) != 2 or not all(isinstance(c, str) for c in cps):
            raise MalformedError(what, "checkpoints must be a list of two signed notes")
        old_root: bytes | None = None
        proof: tuple[bytes, ...] = ()
        cons = v.get("consistency")
        if cons is not None:
            if not isinstance(cons, dict) or set(cons) != {"oldRoot", "proof"}:
                raise MalformedError(what, "consistency must hold exactly oldRoot and proof")
            if not isinstance(cons["oldRoot"], str) or not isinstance(cons["proof"], list):
                raise MalformedError(what, "consistency.oldRoot is base64 and consistency.proof a list")
            old_root = note.b64decode_strict(cons["oldRoot"], what)
            if len(cons["proof"]) > 64 or not all(isinstance(h, str) for h in cons["proof"]):
                raise MalformedError(what, "consistency.proof must be at most 64 base64 hashes")
            proof = tuple(note.b64decode_strict(h, what) for h in cons["proof"])
            if len(old_root) != merkle.HASH_SIZE or any(len(h) != merkle.HASH_SIZE for h in proof):
                raise MalformedError(what, f"hashes must be {merkle.HASH_SIZE} bytes")
        by, at = v.get("observedBy", ""), v.get("observedAt", "")
        if not isinstance(by, str) or not isinstance(at, str):
            raise MalformedError(what, "observedBy and observedAt are strings")
        try:  # JSON escapes may spell lone surrogates, which no UTF-8 note or name holds
            first, second = cps[0].encode("utf-8"), cps[1].encode("utf-8")
            origin.encode("utf-8"), by.encode("utf-8"), at.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedError(what, "a string holds a lone UTF-16 surrogate (not Unicode text)") from exc
        return cls(origin, first, second, old_root, proof, by, at)


@dataclass(frozen=True)
class ProvenSplitView:
    """What a verified split-view proof establishes."""

    origin: str
    first: SignedCheckpoint
    second: SignedCheckpoint
    summary: str


def build(
    first: SignedCheckpoint,
    second: SignedCheckpoint,
    *,
    old_root: bytes | None = None,
    proof: Sequence[bytes] = (),
    observed_by: str = "",
    observed_at: str = "",
) -> SplitViewProof:
    """A proof from two checkpoints (either order) and, for different sizes, the other history's root at
    the smaller size with the consistency proof from it to the larger checkpoint (the caller computes
    both from the larger tree's tiles, or :func:`fiat.tlog.merkle.old_root_from_consistency`)."""
    a, b = (first, second) if first.size <= second.size else (second, first)
    if a.size != b.size and a.size != 0 and old_root is None:
        raise ValueError("checkpoints of different sizes need the larger history's root at the smaller size")
    return SplitViewProof(
        a.origin,
        a.note_bytes,
        b.note_bytes,
        old_root if a.size not in (0, b.size) else None,
        tuple(proof) if a.size not in (0, b.size) else (),
        observed_by,
        observed_at,
    )


def verify(
    proof: SplitViewProof, log_keys: Sequence[note.Verifier], max_sizes: Sequence[int | None] | None = None
) -> ProvenSplitView:
    """Steps 2 and 3 above against the trust root's log keys for ``proof.origin``."""
    step = "split-view-signatures"
    if not log_keys:
        raise VerificationError(step, "the trust root has no log key")
    if any(k.name != proof.origin for k in log_keys):
        raise VerificationError(step, f"the proof is about {proof.origin!r}, not the trust root's log")
    opened = []
    for label, data in (("the first", proof.first), ("the second", proof.second)):
        try:
            opened.append(open_with_any(data, log_keys, max_sizes))
        except (MalformedError, VerificationError) as exc:
            raise VerificationError(step, f"{label} checkpoint: {exc}") from exc
    a, b = opened
    step = "split-view-inconsistency"
    if a.size > b.size:
        raise VerificationError(step, "the first checkpoint must be the smaller tree")
    if a.size in (0, b.size) and (proof.old_root is not None or proof.proof):
        # Nothing to prove from: the document carries exactly the evidence its case needs.
        raise VerificationError(
            step, "consistency evidence is only for checkpoints of different sizes, the smaller one not empty"
        )
    if a.size == b.size:
        if a.root == b.root:
            raise VerificationError(step, f"both checkpoints have the same root for size {a.size}: no split view")
        return ProvenSplitView(proof.origin, a, b, f"two roots signed for tree size {a.size}")
    if a.size == 0:
        if a.root == merkle.EMPTY_ROOT:
            raise VerificationError(step, "the empty tree is consistent with every tree: no split view")
        return ProvenSplitView(proof.origin, a, b, "a signed empty tree whose root is not the empty tree's")
    if proof.old_root is None:
        raise VerificationError(step, "checkpoints of different sizes need consistency evidence (oldRoot, proof)")
    try:
        merkle.verify_consistency(a.size, b.size, proof.old_root, b.root, proof.proof)
    except VerificationError as exc:
        raise VerificationError(
            step, f"the consistency proof from size {a.size} to {b.size} does not verify: {exc.reason}"
        ) from exc
    if proof.old_root == a.root:
        raise VerificationError(step, f"checkpoint {b.size} extends checkpoint {a.size}: the two are consistent")
    return ProvenSplitView(
        proof.origin,
        a,
        b,
        f"checkpoint {b.size}'s history has another root at size {a.size} than the signed checkpoint {a.size}",
    )
