"""Split-view proofs from the witness's refused submissions.

A 422 refusal (:class:`fiat.witness.core.Refusal`) holds a log-signed checkpoint B and the
log-signed checkpoint A the witness had cosigned when it refused B. Whether that pair proves a
fork by itself (as :func:`fiat.verify.split_view.verify` checks it):

* same size, different roots — yes;
* B of size 0 whose root is not the empty tree's — yes (paired with A);
* A.size < B.size with a proof that fails — only if the proof determines B's history's root at
  A.size (:func:`fiat.tlog.merkle.old_root_from_consistency`: a non-power-of-2 A.size, a proof
  that leads to B's root) and that root is not A's. A power-of-2 A.size makes A's root an input
  of the proof, so a failing proof then shows nothing about B's history: the fork is real only if
  the log can be made to prove B's root at A.size, which the request alone does not carry;
* a non-empty proof with old size 0, or no cosigned checkpoint yet — a bad request, no fork.

No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fiat.errors import MalformedError
from fiat.tlog import merkle, note
from fiat.tlog.checkpoint import Checkpoint, SignedCheckpoint
from fiat.verify.split_view import SplitViewProof, build
from fiat.witness.core import Refusal


@dataclass(frozen=True)
class Export:
    """One refusal's outcome: a proof, or why the refusal alone cannot prove a fork."""

    refusal: Refusal
    proof: SplitViewProof | None
    why_not: str = ""


def _signed(data: bytes) -> SignedCheckpoint:
    return SignedCheckpoint(Checkpoint.parse_text(note.parse(data).text), data)


def export(refusal: Refusal, observed_by: str) -> Export:
    """The split-view proof ``refusal`` carries, if it carries one."""
    if refusal.against is None:
        return Export(refusal, None, "the witness had cosigned no checkpoint of this log to compare it with")
    try:
        a, b = _signed(refusal.against), _signed(refusal.checkpoint)
    except MalformedError as exc:
        return Export(refusal, None, f"a stored checkpoint does not parse: {exc}")
    at = datetime.fromtimestamp(refusal.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def made(old_root: bytes | None = None, proof: tuple[bytes, ...] = ()) -> Export:
        return Export(refusal, build(a, b, old_root=old_root, proof=proof, observed_by=observed_by, observed_at=at))

    if a.size == b.size:
        if a.root == b.root:
            return Export(
                refusal, None, "the two checkpoints have the same root: the request was refused for its proof"
            )
        return made()
    if b.size == 0:
        if b.root == merkle.EMPTY_ROOT:
            return Export(refusal, None, "the refused empty tree has the empty tree's root")
        return made()
    if a.size > b.size:
        return Export(refusal, None, f"the refused checkpoint ({b.size}) is older than the cosigned one ({a.size})")
    if a.size == 0:
        if a.root != merkle.EMPTY_ROOT:
            return made()
        return Export(refusal, None, "a non-empty proof from the empty tree is a bad request, not evidence of a fork")
    old_root = merkle.old_root_from_consistency(a.size, b.size, b.root, refusal.proof)
    if old_root is None:
        reason = (
            f"the old size {a.size} is a power of 2, so the proof takes the old root as input and cannot show "
            "the other history's root"
            if a.size & (a.size - 1) == 0
            else f"the submitted proof does not lead to the refused checkpoint's root at size {b.size}"
        )
        return Export(refusal, None, f"cannot be proven from this request alone: {reason}")
    if old_root == a.root:
        return Export(refusal, None, "the proof shows the two checkpoints consistent")
    return made(old_root=old_root, proof=refusal.proof)
