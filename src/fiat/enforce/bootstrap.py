"""The one set-up of a governed execution, shared by ``fiat run`` and ``fiat.governed``.

:func:`open_session` reads the guard's settings from the home's configuration,
loads the runtime key and the trust root, joins the shared trust subscription and
builds the :class:`~fiat.enforce.guard.Session`; :meth:`Bootstrap.establish` waits for
a fresh trust state and establishes the permit. :class:`Heartbeat` is the one
re-verification loop: every heartbeat and every pushed trust state runs
``Session.check()`` until the caller says stop or a check halts, and pokes the
receipt spool's :class:`~fiat.enforce.spool.Flusher` after every successful check (the
authority is reachable: receipts spooled while it was not are uploaded in the background).
:meth:`Bootstrap.deliver` spools a signed receipt durably, then uploads it within
``runtime.receipt_upload_s``.

:class:`Governor` is the set-up shared by many executions of one long-lived runtime (the MCP
gateway, :mod:`fiat.mcp`): one runtime key, one authority client, one trust subscription, one
spool and one measurer; :meth:`Governor.session` makes each execution's :class:`Bootstrap`,
whose ``release()`` then leaves the shared parts open (``Governor.release()`` closes them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from fiat.api.client import AuthorityClient, ClientError
from fiat.config import Config, authority_url
from fiat.enforce.clock import SteadyClock
from fiat.enforce.guard import GuardSettings, Halt, NotEstablished, Runtime, Session
from fiat.enforce.spool import Flusher, ReceiptSpool, SpoolError
from fiat.enforce.trust import TrustMonitor
from fiat.establish.measure import Measurer, default_measurer
from fiat.formats.dsse import Envelope
from fiat.home import keyring, trust_root
from fiat.verify.trust_root import TrustRoot

#: Where a guard writes the split-view proofs it finds, under the home (:mod:`fiat.enforce.trust`).
SPLIT_VIEWS_DIR = "split-views"


def guard_settings(cfg: Config) -> GuardSettings:
    """The guard's timings from ``[runtime]`` in ``fiat.toml``."""
    return GuardSettings(
        heartbeat=cfg.runtime.heartbeat_ms / 1000,
        staleness=cfg.runtime.staleness_ms / 1000,
        grace=cfg.runtime.halt_grace_ms / 1000,
        approval_wait=cfg.runtime.approval_wait_s,
        require_witnessed=cfg.runtime.require_witnessed,
        witness_freshness=cfg.runtime.witness_freshness_ms / 1000,
        gossip_interval=cfg.runtime.gossip_interval_ms / 1000,
    )


@dataclass(frozen=True)
class Delivery:
    """Where a signed receipt went: logged at ``index``, or waiting in the spool at ``spooled``
    (``error`` says why it is not logged yet)."""

    index: int | None
    spooled: Path | None = None
    error: str | None = None


@dataclass
class Bootstrap:
    """A session with the client and the trust subscription it holds; release them once."""

    session: Session
    client: AuthorityClient
    monitor: TrustMonitor
    url: str
    spool: ReceiptSpool
    upload_s: float
    flusher: Flusher
    #: False for a session of a :class:`Governor`: ``release()`` leaves the client and subscription open.
    owned: bool = True

    @property
    def settings(self) -> GuardSettings:
        return self.session.settings

    def establish(self) -> dict[str, Any]:
        """Wait (bounded by the staleness bound) for a fresh trust state, then establish the permit."""
        staleness = self.settings.staleness
        if not self.monitor.wait_fresh(staleness):
            snap = self.monitor.snapshot()
            why = snap.crypto_failure or snap.continuity_failure or snap.last_error
            raise NotEstablished(
                "trust-fresh",
                f"no valid trust state from {self.url} within {staleness:.1f} s" + (f": {why}" if why else ""),
            )
        decision = self.session.establish()
        self.flusher.poke()  # the authority answers: upload what earlier runs left in the spool
        return decision

    def deliver(self, envelope: Envelope, evidence: Path | None = None) -> Delivery:
        """Spool the signed receipt durably, then upload it within ``runtime.receipt_upload_s``.

        A background flush of older receipts is waited for first, for at most half the bound,
        so that the whole delivery stays within ``upload_s`` (were it cut short, nothing is lost:
        a spooled receipt is only removed once logged, and uploading again is idempotent).
        Should the spool itself be unwritable, the receipt is still uploaded directly.
        """
        started = time.monotonic()
        self.flusher.join(self.upload_s / 2)
        budget = max(self.upload_s - (time.monotonic() - started), self.upload_s / 2)
        jti = self.session.permit_id
        try:
            entry = self.spool.put(envelope.to_json(), jti, self.url, evidence)
        except SpoolError as exc:
            try:
                index = int(self.client.receipt(envelope.to_json(), timeout=max(budget, 0.05))["logIndex"])
            except ClientError as upload:
                return Delivery(None, None, f"{exc}; and it could not be uploaded: {upload}")
            return Delivery(index)
        done = self.spool.upload(entry, budget, lock=False)
        if done.index is not None:
            return Delivery(done.index)
        return Delivery(None, entry.path, done.error)

    def release(self) -> None:
        if self.owned:
            self.monitor.release()
            self.client.close()


