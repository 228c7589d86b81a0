"""The log's side of C2SP tlog-witness: submit checkpoints to witnesses, collect cosignatures.

A :class:`WitnessCollector` runs one background thread per witness (keyring keys of role
``witness`` that carry a ``url``, their tlog-witness submission prefix). Each thread keeps one
HTTP keep-alive connection to its witness (tlog-witness §HTTP Interface: "Clients SHOULD use …
keep-alive") and submits the log's latest checkpoint

* as soon as the log integrates a batch (:attr:`fiat.prove.log.TransparencyLog.integration_hooks`),
* and every ``log.witness_interval_ms`` when nothing new came, so the cosignatures' timestamps
  stay fresh (guards with ``runtime.require_witnessed`` bound their age).

A submission (tlog-witness §add-checkpoint) names the size the witness is believed to hold (0 at
first) with a consistency proof from it, read from the log's tiles. A ``409 Conflict`` answers the
witness's real size (``text/x.tlog.size``); the submission is then repeated from that size with a
new proof. Transport errors and 5xx answers are retried with a short backoff; a submission and its
retries never take longer than ``log.witness_timeout_ms``. Other answers (400, 403, 404, 422) are
not retried: they are recorded as the witness's last error.

Every cosignature line of a 200 answer is verified (tlog-cosignature §Ed25519, type 0x04) against
the key of the witness that answered; lines it cannot verify, or of keys it does not know, are
ignored (tlog-witness: "The client MUST ignore any cosignatures from unknown keys"), and a
timestamp of 0 does not count (tlog-witness: "the timestamp MUST NOT be zero"). The valid lines
are moved onto the log's own note; once ``max(log.witness_quorum, 1)`` witnesses have cosigned one
checkpoint, the note with all their lines is persisted (:meth:`TransparencyLog.record_witnessed`:
never a smaller tree than the one stored) and becomes :meth:`latest`.

Nothing here is on the append path: the sequencer only sets an event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from fiat.errors import FiatError
from fiat.prove.log import TransparencyLog
from fiat.tlog import cosignature, note, witness
from fiat.tlog.checkpoint import SignedCheckpoint

log = logging.getLogger("fiat.witnessing")

#: Pause between retries of a failed submission (doubling up to the bound), within the timeout.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 0.5
#: Most 409 round trips one submission follows (the witness moved on meanwhile: each gets a new proof).
MAX_CONFLICTS = 3
#: How often the same failure of one witness is logged again.
WARN_EVERY_S = 60.0
#: Most bytes of a witness's error answer kept in its status.
ERROR_SNIPPET = 200


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness the log submits to: its cosigner name and Ed25519 public key, and its URL prefix."""

    name: str
    public_key: bytes
    url: str

    @property
    def add_checkpoint_url(self) -> str:
        return self.url.rstrip("/") + witness.ADD_CHECKPOINT_PATH


@dataclass
class WitnessState:
    """What the log knows of one witness (shown by ``/v1/health`` and ``/metrics``)."""

    name: str
    url: str
    #: The size the witness is believed to have cosigned last (0 until it answers).
    known_size: int = 0
    #: The size of the last checkpoint it validly cosigned, and when (local clock), and its timestamp.
    cosigned_size: int | None = None
    last_success: float | None = None
    cosigned_at: int | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    submissions: int = 0
    failures: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "knownSize": self.known_size,
            "cosignedSize": self.cosigned_size,
            "lastSuccess": self.last_success,
            "cosignatureTime": self.cosigned_at,
            "lastError": self.last_error,
            "lastErrorAt": self.last_error_at,
            "submissions": self.submissions,
            "failures": self.failures,
        }


class SubmissionError(FiatError):
    """A submission to a witness failed (the message says how; it is the witness's ``last_error``)."""


@dataclass
class _Gathered:
    """Valid cosignatures gathered for one checkpoint, by witness name (the newest of each)."""

    cp: SignedCheckpoint
    lines: dict[str, note.Signature] = field(default_factory=dict)


