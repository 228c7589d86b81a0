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
   size is a split view that halts guards.

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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from fiat import tls
from fiat.enforce.clock import SteadyClock
from fiat.errors import FiatError, MalformedError, VerificationError
from fiat.prove.audit import HttpFetcher
from fiat.tlog import merkle
from fiat.tlog.checkpoint import SignedCheckpoint, open_with_any
from fiat.tlog.tiles import Tile, TileHashSource
from fiat.verify.trust_root import TrustRoot
from fiat.verify.trust_state import KEY_VALIDITY_STEP, verify_trust_state

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

    @classmethod
    def shared(
        cls,
        url: str,
        root: TrustRoot,
        *,
        runtime_kid: str | None = None,
        spool_backlog: Callable[[], int] | None = None,
    ) -> TrustMonitor:
        """The process-wide monitor for ``url`` (many guards, one subscription); the first guard
        to name its runtime (``runtime_kid``, ``spool_backlog``) names the subscription."""
        with cls._shared_lock:
            monitor = cls._shared.get(url.rstrip("/"))
            if monitor is None or monitor._stop.is_set():
                monitor = cls(url, root)
                cls._shared[monitor.url] = monitor
            if monitor.runtime_kid is None and runtime_kid is not None:
                monitor.runtime_kid, monitor.spool_backlog = runtime_kid, spool_backlog
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
            return dataclasses.replace(self._snap, revocations=dict(self._snap.revocations))

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
        note = claims.get("checkpoint")
        if isinstance(note, str):
            try:
                checkpoint = open_with_any(note.encode("utf-8"), self._log_keys, self._log_limits)
            except (MalformedError, VerificationError) as exc:
                with self._lock:
                    self._snap.crypto_failure = f"log-checkpoint: {exc}"
                self._notify()
                return
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
                if new is None or old is None:
                    continue
                proven, problem = self._continuity(old, new, fetcher)
                with self._lock:
                    if problem is not None:
                        self._snap.split_view = problem
                    elif proven:
                        self._snap.checkpoint = new
                        if self._pending is new:
                            self._pending = None
                            self._snap.unproven_since = None
                    # not proven (tiles unreachable): retried; guards halt if it lasts past staleness
                if problem is not None:
                    self._notify()
                elif not proven:
                    self._stop.wait(0.2)
                    self._prove.set()
        finally:
            fetcher.close()

    def _continuity(
        self, old: SignedCheckpoint, new: SignedCheckpoint, fetcher: HttpFetcher
    ) -> tuple[bool | None, str | None]:
        """``log-continuity``: (True, None) if ``new`` extends ``old``; (False, why) if it cannot;
        (None, None) if it could not be proven yet (the tiles were unreachable)."""
        if new.size < old.size:
            return False, f"log-continuity: the log shrank from {old.size} to {new.size} entries (rollback)"
        if new.size == old.size:
            if new.root == old.root:
                return True, None
            return False, f"log-continuity: two roots for tree size {new.size}"
        try:

            def read(level: int, index: int, width: int) -> bytes:
                return fetcher.get(Tile(level, index, width).path())

            proof = merkle.consistency_proof(TileHashSource(read, new.size), old.size, new.size)
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except VerificationError as exc:
            return False, f"log-continuity: checkpoint {new.size} is not consistent with {old.size}: {exc.reason}"
        except Exception as exc:  # could not fetch: not proven yet; retried
            log.debug("consistency not yet provable: %s", exc)
            return None, None
        return True, None
