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
new proof. Transport errors and 5xx answers are retried with a short backoff. Other answers (400,
403, 404, 422) are not retried: they are recorded as the witness's last error.

A witness is not trusted to be well-behaved on the wire: a submission and its retries never take
longer than ``log.witness_timeout_ms`` *in total* (every connect, write and read of its connection
is bounded by the submission's deadline, not only each read: a witness dribbling its headers or
body a byte at a time is cut off at the deadline), and an answer is read as a stream, up to
:data:`MAX_COSIGNATURE_BODY` bytes for a 200 (a few note signature lines), :data:`MAX_SIZE_BODY` for
a 409 (a decimal and a newline) and :data:`ERROR_SNIPPET` of any other; a larger 200 or 409 answer
is refused (the witness's error) without reading it further. Answers must not be content-encoded.

Every cosignature line of a 200 answer is verified (tlog-cosignature §Ed25519, type 0x04) against
the key of the witness that answered; lines it cannot verify, or of keys it does not know, are
ignored (tlog-witness: "The client MUST ignore any cosignatures from unknown keys"), and a
timestamp of 0 does not count (tlog-witness: "the timestamp MUST NOT be zero"). Nor does one dated
more than :data:`CLOCK_SKEW_S` after the log's clock (the skew ``fiat verify`` allows): kept, a
far-future cosignature would look fresh forever. A witness named like the log's origin is never
submitted to: its cosignature line would share the log key's name (and, by a 32-bit key ID
collision, its key ID), so signed-note verifiers would read it as the log's signature
(c2sp.org/signed-note: a name identifies a key together with its key ID), and the merged note would
no longer open under the log key. The valid lines are moved onto the log's own note; once
``max(log.witness_quorum, 1)`` witnesses have cosigned one checkpoint, the note with all their lines
is persisted (:meth:`TransparencyLog.record_witnessed`: never a smaller tree than the one stored)
and becomes :meth:`latest`. The same checkpoint is stored again whenever any of its witnesses
cosigned it anew with a later timestamp (each witness's freshness is its own: one witness's
timestamp never stands in for another's), and cosignatures are kept for the newest
:data:`MAX_GATHERED` checkpoints only while the quorum is not reached.

Nothing here is on the append path: the sequencer only sets an event.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpcore
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
#: Most bytes of a witness's error answer read and kept in its status.
ERROR_SNIPPET = 200
#: Most bytes of a 200 answer read: note signature lines (tlog-witness §add-checkpoint), an Ed25519
#: cosignature line is about 150 bytes, an ML-DSA-44 one about 3.3 kB; well under a note's bound.
MAX_COSIGNATURE_BODY = 64 << 10
#: Most bytes of a 409 answer read: a ``text/x.tlog.size`` body, a decimal and a newline.
MAX_SIZE_BODY = 32
#: How far in the future (log's clock) a cosignature timestamp may be and still count; as
#: :attr:`fiat.verify.verifier.VerifySettings.clock_skew`.
CLOCK_SKEW_S = 5.0
#: Checkpoints whose cosignatures are kept while waiting for the quorum (the newest by size).
MAX_GATHERED = 16


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend with every socket operation bounded by :attr:`deadline`.

    httpx's timeouts bound each connect, write or read on its own, so a peer sending one byte
    before each read times out holds a request without limit. The collector sets ``deadline``
    (``time.monotonic()``) for the length of one submission; each operation then gets at most the
    time left, and none at all once it has passed (httpx raises the matching timeout).
    """

    def __init__(self) -> None:
        self.deadline = math.inf
        self._inner = httpcore.SyncBackend()

    def remaining(self, timeout: float | None, exc: type[httpcore.TimeoutException]) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise exc("the submission's deadline (log.witness_timeout_ms) passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, self.remaining(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream, self)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """One connection of a :class:`_DeadlineBackend`."""

    #: Writes are split so that a peer reading slowly cannot stretch one ``send`` loop past the deadline.
    WRITE_CHUNK = 64 << 10

    def __init__(self, inner: httpcore.NetworkStream, backend: _DeadlineBackend) -> None:
        self._inner, self._backend = inner, backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._backend.remaining(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for i in range(0, len(buffer), self.WRITE_CHUNK):
            chunk = buffer[i : i + self.WRITE_CHUNK]
            self._inner.write(chunk, self._backend.remaining(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # CPython bounds the whole handshake by the socket timeout (one deadline, _ssl.c).
        tls = self._inner.start_tls(
            ssl_context, server_hostname, self._backend.remaining(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport on one keep-alive connection whose I/O a :class:`_DeadlineBackend` bounds.

    httpx does not take a network backend, so the connection pool it built is replaced by the same
    pool over ours (the pool is the one thing :meth:`handle_request` uses; checked here).
    """

    def __init__(self, backend: _DeadlineBackend) -> None:
        super().__init__(trust_env=False)
        if type(self._pool) is not httpcore.ConnectionPool:  # an httpx that builds its pool otherwise
            raise RuntimeError("this httpx version's HTTPTransport has no httpcore.ConnectionPool to replace")
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=1,
            max_keepalive_connections=1,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


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
        # Each witness's cosignature timestamp on the stored note: what "fresher" is measured against.
        self._latest_times = {} if self._latest is None else dict(self._timestamps(self._latest))
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: dict[str, httpx.Client] = {}
        self._backends: dict[str, _DeadlineBackend] = {}
        self._warned: dict[str, float] = {}

    # -- life ---------------------------------------------------------------------

    def start(self) -> None:
        """Start one submitter thread per witness and hook into the log's integrations."""
        if self._threads or not self.witnesses:
            return
        self.log.witnessing = True
        self.log.integration_hooks.append(self._integrated)
        for w in self.witnesses:
            backend = _DeadlineBackend()
            client = httpx.Client(
                timeout=self.timeout_s,
                transport=_DeadlineTransport(backend),
                headers={
                    "Content-Type": "text/plain; charset=utf-8",
                    "User-Agent": "fiat-log-witnessing",
                    "Accept-Encoding": "identity",  # the byte caps are on what is read, not on what it inflates to
                },
                trust_env=False,
            )
            self._clients[w.name], self._backends[w.name] = client, backend
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

    def _timestamps(self, cp: SignedCheckpoint) -> list[tuple[str, int]]:
        """The valid, not future-dated cosignatures' (name, timestamp) on ``cp``."""
        limit = self.clock() + CLOCK_SKEW_S
        found = cosigners(cp.note_bytes, [(w.name, w.public_key) for w in self.witnesses])
        return [(n, ts) for n, ts in found if ts <= limit]

    def _quorum_timestamp(self, cp: SignedCheckpoint) -> int | None:
        times = sorted((ts for _, ts in self._timestamps(cp)), reverse=True)
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
        """One add-checkpoint submission of ``cp`` to ``w`` with its retries; its valid cosignature line.

        All of it, retries included, ends within ``log.witness_timeout_ms`` (on the collector's own
        clients, every socket operation is bounded by that deadline)."""
        if w.name == self.log.origin:
            raise SubmissionError(
                f"the witness key is named {w.name!r}, the log's origin: its cosignatures would pass for the "
                "log's own signature lines. Enroll the witness under its own name (`fiat keys add --role witness`)"
            )
        deadline = time.monotonic() + self.timeout_s
        backend = self._backends.get(w.name)
        if backend is None or self._clients.get(w.name) is not client:
            return self._submit(w, client, cp, deadline)
        backend.deadline = deadline
        try:
            return self._submit(w, client, cp, deadline)
        finally:
            backend.deadline = math.inf

    def _submit(
        self, w: WitnessEndpoint, client: httpx.Client, cp: SignedCheckpoint, deadline: float
    ) -> note.Signature:
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
                with client.stream("POST", w.add_checkpoint_url, content=body, timeout=remaining) as r:
                    status, media = r.status_code, r.headers.get("content-type", "")
                    if status == 200:
                        answer = _read_capped(r, MAX_COSIGNATURE_BODY, "200 answer")
                    elif status == 409:
                        answer = _read_capped(r, MAX_SIZE_BODY, "409 answer")
                    else:
                        answer = _read_capped(r, ERROR_SNIPPET, "error answer", truncate=True)
            except httpx.HTTPError as exc:
                if time.monotonic() >= deadline:
                    raise SubmissionError(
                        f"no complete answer from {w.add_checkpoint_url} within log.witness_timeout_ms "
                        f"({self.timeout_s * 1000:.0f} ms); the last try: {type(exc).__name__}: {exc}"
                    ) from exc
                retry = f"cannot reach {w.add_checkpoint_url}: {type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    return self._verify(w, cp, answer)
                if status == 409:
                    size = self._conflict_size(media, answer)
                    with self._lock:
                        self._states[w.name].known_size = size
                    conflicts += 1
                    if conflicts > MAX_CONFLICTS:
                        raise SubmissionError(f"the witness answered 409 Conflict {conflicts} times in a row")
                    continue  # again at once, from the size the witness holds
                snippet = answer.decode("utf-8", "replace").strip()
                if status < 500:
                    raise SubmissionError(f"the witness refused the checkpoint of size {cp.size}: {status} {snippet}")
                retry = f"the witness answered {status} {snippet}"
            if time.monotonic() + delay >= deadline:
                raise SubmissionError(retry)
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    @staticmethod
    def _conflict_size(content_type: str, body: bytes) -> int:
        media = content_type.split(";")[0].strip().lower()
        if media != witness.SIZE_MEDIA_TYPE:
            raise SubmissionError(
                f"the witness answered 409 with {media or 'no content type'}, not {witness.SIZE_MEDIA_TYPE}"
            )
        try:
            return witness.parse_size(body)
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
            if not found or found[0][1] == 0:
                continue
            if found[0][1] > self.clock() + CLOCK_SKEW_S:
                # No number in the message: it is the witness's status, logged again only when it changes.
                raise SubmissionError(
                    f"the witness's cosignature is dated more than {CLOCK_SKEW_S:.0f} s after the log's clock: "
                    "not counted. Check the witness's (or this host's) clock"
                )
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
            while len(self._gathered) > MAX_GATHERED:  # the quorum is out of reach: keep the newest only
                del self._gathered[min(self._gathered, key=lambda k: self._gathered[k].cp.size)]
            if text not in self._gathered or len(gathered.lines) < self.quorum or cp.size < floor:
                return
            own = {(v.name, v.key_id) for v in (self.log.verifier, *self.log.retired)}
            order = [x.name for x in self.witnesses]
            cosigs = [
                gathered.lines[n]
                for n in order
                if n in gathered.lines and n != self.log.origin and (n, gathered.lines[n].key_id) not in own
            ]
            if len(cosigs) < self.quorum:
                return
            stamps = {c.name: int.from_bytes(c.signature[:8], "big") for c in cosigs}
            quorum_time = sorted(stamps.values(), reverse=True)[self.quorum - 1]
            if (
                latest is not None
                and cp.size == latest.size
                and all(ts <= self._latest_times.get(n, -1) for n, ts in stamps.items())
            ):
                # The stored checkpoint again, and no witness cosigned it later than the stored note says
                # (timestamps are whole seconds): nothing to store. Keeps the writes off the log's
                # writer lock. Each witness against its own timestamp: a witness pinning a high one
                # must not keep the others' from being refreshed.
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
            self._latest_times = stamps
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


def _read_capped(r: httpx.Response, cap: int, what: str, *, truncate: bool = False) -> bytes:
    """At most ``cap`` bytes of ``r``'s body, read as it streams in. Over ``cap``: the first ``cap``
    bytes when ``truncate`` (an error answer's snippet), else :class:`SubmissionError`, without
    reading the rest (the connection is then closed)."""
    encoding = r.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise SubmissionError(f"the witness's {what} is {encoding}-encoded; witness answers are plain text")
    declared = r.headers.get("content-length", "")
    if not truncate and declared.isdigit() and int(declared) > cap:
        raise SubmissionError(f"the witness's {what} declares {declared} bytes, more than the {cap} it may have")
    body = bytearray()
    for chunk in r.iter_raw():
        body += chunk
        if len(body) > cap:
            if truncate:
                break
            raise SubmissionError(f"the witness's {what} is longer than the {cap} bytes it may have")
    return bytes(body[:cap])
