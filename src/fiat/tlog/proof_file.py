"""C2SP tlog-proof (https://c2sp.org/tlog-proof): offline-verifiable proof of inclusion.

::

    c2sp.org/tlog-proof@v1
    [extra <base64>]
    index <N>
    <base64 hash>        (zero or more: the RFC 6962 inclusion path, leaf sibling first)
    <empty line>
    <checkpoint, verbatim signed note>

Verification follows tlog-proof §Verifying a tlog proof, one named step each:

1. ``leaf-hash`` — compute the RFC 6962 leaf hash of the entry bytes.
2. ``checkpoint-signature`` / ``checkpoint-origin`` — the checkpoint is signed
   by the log key configured for its origin line.
3. ``cosignatures`` — with a witness policy (the witnesses' Ed25519 cosigner keys and a quorum k),
   at least k of those witnesses validly cosigned the checkpoint (C2SP tlog-cosignature; lines of
   other keys are ignored). Skipped when no policy is given.
4. ``inclusion-proof`` — the path binds the leaf hash to the checkpoint's root.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fiat.errors import MalformedError, ProofError
from fiat.tlog import cosignature, merkle, note
from fiat.tlog.checkpoint import SignedCheckpoint, open_checkpoint

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_SIZE = 1 << 20
MAX_PATH = 64  # an RFC 6962 path in a tree of at most 2**63 leaves is at most 63 hashes


@dataclass(frozen=True)
class TlogProof:
    index: int
    path: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def encode(self) -> bytes:
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {note.b64(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(note.b64(h) for h in self.path)
        return ("\n".join(lines) + "\n\n").encode("ascii") + self.checkpoint

    @classmethod
    def parse(cls, data: bytes) -> TlogProof:
        what = "tlog-proof"
        if len(data) > MAX_PROOF_SIZE:
            raise MalformedError(what, f"larger than {MAX_PROOF_SIZE} bytes")
        head, sep, checkpoint = data.partition(b"\n\n")
        if not sep:
            raise MalformedError(what, "no empty line before the checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError as exc:
            raise MalformedError(what, "the proof header is not ASCII") from exc
        if lines[0] != HEADER:
            raise MalformedError(what, f"the first line must be {HEADER!r}, not {lines[0][:40]!r}")
        pos = 1
        extra = None
        if pos < len(lines) and lines[pos].startswith("extra "):
            extra = note.b64decode_strict(lines[pos][len("extra ") :], what)
            pos += 1
        if pos >= len(lines) or not lines[pos].startswith("index "):
            raise MalformedError(what, "missing the 'index <N>' line")
        idx_s = lines[pos][len("index ") :]
        if not idx_s.isascii() or not idx_s.isdigit() or (len(idx_s) > 1 and idx_s[0] == "0") or len(idx_s) > 19:
            raise MalformedError(what, f"index {idx_s[:30]!r} is not a decimal with no leading zeroes")
        pos += 1
        path_lines = lines[pos:]
        if len(path_lines) > MAX_PATH:
            raise MalformedError(what, f"more than {MAX_PATH} proof hashes")
        path = []
        for line in path_lines:
            h = note.b64decode_strict(line, what)
            if len(h) != merkle.HASH_SIZE:
                raise MalformedError(what, f"a proof hash is {len(h)} bytes, expected {merkle.HASH_SIZE}")
            path.append(h)
        if not checkpoint:
            raise MalformedError(what, "the checkpoint is missing")
        return cls(int(idx_s), tuple(path), checkpoint, extra)


@dataclass(frozen=True)
class ProofVerification:
    """What a verified proof established."""

    checkpoint: SignedCheckpoint
    index: int
    leaf_hash: bytes
    steps: tuple[str, ...]
    #: The witnesses (of those given) whose cosignature on the checkpoint verified.
    cosigners: tuple[str, ...] = ()


def verify_proof(
    proof: TlogProof,
    entry: bytes,
    log_key: note.Verifier,
    witnesses: Sequence[tuple[str, bytes]] = (),
    quorum: int = 0,
) -> ProofVerification:
    """Verify a tlog-proof for ``entry`` offline. Raises :class:`VerificationError` naming the step.

    ``witnesses`` are (name, Ed25519 public key) of trusted cosigners, ``quorum`` how many of them
    must have cosigned the checkpoint (step 3)."""
    if quorum > len(witnesses):
        raise ValueError(f"a quorum of {quorum} needs at least that many witness keys")
    steps: list[str] = []
    # Step 1: leaf hash (RFC 6962 §2.1: SHA-256(0x00 || entry)).
    leaf = merkle.leaf_hash(entry)
    steps.append("leaf-hash")
    # Step 2: the checkpoint is signed by the log key for its origin.
    # A checkpoint that does not parse is malformed input (MalformedError), not a failed rule.
    cp = open_checkpoint(proof.checkpoint, log_key)
    steps.append("checkpoint-signature")
    # Step 3: the witness policy (tlog-proof §Verifying: "verify the cosignatures ... per policy").
    cosigners: tuple[str, ...] = ()
    if witnesses:
        cosigners = tuple(name for name, ts in cosignature.verified_cosigners(note.parse(proof.checkpoint), witnesses))
        if len(cosigners) < quorum:
            raise ProofError(
                "cosignatures",
                f"the checkpoint carries {len(cosigners)} valid cosignature(s) of the {len(witnesses)} "
                f"witnesses given; {quorum} required",
            )
        steps.append("cosignatures")
    # Step 4: the inclusion proof binds the leaf to the checkpoint's root.
    check_inclusion(proof, leaf, cp)
    steps.append("inclusion-proof")
    return ProofVerification(cp, proof.index, leaf, tuple(steps), cosigners)


def check_inclusion(proof: TlogProof, leaf: bytes, cp: SignedCheckpoint) -> None:
    """tlog-proof verification step 4 against an already verified checkpoint."""
    if proof.index >= cp.size:
        raise ProofError(
            "inclusion-proof", f"index {proof.index} is not inside the checkpoint's tree of size {cp.size}"
        )
    merkle.verify_inclusion(proof.index, cp.size, leaf, proof.path, cp.root)
