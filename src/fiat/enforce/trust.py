"""The trust-state subscription: one per process and authority, shared by every guard.

A background thread follows ``GET /v1/trust/stream`` (server-sent events). For
each signed trust state it checks, one named step each:

1. ``trust-signature`` — a JWS (``typ`` fiat-trust-state+jwt) by an authority key of the
   trust root valid at the time the state claims (:mod:`fiat.verify.trust_state`); a bad
   signature is a cryptographic failure that halts guards.
   ``trust-key-validity`` — that key is valid now, on arrival: a state signed just before a
   key rotation is refused (it gives no freshness) but halts nothing by itself.
2. ``trust-order``     — its signed time does not go backwards: an older state (a replay, or
   one arriving late) is ignored, so freshness comes only from the newest state. (The
   ``epoch`` counts the states one server process signed, and starts again when it
   restarts, so it orders nothing across restarts.)
3. ``trust-continuity`` — revocations are never skipped (docs/formats.md, "Trust state"):
   the monitor keeps the highest revocation epoch it has seen every revocation up to
   (``revocation_epoch``). A state lists the revocations after ``revocationsSince`` up to
   ``revocationEpoch``; it is folded in only when ``revocationsSince`` is at most the
   monitor's epoch (0: a complete state, always). A delta from a later epoch — e.g. one a
   man-in-the-middle fetched from ``GET /v1/trust/state?since=<huge>``, which lists
   nothing — is refused, and the monitor fetches a complete state
   (``GET /v1/trust/state?since=0``) instead; if that fails too, ``continuity_failure``
   halts guards at ``trust-continuity`` until a state that closes the gap arrives.
4. ``log-checkpoint``  — the embedded checkpoint is signed by the trust root's log key.
5. ``log-continuity``  — the checkpoint is consistent with the last one seen (RFC 9162
   §2.1.4, proof computed from the log's tiles); a smaller tree or a second root for one
   size is a split view that halts guards. When the log's own tiles show it (the other
   history's root at the smaller size and the consistency proof to the larger checkpoint,
   checked here before it is believed), the monitor writes a **split-view proof**
   (:mod:`fiat.verify.split_view`) to ``<home>/split-views/<UTC time>-<origin hash[:12]>.json``
   (mode 0600): offline evidence, for ``fiat verify FILE --trust-root …``, that the log's
   operator signed two inconsistent checkpoints.

Witnessing (issue 14): the embedded checkpoint note may carry C2SP tlog-cosignature lines
(``cosignature/v1``, Ed25519, with a timestamp). For every accepted state the monitor records,
for the checkpoint (size and root) the note belongs to, each witness key of the trust root
whose cosignature verifies and that is valid at the cosignature's own timestamp, keeping the
newest timestamp per witness name — also when the checkpoint is unchanged, which is how fresh
timestamps arrive (the log resubmits its latest checkpoint to its witnesses). Guards with
``runtime.require_witnessed`` read it for the proven checkpoint (``witnessed``, step
``witness-quorum`` in :mod:`fiat.enforce.guard`). Cosignature lines of keys the trust root does
not list are ignored (C2SP signed-note §Signatures: unknown keys MUST be ignored).

Gossip (issue 14): every ``runtime.gossip_interval_ms`` a thread asks each witness key of the
trust root that has a ``url`` for its latest cosigned checkpoint of the log (C2SP tlog-witness,
monitoring: ``GET <url>/<SHA-256 of the origin, hex>/checkpoint``). One the log did not sign is
ignored. One the log signed that the guard's proven checkpoint contradicts is a split view:
the same size with another root; or a smaller size whose root is not the guard's history's
root at that size (computed from the log's tiles, as ``log-continuity`` does). Both halt
guards at ``log-continuity`` and write a split-view proof. A larger witness checkpoint cannot
be checked against the guard's tiles yet: it is compared again once the guard's view grows.

Every request (the stream, the complete state, the log's tiles) verifies an ``https://``
authority's certificate against ``server.tls_ca`` or the system store (:mod:`fiat.tls`).

Guards read the result without touching the network (``snapshot``) and are woken
at once when a state arrives, so a revocation halts them within milliseconds. ``refresh``
fetches a complete state on demand (a guard ending for a reason it did not find itself: see
:mod:`fiat.enforce.run`); it passes the same steps.

The stream is read as server-sent events (WHATWG HTML §9.2.6: ``event:`` and ``data:``
fields, dispatched at a blank line). ``trust-state`` events (and, for older servers,
events without a type) carry the signed states above. ``going-away`` says the authority
has begun its shutdown drain (:mod:`fiat.serving`): it is recorded in the snapshot
(``going_away``, and named when a guard halts for staleness) and logged, and the monitor
keeps reconnecting with backoff as after any closed stream. It is *unauthenticated*, so
it changes no check: it cannot extend trust (freshness still needs a fresh signed state,
and guards halt fail-closed without one) nor withdraw it, so a forged one is harmless.
Events of any other type are ignored.

Time (issue 10): a state's arrival is stamped on the monotonic clock (``received``), with
the age it already had then (``age_at_receipt``: the monitor's steady wall time minus the
signed time, never negative — see :mod:`fiat.enforce.clock`; the steady clock is anchored
when the monitor is made, so a later wall-clock step neither ages nor rejuvenates a state);
``unproven_since`` is monotonic too. A guard's ``trust-fresh`` age is ``age_at_receipt``
plus the monotonic time since ``received``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from fiat import tls
from fiat.enforce.clock import SteadyClock
from fiat.errors import FiatError, MalformedError, VerificationError
from fiat.formats.encoding import rfc3339
from fiat.prove.audit import HttpFetcher
from fiat.tlog import merkle, note
from fiat.tlog.checkpoint import SignedCheckpoint, open_with_any
from fiat.tlog.cosignature import verified_cosigners
from fiat.tlog.tiles import Tile, TileHashSource
from fiat.tlog.witness import checkpoint_path, origin_hash
from fiat.verify import split_view as split_views
from fiat.verify.trust_root import TrustedKey, TrustRoot
from fiat.verify.trust_state import KEY_VALIDITY_STEP, verify_trust_state

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("fiat.trust")


def _epoch(v: object) -> int | None:
    """A revocation epoch (a non-negative integer), else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


