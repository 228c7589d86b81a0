"""The witness: C2SP tlog-witness ``add-checkpoint`` as a state machine over a narrow store.

:meth:`Witness.add_checkpoint` takes a request body and returns the status, body and media
type the spec prescribes. It does no I/O: the logs it trusts come from a callable, the time
from a clock, and its state from a :class:`WitnessStore` (``fiat.persist.sqlite.witness``
is the durable one). The checks run in the order of tlog-witness §add-checkpoint
(https://c2sp.org/tlog-witness, the text of July 2026), each one the sentence it cites:

1. **400** — "The request body MUST be a sequence of an old size line, zero or more
   consistency proof lines, and an empty line, followed by a checkpoint" (no leading zeroes,
   at most 63 proof lines, base64 hashes); the checkpoint must be a signed note (C2SP
   signed-note) whose text is a checkpoint (C2SP tlog-checkpoint). Anything else is
   malformed: ``400 Bad Request``.
2. **404** — "If the checkpoint origin is unknown, the witness MUST respond with a '404 Not
   Found' HTTP status code."
3. **403** — "The witness MUST verify the checkpoint signature against the public key(s) it
   trusts for the checkpoint origin, and it MUST ignore signatures from unknown keys. [...]
   '403 Forbidden' [...] if either no signature from a trusted key for the origin is present,
   or a signature line's key name and ID match a trusted key but the signature itself fails
   to verify."
4. **400** — "The old size MUST be equal to or lower than the checkpoint size. Otherwise, the
   witness MUST respond with a '400 Bad Request' HTTP status code."
5. **409** — "The witness MUST check that the old size matches the size of the latest
   checkpoint it cosigned for the checkpoint's origin (or zero if it never cosigned a
   checkpoint for that origin). If it doesn't match, [...] '409 Conflict' [...]. The response
   body MUST consist of the tree size of the latest cosigned checkpoint in decimal, followed
   by a newline. The response MUST have a Content-Type of text/x.tlog.size."
6. **422** — "A checkpoint of size zero MUST have the root hash of the empty tree [...].
   Otherwise, the witness MUST respond with a '422 Unprocessable Entity'."
7. **422** — "If the old size is zero, the consistency proof MUST be empty [...]. If the proof
   is not empty when the old size is zero [...] '422 Unprocessable Entity'."
8. **422** — "If the old size matches the checkpoint size, the witness MUST check that the
   root hashes are also identical. If they don't match, [...] '422 Unprocessable Entity'."
9. **422** — "the consistency proof lines MUST encode a Merkle Consistency Proof from the old
   size to the checkpoint size according to RFC 6962, Section 2.1.2 [...] if a Merkle
   Consistency Proof doesn't verify, [...] '422 Unprocessable Entity'." (Verified from the
   root of the latest cosigned checkpoint, whose size step 5 made the old size.)
10. **record** — "If the origin is known, and the signature is valid, the witness MAY log the
    request even if the checkpoint fails one of the consistency checks above (but MUST NOT
    cosign the checkpoint), as it might be proof of log misbehavior." A 422 is recorded
    (:class:`Refusal`, with the cosigned checkpoint it was checked against) so that ``fiat
    witness split-views`` can turn it into a split-view proof — but the request is
    unauthenticated and its proof lines are the client's, so what is kept depends on what the
    refusal proves (:func:`fiat.witness.split_views.export` decides, the same rules the export
    applies): one that proves a fork by itself (same size and another root; a log-signed empty
    tree with another root; a proof that determines another root at the cosigned size) is always
    kept, once per refused checkpoint (origin, size, root) — nobody can make one without the log
    signing a fork; one that proves nothing (any other failing proof, including every proof from
    a power-of-2 size) is kept only among the first ``MAX_UNPROVEN_REFUSALS_PER_ORIGIN`` (100,
    ``fiat.persist.sqlite.witness``) of its log and otherwise only counted, so a flood of junk
    can never crowd out evidence; and a request whose checkpoint is the cosigned one (same size
    and root, whatever its proof) is not recorded at all — it cannot be evidence.
11. **200** — "If all the checks above pass, the witness MUST update its record of the latest
    cosigned checkpoint and respond with a '200 Success' [...]. The response body MUST be a
    sequence of one or more note signature lines [...] cosignatures from the witness key(s) on
    the checkpoint. Witnesses SHOULD use ML-DSA-44 cosignatures. [...] start MUST be zero and
    end MUST be the checkpoint size. [...] the timestamp MUST NOT be zero." The body holds an
    Ed25519 cosignature (type 0x04) and, with an ML-DSA-44 key, an ML-DSA-44 one (type 0x06).
    The timestamp is the clock's time (at least 1). Neither spec asks for monotonic timestamps,
    and carrying a stored one forward would let one clock glitch pin every later cosignature in
    the future (where guards reject them); a stored timestamp ahead of the clock is warned about.

**Atomicity** — "The witness MUST persist the new checkpoint before responding. Note that
checking the old size against the latest checkpoint and persisting the new checkpoint must be
performed atomically, otherwise [...] rolling back K leaves". Steps 5-9 decide against a
snapshot of the latest cosigned checkpoint; step 11 stores the new one with
:meth:`WitnessStore.compare_and_set`, which replaces the snapshot only if it is still the
stored one (one transaction). If another request got there first the whole decision is made
again against the new state (usually a 409 then); cosignatures made for a lost race are
discarded, never returned. So the stored size never goes backwards, and the witness never
returns cosignatures on two checkpoints that are not consistent.

The monitoring API (tlog-witness §Monitor Retrieval Mechanism) serves the stored checkpoint:
"it MUST include the cosignature(s) from the witness's key(s) that were returned from
add-checkpoint and the cosignature from the log key(s) that the witness verified".
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

from fiat.errors import MalformedError, NoteVerificationError, ProofError
from fiat.tlog import cosignature, merkle, note, witness
from fiat.tlog.checkpoint import Checkpoint

TEXT = "text/plain; charset=utf-8"
#: How many times a decision is made again after losing a compare-and-set race.
MAX_RACES = 32
log = logging.getLogger("fiat.witness")


@dataclass(frozen=True)
class Cosigned:
    """The latest checkpoint the witness cosigned for a log, as it serves it: the checkpoint's
    text, the log signature(s) it verified and its own cosignature(s)."""

    origin: str
    size: int
    root: bytes
    note: bytes
    timestamp: int  # of its cosignatures (POSIX seconds)


@dataclass(frozen=True)
class Refusal:
    """A log-signed submission the witness refused with 422 (tlog-witness: "it might be proof of
    log misbehavior"), with the cosigned checkpoint it was checked against (None: none yet)."""

    origin: str
    checkpoint: bytes  # the submitted signed note, verbatim
    old_size: int
    proof: tuple[bytes, ...]
    against: bytes | None
    reason: str
    at: float  # POSIX seconds
    #: Whether the refusal proves a fork by itself (:func:`fiat.witness.split_views.export` makes a proof).
    proves: bool = False

    @property
    def digest(self) -> str:
        """What a refusal is kept once per: for one that proves a fork, the refused checkpoint's origin,
        size and root (one proof per forked checkpoint is enough); for any other, the refused
        checkpoint and the request's proof (one record per distinct request)."""
        if self.proves:
            cp = Checkpoint.parse_text(note.parse(self.checkpoint).text)
            return hashlib.sha256(f"fork\n{cp.origin}\n{cp.size}\n".encode() + cp.root).hexdigest()
        h = hashlib.sha256(self.checkpoint)
        h.update(f"\nold {self.old_size}\n".encode())
        for p in self.proof:
            h.update(p)
        return h.hexdigest()


@dataclass(frozen=True)
class RefusalCounts:
    """One log's refusals: kept ones that prove a fork, kept ones that do not, and ones that prove
    nothing and were only counted (over the store's cap)."""

    proving: int = 0
    unproven: int = 0
    dropped: int = 0

    @property
    def kept(self) -> int:
        return self.proving + self.unproven


class WitnessStore(Protocol):
    """What the witness needs of its storage."""

    def latest(self, origin: str) -> Cosigned | None:
        """The latest cosigned checkpoint of ``origin`` (None: never cosigned one)."""
        ...

    def compare_and_set(self, expected: Cosigned | None, new: Cosigned) -> Cosigned | None:
        """Atomically: if the stored checkpoint of ``new.origin`` is still ``expected`` (same size
        and root; None: none stored), store ``new`` durably and return None; otherwise store
        nothing and return what is stored now."""
        ...

    def record_refusal(self, refusal: Refusal) -> None:
        """Keep a refused submission once per :attr:`Refusal.digest`: always if it
        :attr:`~Refusal.proves` a fork, else only while few of the log's are kept (else count it)."""
        ...

    def all_latest(self) -> list[Cosigned]: ...

    def refusals(self, origin: str | None = None) -> list[Refusal]: ...

    def refusal_counts(self) -> dict[str, RefusalCounts]:
        """Origin → how many refusals are kept (proving, not) and dropped."""
        ...


@dataclass(frozen=True)
class Outcome:
    """An answer to an add-checkpoint request: HTTP status, body, media type."""

    status: int
    body: bytes
    content_type: str = TEXT
    origin: str | None = None

    @classmethod
    def error(cls, status: int, message: str, origin: str | None = None) -> Outcome:
        return cls(status, (message.rstrip("\n") + "\n").encode("utf-8"), TEXT, origin)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Witness:
    """One witness: its name and keys, the logs it trusts (``logs()``: origin → log keys, read on
    every request so the configuration can change under a running server), its store and clock."""

    name: str
    ed25519: Ed25519PrivateKey
    mldsa: MLDSA44PrivateKey | None
    logs: Callable[[], Mapping[str, Sequence[note.Verifier]]]
    store: WitnessStore
    clock: Callable[[], float] = time.time
    warn: Callable[[str], None] = log.warning
    _ed_public: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        note.check_key_name(self.name)
        self._ed_public = self.ed25519.public_key().public_bytes_raw()

    # -- identity ---------------------------------------------------------------------------

    @property
    def vkey(self) -> str:
        """The Ed25519 cosigner vkey (type 0x04)."""
        return cosignature.vkey(self.name, note.ALG_COSIGNATURE_V1, self._ed_public)

    @property
    def mldsa_vkey(self) -> str | None:
        """The ML-DSA-44 cosigner vkey (type 0x06), if the witness has that key."""
        if self.mldsa is None:
            return None
        return cosignature.vkey(
            self.name, cosignature.ALG_COSIGNATURE_MLDSA44, self.mldsa.public_key().public_bytes_raw()
        )

    # -- add-checkpoint ---------------------------------------------------------------------

    def add_checkpoint(self, body: bytes) -> Outcome:
        """Answer one ``POST <submission prefix>/add-checkpoint`` (the steps of the module docstring)."""
        # Step 1: the request and its checkpoint are well formed.
        try:
            request = witness.AddCheckpointRequest.parse(body)
            parsed = note.parse(request.checkpoint)
            cp = Checkpoint.parse_text(parsed.text)
        except MalformedError as exc:
            return Outcome.error(400, f"{exc}")
        # Step 2: the origin is one the witness knows.
        keys = self.logs().get(cp.origin)
        if not keys:
            return Outcome.error(404, f"unknown log: this witness does not cosign the origin {cp.origin!r}", cp.origin)
        # Step 3: a signature of a trusted key verifies, and no trusted key's signature fails.
        try:
            _, verified = note.open_note(request.checkpoint, keys)
        except NoteVerificationError as exc:
            return Outcome.error(403, f"the checkpoint is not signed by the log {cp.origin}: {exc.reason}", cp.origin)
        # Step 4: the old size is at most the checkpoint's size.
        if request.old_size > cp.size:
            return Outcome.error(
                400, f"the old size {request.old_size} is larger than the checkpoint's size {cp.size}", cp.origin
            )
        for _ in range(MAX_RACES):
            latest = self.store.latest(cp.origin)
            try:
                self._check(request, cp, latest)
            except _Refused as refused:
                if refused.status == 409:
                    size = 0 if latest is None else latest.size
                    return Outcome(409, witness.encode_size(size), witness.SIZE_MEDIA_TYPE, cp.origin)
                self._record(request, cp, latest, refused.message)
                return Outcome.error(refused.status, refused.message, cp.origin)
            # Step 11: cosign, then store atomically against the snapshot the checks used.
            timestamp = max(int(self.clock()), 1)  # "the timestamp MUST NOT be zero"; not monotonic
            if latest is not None and latest.timestamp > timestamp:
                self.warn(
                    f"the last cosignature of {cp.origin} is timestamped {latest.timestamp}, "
                    f"{latest.timestamp - timestamp} s ahead of this machine's clock ({timestamp}): "
                    "the clock was ahead then or is behind now; cosigning at the clock's time (check NTP)"
                )
            cosigs = self._cosign(parsed.text, cp, timestamp)
            served = note.Note(parsed.text, (*verified, *cosigs)).encode()
            if self.store.compare_and_set(latest, Cosigned(cp.origin, cp.size, cp.root, served, timestamp)) is None:
                return Outcome(200, witness.encode_signatures(cosigs), TEXT, cp.origin)
            # Another request changed the state meanwhile: decide again against the new state.
        return Outcome.error(503, "too many concurrent submissions for this log; retry", cp.origin)

    def _record(
        self, request: witness.AddCheckpointRequest, cp: Checkpoint, latest: Cosigned | None, reason: str
    ) -> None:
        """Step 10: keep a 422 (module docstring: what is kept, and why the cosigned checkpoint is not)."""
        if latest is not None and (cp.size, cp.root) == (latest.size, latest.root):
            return  # the checkpoint it cosigned, with a proof that fails: no evidence of anything
        from fiat.witness.split_views import export  # split_views reads Refusal from this module

        refusal = Refusal(
            cp.origin,
            request.checkpoint,
            request.old_size,
            request.proof,
            None if latest is None else latest.note,
            reason,
            self.clock(),
        )
        proves = export(refusal, self.name).proof is not None
        self.store.record_refusal(replace(refusal, proves=proves) if proves else refusal)

    def _check(self, request: witness.AddCheckpointRequest, cp: Checkpoint, latest: Cosigned | None) -> None:
        """Steps 5 to 9 against a snapshot of the latest cosigned checkpoint."""
        latest_size = 0 if latest is None else latest.size
        # Step 5: the old size is the latest cosigned size.
        if request.old_size != latest_size:
            raise _Refused(409, f"the latest checkpoint this witness cosigned has size {latest_size}")
        # Step 6: an empty tree has the empty tree's root.
        if cp.size == 0 and cp.root != merkle.EMPTY_ROOT:
            raise _Refused(422, "a checkpoint of size 0 must have the root of the empty tree (SHA-256 of '')")
        # Step 7: no proof from the empty tree.
        if request.old_size == 0:
            if request.proof:
                raise _Refused(422, "the old size is 0, so the consistency proof must be empty")
            return
        assert latest is not None
        # Step 8: the same size has the same root.
        if request.old_size == cp.size and not request.proof:
            if cp.root != latest.root:
                raise _Refused(
                    422,
                    f"the checkpoint has size {cp.size}, the size this witness cosigned, but another root hash",
                )
            return
        # Step 9: the proof leads from the cosigned root to the new one.
        try:
            merkle.verify_consistency(request.old_size, cp.size, latest.root, cp.root, request.proof)
        except ProofError as exc:
            raise _Refused(
                422,
                f"the consistency proof from size {request.old_size} to {cp.size} does not verify: {exc.reason}",
            ) from None

    def _cosign(self, text: str, cp: Checkpoint, timestamp: int) -> list[note.Signature]:
        sigs = [cosignature.ed25519_signature(text, self.name, self.ed25519, timestamp)]
        if self.mldsa is not None:
            sigs.append(cosignature.mldsa_signature(self.name, self.mldsa, timestamp, cp.origin, cp.size, cp.root))
        return sigs

    # -- monitoring -------------------------------------------------------------------------

    def checkpoint_by_hash(self, origin_hash: str) -> Cosigned | None:
        """``GET <monitoring prefix>/<origin hash>/checkpoint``: the latest cosigned checkpoint."""
        for origin in self.logs():
            if witness.origin_hash(origin) == origin_hash:
                return self.store.latest(origin)
        for cosigned in self.store.all_latest():  # a log since removed from the configuration
            if witness.origin_hash(cosigned.origin) == origin_hash:
                return cosigned
        return None

    def summary(self) -> dict[str, object]:
        """What ``GET /`` and ``fiat witness status`` show (camelCase keys)."""
        stored = {c.origin: c for c in self.store.all_latest()}
        refused = self.store.refusal_counts()
        configured = self.logs()
        logs = []
        for origin in sorted(set(configured) | set(stored)):
            c = stored.get(origin)
            logs.append(
                {
                    "origin": origin,
                    "originHash": witness.origin_hash(origin),
                    "configured": origin in configured,
                    "vkeys": [v.encode() for v in configured.get(origin, ())],
                    "size": None if c is None else c.size,
                    "root": None if c is None else note.b64(c.root),
                    "cosignedAt": None if c is None else c.timestamp,
                    "checkpointPath": witness.checkpoint_path(origin),
                    "refused": refused.get(origin, RefusalCounts()).kept,
                    "refusedProving": refused.get(origin, RefusalCounts()).proving,
                    "refusedDropped": refused.get(origin, RefusalCounts()).dropped,
                }
            )
        return {
            "name": self.name,
            "vkey": self.vkey,
            "mldsaVkey": self.mldsa_vkey,
            "submissionPath": witness.ADD_CHECKPOINT_PATH,
            "logs": logs,
        }
