"""The one place that builds Fiat's object graph from a home's configuration.

It reads ``storage.backend``, opens that backend's stores and passes them into the
constructors that need them: the :class:`~fiat.prove.log.TransparencyLog` (which owns
and closes its store), the :class:`~fiat.prove.evidence.EvidenceRecorder` and the
:class:`~fiat.authorize.authority.Authority`. Nothing else names a backend class, so
adding one (``fiat.persist.postgres``) is one entry in :data:`BACKENDS`.

Imports: anything below it (config, keyring, persist, prove, authorize); nothing imports
it but the entry points (``home.init_home``, the CLI, the server, the benchmarks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from fiat.config import Config, check_backend
from fiat.keys.keyring import KeyRing
from fiat.persist.protocols import AuthorityStore, EvidenceIndex, LogStore
from fiat.persist.sqlite import SQLiteAuthorityStore, SQLiteEvidenceIndex, SQLiteLogStore
from fiat.prove.evidence import EvidenceRecorder
from fiat.prove.log import TransparencyLog
from fiat.prove.witnessing import WitnessCollector, WitnessEndpoint
from fiat.tlog.checkpoint import SignedCheckpoint

if TYPE_CHECKING:  # the authority (Cedar, JWT) loads only for the commands that decide
    from fiat.authorize.authority import Authority


class Backend(Protocol):
    """Opens a home's stores on one storage backend."""

    def log_store(self, cfg: Config) -> LogStore: ...

    def evidence_index(self, cfg: Config) -> EvidenceIndex: ...

    def authority_store(self, cfg: Config) -> AuthorityStore: ...


class SQLiteBackend:
    """``storage.backend = "sqlite"``: every store in the one file ``storage.path``."""

    def log_store(self, cfg: Config) -> LogStore:
        s = cfg.storage
        return SQLiteLogStore(cfg.database_path, synchronous=s.synchronous, busy_timeout_ms=s.busy_timeout_ms)

    def evidence_index(self, cfg: Config) -> EvidenceIndex:
        return SQLiteEvidenceIndex(cfg.database_path, cfg.storage.busy_timeout_ms)

    def authority_store(self, cfg: Config) -> AuthorityStore:
        return SQLiteAuthorityStore(cfg.database_path, cfg.storage.busy_timeout_ms)


#: ``storage.backend`` → the backend it names (``fiat.config.STORAGE_BACKENDS`` lists the same names,
#: so a configuration naming no backend fails when it is loaded).
BACKENDS: Mapping[str, Backend] = {"sqlite": SQLiteBackend()}


def backend(cfg: Config) -> Backend:
    """The backend ``storage.backend`` names; a :class:`ConfigError` naming the valid ones otherwise."""
    check_backend(cfg.storage.backend)
    return BACKENDS[cfg.storage.backend]


def open_log(cfg: Config) -> TransparencyLog:
    """The home's transparency log over its log store, signing with the active log key."""
    store = backend(cfg).log_store(cfg)
    try:
        signer, retired = KeyRing(cfg.keys_dir).log_keys(cfg.log.origin, cfg.log_key_path)
        return TransparencyLog(
            store,
            signer,
            retired=retired,
            batch_max_entries=cfg.log.batch_max_entries,
            batch_linger=cfg.log.batch_linger_ms / 1000,
        )
    except BaseException:
        store.close()
        raise


def witness_endpoints(cfg: Config) -> list[WitnessEndpoint]:
    """The witnesses the log submits to: the keyring's witness keys valid now that carry a ``url``."""
    return [WitnessEndpoint(r.name, r.public_key, r.url) for r in KeyRing(cfg.keys_dir).active("witness") if r.url]


def open_witnessing(
    cfg: Config,
    transparency_log: TransparencyLog,
    on_witnessed: Callable[[SignedCheckpoint], None] | None = None,
) -> WitnessCollector | None:
    """The witness collector of the home's log (not started), or None when no witness key has a URL."""
    witnesses = witness_endpoints(cfg)
    if not witnesses:
        return None
    return WitnessCollector(
        transparency_log,
        witnesses,
        quorum=cfg.log.witness_quorum,
        timeout_s=cfg.log.witness_timeout_ms / 1000,
        interval_s=cfg.log.witness_interval_ms / 1000,
        on_witnessed=on_witnessed,
    )


def open_evidence(cfg: Config) -> EvidenceRecorder:
    """The log and the evidence index, as one recorder (closing it closes both)."""
    index = backend(cfg).evidence_index(cfg)
    try:
        recorder = EvidenceRecorder(open_log(cfg), index)
        # Witnesses configured: the server's collector stores what they cosign; bundles wait for it.
        recorder.log.witnessing = bool(witness_endpoints(cfg))
        recorder.witness_timeout = cfg.log.witness_timeout_ms / 1000
        return recorder
    except BaseException:
        index.close()
        raise


def open_authority_store(cfg: Config) -> AuthorityStore:
    """The authority's state alone (policy versions, approvals, revocations), e.g. for ``fiat policy history``."""
    return backend(cfg).authority_store(cfg)


def open_authority(
    cfg: Config, *, clock: Callable[[], float] = time.time, approval_timeout: float | None = None
) -> Authority:
    """The authority over the home's evidence recorder and authority store (closing it closes them)."""
    from fiat.authorize.authority import Authority

    store = open_authority_store(cfg)
    try:
        recorder = open_evidence(cfg)
    except BaseException:
        store.close()
        raise
    try:
        return Authority(cfg, recorder, store, clock=clock, approval_timeout=approval_timeout)
    except BaseException:
        recorder.close()
        store.close()
        raise