@dataclass(frozen=True)
class Revocation:
    kind: str
    target: str
    reason: str
    covered_by: str | None = None  # the permit revoked, when this entry lists a permit it covers


@dataclass
class Witnessing:
    """The witness cosignatures seen on one checkpoint (size and root), over every note that carried it."""

    #: Witness name -> the newest timestamp of a cosignature that verified under a trust-root key
    #: of that name valid at that timestamp (POSIX seconds, tlog-cosignature §Ed25519).
    cosigned: dict[str, int] = field(default_factory=dict)
    #: Witness name -> why a cosignature line of a trust-root witness key did not count.
    refused: dict[str, str] = field(default_factory=dict)
    #: Signature lines on the newest note that are neither the log's nor a trust-root witness's.
    unknown: int = 0

    def copy(self) -> Witnessing:
        return Witnessing(dict(self.cosigned), dict(self.refused), self.unknown)


def witness_url(key: TrustedKey) -> str | None:
    """A witness key's tlog-witness prefix (the trust root's optional ``"url"``), without a trailing slash."""
    return key.url.rstrip("/") if key.url else None


@dataclass
class TrustSnapshot:
    """What the latest verified trust state says, and anything that went wrong."""

    state_time: float | None = None  # the authority's signed time of the latest valid state
    received: float | None = None  # when it arrived, on the monitor's monotonic clock
    age_at_receipt: float = 0.0  # how old it was on arrival: steady wall time - signed time, >= 0
    epoch: int = 0
    #: The highest revocation epoch up to which every revocation has been seen (trust-continuity).
    revocation_epoch: int = 0
    policy_digest: str | None = None
    revocations: dict[tuple[str, str], Revocation] = field(default_factory=dict)
    checkpoint: SignedCheckpoint | None = None
    crypto_failure: str | None = None
    split_view: str | None = None
    continuity_failure: str | None = None  # a gap in the revocations that no complete state closed
    last_error: str | None = None
    unproven_since: float | None = None  # (monotonic) a newer checkpoint seen, not yet proven consistent
    going_away: str | None = None  # the authority said it is shutting down (unsigned: information only)
    #: The witness cosignatures seen on ``checkpoint`` (the proven one); None: no checkpoint yet.
    witnessed: Witnessing | None = None
    #: The split-view proof of ``split_view``, when the evidence could be assembled and checked.
    split_view_proof: split_views.SplitViewProof | None = None
    #: Where that proof was written (``<home>/split-views/…``), when the monitor has a directory for it.
    split_view_file: Path | None = None


