"""Revocations and single use: what steps 1, 4 and 5 of the decision walk refuse.

Step 1 (``runtime``) denies a revoked runtime key, step 4 (``lineage``) a revoked parent
permit, step 5 (``revocation``) a revoked principal (the request's, or any of its delegation
chain's: a principal revocation covers every permit issued to act for it). A revocation is a signed, logged
statement with the next revocation epoch; the set of revocations is held in memory and
re-read from the store only when the stored epoch moves (the epoch is re-read at most every
50 ms: another process may revoke through the same store). :meth:`Revocations.consume`
uses a single-use permit once, for the runtime it is bound to (``cnf``).

A permit revocation covers a whole execution (docs/formats.md, "Renewal and revocation"): the
permit, every permit that renews it (transitively) and every lineage descendant of any of
them. :meth:`Revocations.revoked_ancestor` answers whether a permit is covered (its renewal
chain and lineage walked up); the trust state lists each covered permit
(:func:`fiat.authorize.trust_state.sign_trust_state`); :meth:`Revocations.covering` finds the
revocations that belong in a permit's bundle.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fiat.authorize.names import entity_uid
from fiat.authorize.signing import AuthorityKeys
from fiat.errors import AlreadyConsumedError, AuthorizationError, MalformedError, MalformedRequestError
from fiat.persist.protocols import AuthorityStore
from fiat.prove import evidence as ev

log = logging.getLogger("fiat.authority")


def principal_key(principal: str) -> str:
    """The one spelling of a principal used for revocations (its Cedar entity UID)."""
    return entity_uid(principal, "principal")


#: Seconds a permit revocation stays in the trust state after the last permit it covers expired
#: (clock slack between authority and guards).
REVOCATION_SLACK = 60.0


def covered_reason(jti: str, revoked: str) -> str:
    """Why ``jti`` may not be used, renewed or extended: the revocation of ``revoked`` covers it."""
    if revoked == jti:
        return f"permit {jti} is revoked"
    return f"permit {jti} is revoked: the revocation of {revoked} covers its renewal chain and lineage"


@dataclass(eq=False)
class Revocations:
    """Revoke, ask whether something is revoked, consume a single-use permit."""

    store: AuthorityStore
    recorder: ev.EvidenceRecorder
    keys: AuthorityKeys
    clock: Callable[[], float]
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _revoke_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _revoked: frozenset[tuple[str, str]] = field(default=frozenset(), init=False, repr=False)
    _revoked_epoch: int = field(default=-1, init=False, repr=False)
    _revoked_checked: float = field(default=0.0, init=False, repr=False)

    def revoke(self, kind: str, target: str, reason: str) -> tuple[int, int]:
        if kind not in ("permit", "principal", "runtime"):
            raise MalformedRequestError("revoke a permit, a principal or a runtime")
        if not target or not reason:
            raise MalformedRequestError("a revocation needs a target and a reason")
        if kind == "principal":
            try:
                target = principal_key(target)
            except MalformedError as exc:
                raise MalformedRequestError(str(exc)) from exc
        with self._revoke_lock:  # the signed epoch is the stored epoch
            now = self.clock()
            epoch = self.store.revocation_epoch() + 1
            statement = ev.revocation_statement(kind=kind, target=target, reason=reason, epoch=epoch, at=now)
            index = self.keys.record(self.recorder, statement, target if kind == "permit" else None)
            # A revoked permit stops mattering once it, and every permit the revocation covers, would
            # have expired anyway (plus clock slack); unknown permit ids keep their row for good.
            covered = self.store.covered([target]) if kind == "permit" else {}
            expires = max(covered.values()) + REVOCATION_SLACK if covered else None
            stored = self.store.add_revocation(kind, target, reason, now, index, expires)
        if stored != epoch:
            log.error("revocation epoch %d was stored as %d (another writer?)", epoch, stored)
        self._revoked_checked = 0.0  # effective immediately for this authority's next decision
        return stored, index

    def consume(self, jti: str, runtime_kid: str) -> None:
        """Use a single-use permit once; the runtime proving ``cnf`` calls this before starting."""
        record = self.recorder.index.permit(jti)
        if record is None:
            raise AuthorizationError(f"no permit {jti!r} was issued here")
        if record.runtime != runtime_kid:
            raise AuthorizationError("only the runtime the permit is bound to (cnf) can use it")
        revoked = self.revoked_ancestor(jti)
        if revoked is not None:
            raise AuthorizationError(covered_reason(jti, revoked))
        for who in self.chain_principals(jti):
            if self.is_revoked("principal", principal_key(who)):
                raise AuthorizationError(f"principal {who} is revoked")
        if self.is_revoked("runtime", record.runtime):
            raise AuthorizationError(f"runtime {record.runtime} is revoked")
        if record.exp < self.clock():
            raise AuthorizationError(f"permit {jti} has expired")
        if not self.store.consume(jti, self.clock()):
            raise AlreadyConsumedError(f"permit {jti} was already used (single use)")

    def is_revoked(self, kind: str, target: str) -> bool:
        """Revocations are held in memory and refreshed from storage whenever its epoch moves."""
        return (kind, target) in self._revoked_now()

    def revoked_ancestor(self, jti: str) -> str | None:
        """The revoked permit whose revocation covers ``jti`` (itself, a permit it renews, a lineage
        ancestor, or one those renew), or None. The walk reads the store only if any permit is revoked."""
        revoked = self._revoked_now()
        if not any(kind == "permit" for kind, _ in revoked):
            return None
        for up in self.store.ancestry(jti):
            if ("permit", up) in revoked:
                return up
        return None

    def covering(self, jti: str) -> list[int]:
        """The log indexes of every revocation that covers ``jti``: of its renewal chain and lineage
        ancestors, of its principal and of its runtime — what its evidence bundle must carry so
        that the verifier's receipt rule can apply them (docs/formats.md, "Renewal and revocation")."""
        record = self.recorder.index.permit(jti)
        if record is None:
            return []
        targets = [("permit", up) for up in self.store.ancestry(jti)]
        targets.append(("runtime", record.runtime))
        for who in self.chain_principals(jti):
            with contextlib.suppress(MalformedError):  # a principal that is no entity name cannot be revoked
                targets.append(("principal", principal_key(who)))
        return self.store.revocation_log_indexes(targets)

    def chain_principals(self, jti: str) -> list[str]:
        """The principals of ``jti``'s delegation chain (its own first, then each lineage ancestor's,
        distinct): a revocation of any of them covers the permit (docs/formats.md, "Delegation")."""
        out: list[str] = []
        for up in (jti, *self.store.ancestry(jti)):
            record = self.recorder.index.permit(up)
            if record is not None and record.principal not in out:
                out.append(record.principal)
        return out

    def _revoked_now(self) -> frozenset[tuple[str, str]]:
        epoch = self.store.revocation_epoch() if self._revocations_stale() else self._revoked_epoch
        if epoch != self._revoked_epoch:
            rows = self.store.revocations_since(0)
            with self._lock:
                self._revoked = frozenset((r.kind, r.target) for r in rows)
                self._revoked_epoch = epoch
        return self._revoked

    def _revocations_stale(self) -> bool:
        """Re-read the epoch at most every 50 ms (another process may revoke through the same store)."""
        now = time.monotonic()
        if now - self._revoked_checked < 0.05:
            return False
        self._revoked_checked = now
        return True