class WitnessCollector:
    """Submits the log's checkpoints to its witnesses and keeps the newest quorum-cosigned one.

    ``quorum``: cosignatures a checkpoint needs before it is persisted (at least 1).
    ``on_witnessed(cp)`` is called (on a collector thread) whenever a larger witnessed checkpoint is
    stored (not for the same checkpoint stored again with fresher cosignatures).
    """

    def __init__(
        self,
        transparency_log: TransparencyLog,
        witnesses: Sequence[WitnessEndpoint],
        *,
        quorum: int = 0,
        timeout_s: float = 2.0,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        on_witnessed: Callable[[SignedCheckpoint], None] | None = None,
    ) -> None:
        if len({w.name for w in witnesses}) != len(witnesses):
            raise ValueError("two witnesses share a name: cosignatures are told apart by their key name")
        self.log = transparency_log
        self.witnesses = tuple(witnesses)
        self.quorum = max(quorum, 1)
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.clock = clock
        self.on_witnessed = on_witnessed
        self._lock = threading.Condition()
        self._states = {w.name: WitnessState(w.name, w.url) for w in witnesses}
        self._wakes = {w.name: threading.Event() for w in witnesses}
        self._gathered: dict[str, _Gathered] = {}  # by checkpoint note text
        self._latest = transparency_log.witnessed_checkpoint()
        self._quorum_time = None if self._latest is None else self._quorum_timestamp(self._latest)
        self._latest_names: set[str] = set()  # the witnesses whose cosignatures the stored note carries
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: dict[str, httpx.Client] = {}
        self._warned: dict[str, float] = {}

    # -- life ---------------------------------------------------------------------

    def start(self) -> None:
        """Start one submitter thread per witness and hook into the log's integrations."""
        if self._threads or not self.witnesses:
            return
        self.log.witnessing = True
        self.log.integration_hooks.append(self._integrated)
        for w in self.witnesses:
            client = httpx.Client(
                timeout=self.timeout_s,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "fiat-log-witnessing"},
                trust_env=False,
            )
            self._clients[w.name] = client
            t = threading.Thread(target=self._run, args=(w, client), name=f"fiat-witness-{w.name}", daemon=True)
            self._threads.append(t)
            t.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop submitting (in-flight submissions end within ``log.witness_timeout_ms``). Idempotent."""
        self._closed.set()
        if self._integrated in self.log.integration_hooks:
            self.log.integration_hooks.remove(self._integrated)
        for e in self._wakes.values():
            e.set()
        for t in self._threads:
            t.join(timeout)
        for c in self._clients.values():
            c.close()
        with self._lock:
            self._lock.notify_all()

    def _integrated(self, _latencies: list[float]) -> None:
        """The log's integration hook (on its sequencer thread): only wakes the submitters."""
        self.wake()

    def wake(self) -> None:
        """Submit the latest checkpoint to every witness now."""
        for e in self._wakes.values():
            e.set()

    # -- reads --------------------------------------------------------------------

    def latest(self) -> SignedCheckpoint | None:
        """The newest checkpoint with a quorum of valid cosignatures (its note carries them)."""
        with self._lock:
            return self._latest

    def quorum_time(self) -> int | None:
        """The quorum-th newest cosignature timestamp on :meth:`latest` (POSIX seconds): how fresh it is."""
        with self._lock:
            return self._quorum_time

    def _quorum_timestamp(self, cp: SignedCheckpoint) -> int | None:
        times = sorted(
            (ts for _, ts in cosigners(cp.note_bytes, [(w.name, w.public_key) for w in self.witnesses])), reverse=True
        )
        return times[self.quorum - 1] if len(times) >= self.quorum else None

    def statuses(self) -> list[WitnessState]:
        """A copy of every witness's state, in the keyring's order."""
        with self._lock:
            return [WitnessState(**vars(self._states[w.name])) for w in self.witnesses]

    def wait_covering(self, size: int, timeout: float) -> SignedCheckpoint | None:
        """The newest witnessed checkpoint of at least ``size`` entries, waiting up to ``timeout`` s
        for one; None when none came in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                latest = self._latest
                if latest is not None and latest.size >= size:
                    return latest
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed.is_set():
                    return None
                self.wake()
                self._lock.wait(remaining)

    # -- submitting ---------------------------------------------------------------

    def _run(self, w: WitnessEndpoint, client: httpx.Client) -> None:
        wake = self._wakes[w.name]
        last_sent: bytes | None = None
        last_time = 0.0
        while not self._closed.is_set():
            due = last_time + self.interval_s - time.monotonic()
            if due > 0 and not wake.wait(due):
                continue  # woke at the interval: loop once more to find it due
            wake.clear()
            if self._closed.is_set():
                return
            try:
                cp = self.log.checkpoint()
            except Exception as exc:  # the store is closing, or a read failed: try again later
                self._failed(w, f"cannot read the log's checkpoint: {exc}")
                last_time = time.monotonic()
                continue
            if cp.note_bytes == last_sent and time.monotonic() - last_time < self.interval_s:
                continue  # already submitted; resubmitted at the interval for a fresh timestamp
            last_sent, last_time = cp.note_bytes, time.monotonic()
            try:
                line = self.submit(w, client, cp)
            except SubmissionError as exc:
                self._failed(w, str(exc))
                continue
            except Exception as exc:  # a bug must not stop this witness's thread
                log.exception("submitting to witness %s failed", w.name)
                self._failed(w, f"internal error: {exc}")
                continue
            self._cosigned(w, cp, line)

    def submit(self, w: WitnessEndpoint, client: httpx.Client, cp: SignedCheckpoint) -> note.Signature:
        """One add-checkpoint submission of ``cp`` to ``w`` with its retries; its valid cosignature line."""
        deadline = time.monotonic() + self.timeout_s
        delay = RETRY_FIRST_S
        conflicts = 0
        while True:
            with self._lock:
                state = self._states[w.name]
                state.submissions += 1
                old = state.known_size
            if old > cp.size:
                raise SubmissionError(
                    f"the witness holds a checkpoint of size {old}, larger than the log's {cp.size}: "
                    "it has seen another history of this log, or the log lost entries (a split view?)"
                )
            proof = self.log.consistency_proof(old, cp.size) if 0 < old < cp.size else []
            body = witness.AddCheckpointRequest(old, tuple(proof), cp.note_bytes).encode()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SubmissionError(f"no answer within log.witness_timeout_ms ({self.timeout_s * 1000:.0f} ms)")
            retry: str
            try:
                r = client.post(w.add_checkpoint_url, content=body, timeout=remaining)
            except httpx.HTTPError as exc:
                retry = f"cannot reach {w.add_checkpoint_url}: {type(exc).__name__}: {exc}"
            else:
                if r.status_code == 200:
                    return self._verify(w, cp, r.content)
                if r.status_code == 409:
                    size = self._conflict_size(w, r)
                    with self._lock:
                        self._states[w.name].known_size = size
                    conflicts += 1
                    if conflicts > MAX_CONFLICTS:
                        raise SubmissionError(f"the witness answered 409 Conflict {conflicts} times in a row")
                    continue  # again at once, from the size the witness holds
                snippet = r.text[:ERROR_SNIPPET].strip()
                if r.status_code < 500:
                    raise SubmissionError(
                        f"the witness refused the checkpoint of size {cp.size}: {r.status_code} {snippet}"
                    )
                retry = f"the witness answered {r.status_code} {snippet}"
            if time.monotonic() + delay >= deadline:
                raise SubmissionError(retry)
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    @staticmethod
    def _conflict_size(w: WitnessEndpoint, r: httpx.Response) -> int:
        media = r.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != witness.SIZE_MEDIA_TYPE:
            raise SubmissionError(
                f"the witness answered 409 with {media or 'no content type'}, not {witness.SIZE_MEDIA_TYPE}"
            )
        try:
            return witness.parse_size(r.content)
        except FiatError as exc:
            raise SubmissionError(f"the witness's 409 body is not a tree size: {exc}") from exc

    def _verify(self, w: WitnessEndpoint, cp: SignedCheckpoint, body: bytes) -> note.Signature:
        """The line of ``body`` that is a valid cosignature of ``cp`` by ``w``; unknown lines are ignored."""
        try:
            lines = witness.parse_signatures(body)
        except FiatError as exc:
            raise SubmissionError(f"the witness's answer is not note signature lines: {exc}") from exc
        text = note.parse(cp.note_bytes).text
        kid = note.key_id(w.name, note.ALG_COSIGNATURE_V1, w.public_key)
        for line in lines:
            if line.name != w.name or line.key_id != kid:
                continue  # another key (an ML-DSA-44 cosignature, another witness): ignored
            found = cosignature.verified_cosigners(note.Note(text, (line,)), [(w.name, w.public_key)])
            if found and found[0][1] != 0:
                return line
        raise SubmissionError(
            f"the witness answered no valid cosignature by {w.name} (key ID {kid:08x}) on the checkpoint "
            f"of size {cp.size}; check its vkey in the keyring (`fiat keys list`)"
        )

    def _failed(self, w: WitnessEndpoint, message: str) -> None:
        with self._lock:
            state = self._states[w.name]
            # A dead witness fails every submission: say so when the error changes, then every 60 s.
            now = time.monotonic()
            if message != state.last_error or now - self._warned.get(w.name, -1e9) >= WARN_EVERY_S:
                self._warned[w.name] = now
                log.warning("witness %s: %s", w.name, message)
            state.failures += 1
            state.last_error, state.last_error_at = message, self.clock()

    def _cosigned(self, w: WitnessEndpoint, cp: SignedCheckpoint, line: note.Signature) -> None:
        text = note.parse(cp.note_bytes).text
        with self._lock:
            state = self._states[w.name]
            state.known_size = cp.size
            state.cosigned_size, state.last_success = cp.size, self.clock()
            state.cosigned_at = int.from_bytes(line.signature[:8], "big")
            gathered = self._gathered.setdefault(text, _Gathered(cp))
            gathered.lines[w.name] = line
            latest = self._latest
            floor = 0 if latest is None else latest.size
            for key in [k for k, g in self._gathered.items() if g.cp.size < floor]:
                del self._gathered[key]  # older than what is stored: never stored now
            if len(gathered.lines) < self.quorum or cp.size < floor:
                return
            order = [x.name for x in self.witnesses]
            cosigs = [gathered.lines[n] for n in order if n in gathered.lines]
            times = sorted((int.from_bytes(c.signature[:8], "big") for c in cosigs), reverse=True)
            quorum_time = times[self.quorum - 1]
            if (
                latest is not None
                and cp.size == latest.size
                and set(gathered.lines) <= self._latest_names
                and quorum_time <= (self._quorum_time or 0)
            ):
                # The stored checkpoint again, no new cosigner, no fresher quorum (timestamps are whole
                # seconds): nothing to store. Keeps the writes off the log's writer lock.
                return
            base = note.parse(cp.note_bytes)
            merged = note.Note(base.text, (*base.signatures, *cosigs)).encode()
            witnessed = SignedCheckpoint(cp.checkpoint, merged)
            try:
                stored = self.log.record_witnessed(witnessed)
            except Exception as exc:
                log.error("cannot store the witnessed checkpoint of size %d: %s", cp.size, exc)
                return
            if not stored:
                return
            grew = latest is None or witnessed.size > latest.size
            self._latest, self._quorum_time = witnessed, quorum_time
            self._latest_names = set(gathered.lines)
            self._lock.notify_all()
        if grew and self.on_witnessed is not None:
            try:
                self.on_witnessed(witnessed)
            except Exception as exc:
                log.warning("the witnessed-checkpoint callback failed: %s", exc)


def cosigners(cp_note: bytes, witnesses: Sequence[tuple[str, bytes]]) -> list[tuple[str, int]]:
    """The (name, timestamp) of each of ``witnesses`` whose cosignature on ``cp_note`` verifies."""
    try:
        parsed = note.parse(cp_note)
    except FiatError:
        return []
    return [(n, ts) for n, ts in cosignature.verified_cosigners(parsed, witnesses) if ts != 0]