class TrustMonitor:
    """Follows one authority's trust stream; thread-safe reads via :meth:`snapshot`."""

    _shared: ClassVar[dict[str, TrustMonitor]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        url: str,
        root: TrustRoot,
        clock: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self.root = root
        self.clock, self.mono = clock, mono
        self.steady = SteadyClock(clock, mono)  # anchored now: later wall-clock steps do not move it
        self._lock = threading.Lock()
        self._snap = TrustSnapshot()
        self._listeners: set[threading.Event] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prover: threading.Thread | None = None
        self._prove = threading.Event()
        self._pending: SignedCheckpoint | None = None
        self._users = 0
        log_keys = root.log_verifiers()
        if not log_keys:
            raise FiatError("the trust root has no log key; export it with `fiat trust-root export`")
        self._log_keys = log_keys
        self._log_limits = [k.max_tree_size for k in root.by_role("log")]
        #: What the stream tells the authority about this runtime (``?runtime=&spool=``): the kid of
        #: its runtime key and a count of spooled receipts, for the health page only
        #: (self-reported, unauthenticated; :mod:`fiat.api.routes.trust`). Set by :meth:`shared`.
        self.runtime_kid: str | None = None
        self.spool_backlog: Callable[[], int] | None = None
        #: Where split-view proofs are written (``<home>/split-views``); None: kept in the snapshot only.
        self.proof_dir: Path | None = None
        #: Seconds between gossip rounds with the trust root's witnesses (0: none). Set by :meth:`shared`.
        self.gossip_interval: float = 0.0
        self._gossiper: threading.Thread | None = None
        self._witness_keys = root.by_role("witness")
        self._cosigs: dict[tuple[int, bytes], Witnessing] = {}

    @classmethod
    def shared(
        cls,
        url: str,
        root: TrustRoot,
        *,
        runtime_kid: str | None = None,
        spool_backlog: Callable[[], int] | None = None,
        proof_dir: Path | None = None,
        gossip_interval: float = 0.0,
    ) -> TrustMonitor:
        """The process-wide monitor for ``url`` (many guards, one subscription); the first guard
        to name its runtime (``runtime_kid``, ``spool_backlog``), where split-view proofs go
        (``proof_dir``) and how often to gossip with witnesses (``gossip_interval``, seconds, 0
        none) sets them for the subscription."""
        with cls._shared_lock:
            monitor = cls._shared.get(url.rstrip("/"))
            if monitor is None or monitor._stop.is_set():
                monitor = cls(url, root)
                cls._shared[monitor.url] = monitor
            if monitor.runtime_kid is None and runtime_kid is not None:
                monitor.runtime_kid, monitor.spool_backlog = runtime_kid, spool_backlog
            if monitor.proof_dir is None and proof_dir is not None:
                monitor.proof_dir = proof_dir
            if not monitor.gossip_interval and gossip_interval > 0:
                monitor.gossip_interval = gossip_interval
            monitor._users += 1
            monitor.start()
            return monitor

    def release(self) -> None:
        with TrustMonitor._shared_lock:
            self._users -= 1
            if self._users <= 0:
                self.stop()
                TrustMonitor._shared.pop(self.url, None)

    # -- listeners
    def subscribe(self) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._listeners.add(event)
        return event

    def unsubscribe(self, event: threading.Event) -> None:
        with self._lock:
            self._listeners.discard(event)

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for e in listeners:
            e.set()

    def snapshot(self) -> TrustSnapshot:
        with self._lock:
            cp = self._snap.checkpoint
            seen = None if cp is None else self._cosigs.get((cp.size, cp.root))
            witnessed = None if cp is None else (seen.copy() if seen is not None else Witnessing())
            return dataclasses.replace(self._snap, revocations=dict(self._snap.revocations), witnessed=witnessed)

    def wait_fresh(self, timeout: float) -> bool:
        """Wait until a first valid state has arrived."""
        deadline = time.monotonic() + timeout
        event = self.subscribe()
        try:
            while time.monotonic() < deadline:
                if self.snapshot().state_time is not None:
                    return True
                event.wait(0.05)
                event.clear()
            return self.snapshot().state_time is not None
        finally:
            self.unsubscribe(event)

    # -- the stream
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fiat-trust-monitor", daemon=True)
            self._thread.start()
            self._prover = threading.Thread(target=self._prove_loop, name="fiat-log-continuity", daemon=True)
            self._prover.start()
            if self.gossip_interval > 0 and any(witness_url(k) for k in self._witness_keys):
                self._gossiper = threading.Thread(target=self._gossip_loop, name="fiat-witness-gossip", daemon=True)
                self._gossiper.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import httpx

        backoff = 0.1
        data: list[str]
        while not self._stop.is_set():
            try:
                with (
                    httpx.Client(timeout=httpx.Timeout(5.0, read=20.0), verify=tls.client_context()) as client,
                    client.stream("GET", self.url + "/v1/trust/stream", params=self._identity()) as response,
                ):
                    if response.status_code != 200:
                        raise FiatError(f"trust stream answered HTTP {response.status_code}")
                    backoff = 0.1
                    with self._lock:
                        self._snap.going_away = None  # a new stream: an authority that is not leaving
                    buffer = bytearray()
                    kind, data = "", []  # the event being read: its type and data lines
                    for chunk in response.iter_raw():
                        if self._stop.is_set():
                            return
                        buffer += chunk
                        # Split complete lines in one pass (a long JWS line arrives in many chunks).
                        end = buffer.rfind(b"\n")
                        if end < 0:
                            continue
                        lines, buffer = bytes(buffer[:end]), buffer[end + 1 :]
                        for line in lines.split(b"\n"):
                            line = line.rstrip(b"\r")
                            if not line:  # the end of an event: dispatch it
                                if data:
                                    self._dispatch(kind, "\n".join(data))
                                kind, data = "", []
                            elif line.startswith(b"event:"):
                                kind = line[6:].strip().decode("ascii", "replace")
                            elif line.startswith(b"data:"):
                                data.append(line[5:].strip().decode("ascii", "replace"))
            except Exception as exc:  # network trouble: staleness will show it to the guards
                untrusted = tls.untrusted_certificate(exc)
                if untrusted is not None:
                    log.warning("trust stream refused: %s", untrusted)
                with self._lock:
                    self._snap.last_error = untrusted or str(exc)
                log.debug("trust stream interrupted: %s", exc)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 1.0)

    def _identity(self) -> dict[str, str]:
        """The stream's query: who this runtime says it is (display only at the authority)."""
        params: dict[str, str] = {}
        if self.runtime_kid:
            params["runtime"] = self.runtime_kid
        if self.spool_backlog is not None:
            try:
                params["spool"] = str(self.spool_backlog())
            except Exception as exc:  # an unreadable spool is not a reason to lose the stream
                log.debug("spool backlog not counted: %s", exc)
        return params

    def _dispatch(self, kind: str, data: str) -> None:
        """One server-sent event: a trust state, a going-away notice, or (any other type) nothing."""
        if kind in ("", "message", "trust-state"):
            self.accept(data)
        elif kind == "going-away":
            self.going_away(data)

    def going_away(self, data: str) -> None:
        """``event: going-away``: note that the authority is shutting down; trust is unchanged.

        Unauthenticated (see the module docstring): it only annotates the snapshot, so that
        a guard that halts for staleness says why the states stopped. The data, JSON
        ``{"drainS": N, "reason": "shutdown"}``, is read leniently, as nothing depends on it.
        """
        import json

        try:
            body = json.loads(data)
        except ValueError:
            body = {}
        drain = body.get("drainS") if isinstance(body, dict) else None
        within = f" within {drain:g} s" if isinstance(drain, int | float) and not isinstance(drain, bool) else ""
        note = f"the authority is shutting down (going-away): its trust stream ends{within}"
        with self._lock:
            self._snap.going_away = note
        log.info("%s; reconnecting when it closes", note)
        self._notify()

    def accept(self, token: str, *, refetch: bool = True) -> None:
        """Verify one trust state and fold it into the snapshot (public for tests and push paths).

        A delta state that leaves a gap in the revocations (trust-continuity) is not folded;
        with ``refetch`` a complete state is fetched from the authority and accepted instead.
        """
        now, local = self.mono(), self.steady.now()
        try:
            claims = verify_trust_state(token, self.root, now=local)
        except VerificationError as exc:
            with self._lock:
                if exc.step == KEY_VALIDITY_STEP:  # superseded, not forged: no freshness from it
                    self._snap.last_error = f"{exc.step}: {exc.reason}"
                else:
                    self._snap.crypto_failure = f"{exc.step}: {exc.reason}"
            self._notify()
            return
        epoch, state_time = claims.get("epoch"), claims.get("time")
        if not isinstance(epoch, int) or not isinstance(state_time, int | float):
            with self._lock:
                self._snap.crypto_failure = "trust-signature: a signed trust state without epoch or time"
            self._notify()
            return
        since, covered = _epoch(claims.get("revocationsSince")), _epoch(claims.get("revocationEpoch"))
        if since is None or covered is None:
            self._continuity_failed(
                "the trust state does not say which revocations it covers (revocationEpoch, revocationsSince): "
                "the authority is older than this guard; upgrade it"
            )
            return
        with self._lock:
            previous = self._snap.checkpoint
            if self._snap.state_time is not None and state_time < self._snap.state_time:
                return  # an older state arriving late: ignore it (trust-order)
            seen = self._snap.revocation_epoch
        if since > seen:
            gap = (
                f"a trust state lists only the revocations after epoch {since}, but this guard has seen them "
                f"only up to epoch {seen}: revocations in between may be hidden"
            )
            if not refetch:
                self._continuity_failed(gap)
                return
            try:
                complete = self._fetch_complete()
            except Exception as exc:  # unreachable, refused, malformed: the gap stays open
                self._continuity_failed(f"{gap}, and no complete state could be fetched: {exc}")
                return
            log.warning("%s; fetched a complete trust state instead", gap)
            self.accept(complete, refetch=False)
            return
        checkpoint = previous
        embedded = claims.get("checkpoint")
        if isinstance(embedded, str):
            try:
                checkpoint = open_with_any(embedded.encode("utf-8"), self._log_keys, self._log_limits)
            except (MalformedError, VerificationError) as exc:
                with self._lock:
                    self._snap.crypto_failure = f"log-checkpoint: {exc}"
                self._notify()
                return
            self._record_cosigners(checkpoint)
        revocations = {}
        for r in claims.get("revocations", []) or []:
            if isinstance(r, dict) and isinstance(r.get("kind"), str) and isinstance(r.get("target"), str):
                by = r.get("coveredBy")
                revocations[(r["kind"], r["target"])] = Revocation(
                    r["kind"], r["target"], str(r.get("reason", "")), by if isinstance(by, str) else None
                )
        policy = claims.get("policy")
        digest = policy.get("digest", {}).get("sha256") if isinstance(policy, dict) else None
        # Revocations, freshness and policy take effect at once; guards are woken before the
        # (slower, networked) log-continuity proof below.
        with self._lock:
            s = self._snap
            s.state_time, s.received, s.epoch = float(state_time), now, epoch
            s.age_at_receipt = max(0.0, local - float(state_time))
            s.policy_digest = digest
            s.revocations.update(revocations)  # a revocation, once seen, stays (fail closed)
            s.revocation_epoch = max(s.revocation_epoch, covered)
            s.continuity_failure = None
            s.last_error = None
            if previous is None:
                s.checkpoint = checkpoint
        self._notify()
        if previous is None or checkpoint is None:
            return
        if checkpoint.size == previous.size and checkpoint.root == previous.root:
            return
        # Hand the newest checkpoint to the continuity worker: a burst of states costs one proof.
        with self._lock:
            self._pending = checkpoint
            if self._snap.unproven_since is None:
                self._snap.unproven_since = now
        self._prove.set()

    def _continuity_failed(self, why: str) -> None:
        """``trust-continuity``: the state is not folded; guards halt until one closes the gap."""
        log.error("trust-continuity: %s", why)
        with self._lock:
            self._snap.continuity_failure = f"trust-continuity: {why}"
        self._notify()

    def refresh(self, timeout: float) -> bool:
        """Fetch a complete trust state now and fold it in as a pushed one (every step above).

        For a guard about to end its action for a reason it did not find itself (a signal, the
        command's death): a parent guard halting the tree on a cascade revocation, for one, may
        be faster than this process's own copy of the pushed state. Returns whether a state was
        accepted; on any failure nothing changes (the stream's states still count).
        """
        try:
            token = self._fetch_complete(timeout)
        except Exception as exc:  # unreachable, refused, malformed: the snapshot stays as it was
            log.debug("trust state refresh failed: %s", exc)
            return False
        self.accept(token, refetch=False)
        return True

    def _fetch_complete(self, timeout: float = 5.0) -> str:
        """A complete trust state (every live revocation): ``GET /v1/trust/state?since=0``."""
        import httpx

        with httpx.Client(timeout=timeout, verify=tls.client_context()) as client:
            r = client.get(self.url + "/v1/trust/state", params={"since": 0})
        if r.status_code != 200:
            raise FiatError(f"GET /v1/trust/state?since=0 answered HTTP {r.status_code}")
        body = r.json()
        state = body.get("state") if isinstance(body, dict) else None
        if not isinstance(state, str):
            raise FiatError("GET /v1/trust/state?since=0 did not answer a trust state")
        return state

    def _prove_loop(self) -> None:
        """``log-continuity`` in the background: prove the newest checkpoint from the last proven one."""
        fetcher = HttpFetcher(self.url + "/log", timeout=5.0)
        try:
            while not self._stop.is_set():
                self._prove.wait(1.0)
                self._prove.clear()
                with self._lock:
                    new, old = self._pending, self._snap.checkpoint
                    settled = self._snap.split_view is not None  # halted for good: nothing more to prove
                if new is None or old is None or settled:
                    continue
                proven, problem, evidence = self._continuity(old, new, fetcher)
                if problem is not None:
                    self._split_view(problem, evidence)
                    continue
                with self._lock:
                    if proven:
                        self._snap.checkpoint = new
                        if self._pending is new:
                            self._pending = None
                            self._snap.unproven_since = None
                    # not proven (tiles unreachable): retried; guards halt if it lasts past staleness
                if not proven:
                    self._stop.wait(0.2)
                    self._prove.set()
        finally:
            fetcher.close()

    def _continuity(
        self, old: SignedCheckpoint, new: SignedCheckpoint, fetcher: HttpFetcher
    ) -> tuple[bool | None, str | None, split_views.SplitViewProof | None]:
        """``log-continuity``: (True, None, None) if ``new`` extends ``old``; (False, why, proof) if it
        cannot (``proof``: the split-view proof, when the log's tiles yield one); (None, None, None)
        if it could not be proven yet (the tiles were unreachable)."""
        if new.size < old.size:
            why = f"log-continuity: the log shrank from {old.size} to {new.size} entries (rollback)"
            # The larger history's tiles may still be served: then a rollback to another history is provable.
            return False, why, self._fork_evidence(new, old, fetcher, "a trust state's checkpoint")
        if new.size == old.size:
            if new.root == old.root:
                return True, None, None
            return False, f"log-continuity: two roots for tree size {new.size}", self._proof(old, new)
        try:
            proof = merkle.consistency_proof(self._tiles(fetcher, new.size), old.size, new.size)
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except VerificationError as exc:
            why = f"log-continuity: checkpoint {new.size} is not consistent with {old.size}: {exc.reason}"
            return False, why, self._fork_evidence(old, new, fetcher, "a trust state's checkpoint")
        except Exception as exc:  # could not fetch: not proven yet; retried
            log.debug("consistency not yet provable: %s", exc)
            return None, None, None
        return True, None, None

    # -- split views ------------------------------------------------------------------------------------

    @staticmethod
    def _tiles(fetcher: HttpFetcher, size: int) -> TileHashSource:
        """The log's tiles (``<authority>/log/tile/...``) as a hash source for a tree of ``size``."""

        def read(level: int, index: int, width: int) -> bytes:
            return fetcher.get(Tile(level, index, width).path())

        return TileHashSource(read, size)

    def _observer(self, via: str) -> str:
        who = f"runtime {self.runtime_kid}" if self.runtime_kid else "a Fiat guard"
        return f"{who} (guard of {self.url}), {via}"

    def _proof(
        self,
        a: SignedCheckpoint,
        b: SignedCheckpoint,
        via: str = "a trust state's checkpoint",
        *,
        old_root: bytes | None = None,
        proof: tuple[bytes, ...] = (),
    ) -> split_views.SplitViewProof:
        at = rfc3339(self.steady.now())
        return split_views.build(a, b, old_root=old_root, proof=proof, observed_by=self._observer(via), observed_at=at)

    def _fork_evidence(
        self, small: SignedCheckpoint, large: SignedCheckpoint, fetcher: HttpFetcher, via: str
    ) -> split_views.SplitViewProof | None:
        """The split-view proof of two checkpoints of different sizes, from ``large``'s history's tiles:
        its root at ``small.size`` and the RFC 9162 §2.1.4 consistency proof from there to ``large``.

        The evidence is checked before it is believed (the consistency proof must verify against
        ``large``'s signed root, so the tiles are ``large``'s history); None when the tiles cannot
        be had, do not match ``large``, or show the two consistent."""
        if small.size == 0:  # RFC 6962 §2.1: the empty tree has one root, and extends to every tree
            return None if small.root == merkle.EMPTY_ROOT else self._proof(small, large, via)
        try:
            tiles = self._tiles(fetcher, large.size)
            old_root = merkle.tree_root(tiles, small.size)
            proof = tuple(merkle.consistency_proof(tiles, small.size, large.size))
            merkle.verify_consistency(small.size, large.size, old_root, large.root, proof)
        except Exception as exc:  # unreachable, or not this checkpoint's history: no offline proof
            log.debug("no split-view proof from the tiles of size %d: %s", large.size, exc)
            return None
        if old_root == small.root:
            return None  # consistent: no split view between these two
        evidence = self._proof(small, large, via, old_root=old_root, proof=proof)
        try:  # the verifier's own rules, as `fiat verify` will apply them
            split_views.verify(evidence, self._log_keys, self._log_limits)
        except VerificationError as exc:
            log.warning("a split-view proof did not verify and is not kept: %s", exc)
            return None
        return evidence

    def _split_view(self, why: str, evidence: split_views.SplitViewProof | None) -> None:
        """Record a split view (the first one found stays), write its proof, and wake the guards."""
        with self._lock:
            if self._snap.split_view is not None:
                return
        path = None
        if evidence is not None and self.proof_dir is not None:
            try:
                path = write_proof(self.proof_dir, evidence, self.steady.now())
            except OSError as exc:
                log.error("the split-view proof could not be written to %s: %s", self.proof_dir, exc)
        if evidence is not None:
            where = f"; split-view proof: {path}" if path is not None else ""
        else:
            where = "; no offline proof (the log's tiles do not show the other history)"
        log.error("split view: %s%s", why, where)
        with self._lock:
            if self._snap.split_view is not None:
                return
            self._snap.split_view = why
            self._snap.split_view_proof, self._snap.split_view_file = evidence, path
        self._notify()

    # -- witnesses -------------------------------------------------------------------------------------

    def _record_cosigners(self, cp: SignedCheckpoint) -> None:
        """Fold the checkpoint note's cosignatures into what is known of ``cp`` (see the module docstring)."""
        try:
            parsed = note.parse(cp.note_bytes)
        except MalformedError:  # open_with_any parsed it already
            return
        cosigned: dict[str, int] = {}
        refused: dict[str, str] = {}
        known = {(v.name, v.key_id) for v in self._log_keys}
        for key in self._witness_keys:
            kid = note.key_id(key.name, note.ALG_COSIGNATURE_V1, key.public_key)
            known.add((key.name, kid))
            lines = [s for s in parsed.signatures if s.name == key.name and s.key_id == kid]
            if not lines:
                continue
            got = verified_cosigners(parsed, [(key.name, key.public_key)])
            if not got:
                refused.setdefault(key.name, f"its cosignature by key {key.kid} does not verify")
                continue
            name, ts = got[0]
            if not key.valid_at(ts):
                refused.setdefault(
                    name, f"key {key.kid} was not valid at its cosignature's time {ts} (key valid {key.period()})"
                )
                continue
            cosigned[name] = max(ts, cosigned.get(name, ts))
        unknown = sum(1 for s in parsed.signatures if (s.name, s.key_id) not in known)
        with self._lock:
            seen = self._cosigs.setdefault((cp.size, cp.root), Witnessing())
            for name, ts in cosigned.items():
                seen.cosigned[name] = max(ts, seen.cosigned.get(name, ts))
                seen.refused.pop(name, None)
            for name, why in refused.items():
                if name not in seen.cosigned:
                    seen.refused[name] = why
            seen.unknown = unknown
            # Keep the proven checkpoint's and the newer ones' records, a few at most.
            proven = self._snap.checkpoint
            floor = proven.size if proven is not None else 0
            for k in [k for k in self._cosigs if k[0] < floor]:
                del self._cosigs[k]
            while len(self._cosigs) > 16:
                del self._cosigs[min(self._cosigs)]

    def _gossip_loop(self) -> None:
        """Every ``gossip_interval`` seconds, compare the proven checkpoint with each witness's.

        The witnesses are asked concurrently, each within :data:`GOSSIP_DEADLINE` and
        :data:`GOSSIP_MAX_BYTES`: a slow or hostile witness delays nobody else's comparison, and a
        witness still busy from the round before is not asked again until it answers."""
        import httpx

        fetcher = HttpFetcher(self.url + "/log", timeout=5.0)
        targets = [(k.name, url) for k in self._witness_keys if (url := witness_url(k)) is not None]
        busy: dict[str, Future[str]] = {}
        try:
            with (
                httpx.Client(timeout=GOSSIP_DEADLINE, verify=tls.client_context()) as client,
                ThreadPoolExecutor(max_workers=max(1, len(targets)), thread_name_prefix="fiat-gossip") as pool,
            ):
                while not self._stop.wait(self.gossip_interval):
                    with self._lock:
                        if self._snap.split_view is not None:
                            continue  # halted for good: the proof is written
                    for name, url in targets:
                        if self._stop.is_set() or (name in busy and not busy[name].done()):
                            continue
                        busy[name] = pool.submit(self._gossip_with, name, url, client, fetcher)
                for f in busy.values():
                    f.cancel()
        finally:
            fetcher.close()

    def _gossip_with(self, name: str, url: str, client: httpx.Client, fetcher: HttpFetcher) -> str:
        try:
            return self.gossip_once(name, url, client, fetcher)
        except Exception as exc:  # a witness unreachable or odd: gossip is best effort
            log.debug("gossip with witness %s at %s failed: %s", name, url, exc)
            return "ignored"

    def gossip_once(self, name: str, url: str, client: httpx.Client, fetcher: HttpFetcher) -> str:
        """One comparison with witness ``name`` at ``url`` (its tlog-witness monitoring prefix).

        Returns what it found: ``"consistent"``, ``"split-view"``, ``"later"`` (the witness is ahead,
        or the guard has no proven checkpoint yet) or ``"ignored"`` (nothing the log signed)."""
        with self._lock:
            mine = self._snap.checkpoint
        if mine is None:
            return "later"
        status, body = get_bounded(client, url + checkpoint_path(self.root.log_origin))
        if status != 200:
            log.debug("witness %s answered HTTP %d for the log's checkpoint", name, status)
            return "ignored"
        try:
            theirs = open_with_any(body, self._log_keys, self._log_limits)
        except (MalformedError, VerificationError) as exc:  # not the log's word: proves nothing
            log.debug("witness %s served a checkpoint the log did not sign: %s", name, exc)
            return "ignored"
        via = f"gossip with witness {name} ({url})"
        if theirs.size > mine.size:
            return "later"  # the guard's tiles cannot show it yet; compared again once its view grows
        if theirs.size == mine.size:
            if theirs.root == mine.root:
                return "consistent"
            why = (
                f"log-continuity: witness {name} holds the log's checkpoint {theirs.size} with another root "
                f"than this guard's: two roots for one tree size (split view)"
            )
            self._split_view(why, self._proof(theirs, mine, via))
            return "split-view"
        evidence = self._fork_evidence(theirs, mine, fetcher, via)
        if evidence is None:
            if theirs.size == 0:
                return "consistent"  # the empty tree's root (else _fork_evidence proved the split view)
            try:  # consistent, or the tiles do not match the guard's own checkpoint (retried next round)
                root = merkle.tree_root(self._tiles(fetcher, mine.size), theirs.size)
            except Exception as exc:
                log.debug("gossip with witness %s: the log's tiles are unreachable: %s", name, exc)
                return "later"
            return "consistent" if root == theirs.root else "later"
        why = (
            f"log-continuity: witness {name} holds the log's checkpoint {theirs.size}, which is not the "
            f"{theirs.size}-entry prefix of this guard's checkpoint {mine.size} (split view)"
        )
        self._split_view(why, evidence)
        return "split-view"