def open_session(
    cfg: Config,
    *,
    argv: Sequence[str],
    cwd: str,
    principal: str,
    action: str,
    resource: str,
    context: dict[str, Any],
    parent: str | None = None,
    url: str | None = None,
    settings: GuardSettings | None = None,
    scope: list[dict[str, str]] | None = None,
) -> Bootstrap:
    """Build the session for one governed execution of ``argv`` in ``cwd``: a :class:`Governor` of
    its own, whose client and trust subscription the session owns (``release()`` closes them)."""
    governor = Governor.open(cfg, argv=argv, cwd=cwd, url=url, settings=settings)
    try:
        boot = governor.session(
            principal=principal, action=action, resource=resource, context=context, parent=parent, scope=scope
        )
    except BaseException:  # e.g. a malformed principal: nothing may stay open
        governor.release()
        raise
    # DPoP proofs are dated on the session's steady clock, as every other time it writes.
    governor.client.clock = boot.session.now
    boot.owned = True
    return boot


@dataclass
class Governor:
    """What every execution of one long-lived runtime shares (see the module docstring)."""

    cfg: Config
    client: AuthorityClient
    monitor: TrustMonitor
    url: str
    runtime: Runtime
    root: TrustRoot
    measurer: Measurer
    spool: ReceiptSpool
    flusher: Flusher
    settings: GuardSettings

    @classmethod
    def open(
        cls,
        cfg: Config,
        *,
        argv: Sequence[str],
        cwd: str,
        url: str | None = None,
        settings: GuardSettings | None = None,
    ) -> Governor:
        """Load the runtime key and trust root, join the trust subscription (measuring as for ``argv``)."""
        settings = settings or guard_settings(cfg)
        url = authority_url(cfg, url)
        rec, key = keyring(cfg).signing_key("runtime", cfg.runtime.name or None)
        root = trust_root(cfg)  # its witness quorum is log.witness_quorum, as the authority's trust root
        measurer = default_measurer(list(argv), cwd, cfg.runtime.files, cfg.runtime.env_allowlist)
        client = AuthorityClient(url)
        spool = ReceiptSpool(cfg.home)
        try:
            monitor = TrustMonitor.shared(
                url,
                root,
                runtime_kid=rec.kid,
                spool_backlog=lambda: len(spool.pending(url)),
                proof_dir=cfg.home / SPLIT_VIEWS_DIR,
                gossip_interval=settings.gossip_interval,
            )
        except BaseException:
            client.close()
            raise
        # DPoP proofs are dated on a steady clock (fiat.enforce.guard, "Time"), shared by the sessions.
        client.clock = SteadyClock(time.time, time.monotonic).now
        flusher = Flusher(spool, url, cfg.runtime.receipt_upload_s, runtime_key=key)
        return cls(cfg, client, monitor, url, Runtime(rec.kid, key), root, measurer, spool, flusher, settings)

    def session(
        self,
        *,
        principal: str,
        action: str,
        resource: str,
        context: dict[str, Any],
        parent: str | None = None,
        approval_id: str | None = None,
        scope: list[dict[str, str]] | None = None,
    ) -> Bootstrap:
        """One execution's session on the shared parts (its ``release()`` closes nothing shared)."""
        session = Session(
            self.client,
            self.root,
            self.runtime,
            self.monitor,
            self.measurer,
            principal,
            action,
            resource,
            context,
            parent,
            self.settings,
            approval_id=approval_id,
            scope=scope,
        )
        upload_s = self.cfg.runtime.receipt_upload_s
        return Bootstrap(session, self.client, self.monitor, self.url, self.spool, upload_s, self.flusher, owned=False)

    def release(self) -> None:
        self.monitor.release()
        self.client.close()


class Heartbeat:
    """The re-verification loop: a check on every heartbeat and on every pushed trust state."""

    def __init__(self, session: Session, monitor: TrustMonitor, flusher: Flusher | None = None) -> None:
        self.session, self.monitor, self.flusher = session, monitor, flusher
        #: Set by the trust subscription on every new state; callers set it to end a wait early.
        self.wake: threading.Event = monitor.subscribe()

    def run(self, stopped: Callable[[], bool]) -> Halt | None:
        """Check until ``stopped()`` or a check halts; returns that halt, or ``None``."""
        while not stopped():
            self.wake.wait(self.session.heartbeat)
            self.wake.clear()
            if stopped():
                return None
            try:
                self.session.check()
            except Halt as halt:
                return halt
            if self.flusher is not None:
                self.flusher.poke()  # trust is fresh, so the authority is back: flush the spool
        return None

    def close(self) -> None:
        self.monitor.unsubscribe(self.wake)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