#: A witness's checkpoint is a signed note: at most this large (signed-note, fiat.tlog.note).
GOSSIP_MAX_BYTES = note.MAX_NOTE_SIZE
#: The longest one gossip request to one witness may take, however it dribbles its answer.
GOSSIP_DEADLINE = 5.0


def get_bounded(
    client: httpx.Client, url: str, limit: int = GOSSIP_MAX_BYTES, deadline_s: float = GOSSIP_DEADLINE
) -> tuple[int, bytes]:
    """``GET url``: (status, body), refused (:class:`FiatError`) past ``limit`` bytes or ``deadline_s``
    seconds in all — the client's timeouts bound each read, not the whole answer."""
    deadline = time.monotonic() + deadline_s
    with client.stream("GET", url) as r:
        body = bytearray()
        for chunk in r.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise FiatError(f"{url} answered more than {limit} bytes")
            if time.monotonic() > deadline:
                raise FiatError(f"{url} took more than {deadline_s:g} s to answer")
        return r.status_code, bytes(body)


def write_proof(directory: Path, proof: split_views.SplitViewProof, now: float) -> Path:
    """Write ``proof`` to ``directory/<UTC time>-<origin hash[:12]>.json``, mode 0600, never over another."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    base = f"{stamp}-{origin_hash(proof.origin)[:12]}"
    data = proof.encode()
    for n in range(1000):
        path = directory / (f"{base}.json" if n == 0 else f"{base}-{n}.json")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return path
    raise OSError(f"no free file name for a split-view proof in {directory}")
