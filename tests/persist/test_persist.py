"""Storage: the schema version recorded in the database, old databases, the backend choice, closing,
and rows staged in a log batch.

Everything runs on real SQLite files in tmp_path, opened the way Fiat opens them (``fiat.wiring``).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from fiat.config import SETTINGS, STORAGE_BACKENDS, Config, load_config
from fiat.errors import ConfigError, StorageError
from fiat.home import init_home
from fiat.persist.protocols import LogWriter
from fiat.persist.records import ApprovalRecord, EvidenceLink, PermitRecord, PolicyVersion, Revocation, StoredPolicy
from fiat.persist.sqlite import SCHEMA_VERSION
from fiat.wiring import BACKENDS, backend, open_authority, open_authority_store, open_evidence, open_log

# The layout Fiat wrote before it recorded a schema version (user_version 0), statement for
# statement; ``revocations`` as it was before revocations could expire (no ``expires`` column).
PRE_VERSIONED = """
CREATE TABLE log_meta (id INTEGER PRIMARY KEY CHECK (id = 1), schema_version INTEGER NOT NULL,
    tree_size INTEGER NOT NULL, checkpoint BLOB);
CREATE TABLE log_entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE log_tiles (level INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (level, idx)) WITHOUT ROWID;
INSERT OR IGNORE INTO log_meta (id, schema_version, tree_size, checkpoint) VALUES (1, 1, 0, NULL);
CREATE TABLE evidence (jti TEXT NOT NULL, kind TEXT NOT NULL, log_index INTEGER NOT NULL,
    PRIMARY KEY (jti, log_index)) WITHOUT ROWID;
CREATE TABLE permits (jti TEXT PRIMARY KEY, parent TEXT, request BLOB NOT NULL, log_index INTEGER NOT NULL,
    principal TEXT NOT NULL, runtime TEXT NOT NULL, depth INTEGER NOT NULL, exp REAL NOT NULL);
CREATE TABLE policy_versions (version INTEGER PRIMARY KEY, digest TEXT NOT NULL, files TEXT NOT NULL,
    published_at REAL NOT NULL, log_index INTEGER NOT NULL);
CREATE TABLE approvals (id TEXT PRIMARY KEY, action_digest TEXT NOT NULL, request BLOB NOT NULL,
    policy_group TEXT NOT NULL, requested_at REAL NOT NULL, expires_at REAL NOT NULL, status TEXT NOT NULL,
    approver TEXT, statement_digest TEXT, log_index INTEGER);
CREATE TABLE revocations (epoch INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, target TEXT NOT NULL,
    reason TEXT NOT NULL, at REAL NOT NULL, log_index INTEGER NOT NULL);
CREATE TABLE consumed_permits (jti TEXT PRIMARY KEY, at REAL NOT NULL);
INSERT INTO permits VALUES ('p1', NULL, X'7B7D', 3, 'agent:a', 'kid-1', 0, 2000000000.0);
INSERT INTO evidence VALUES ('p1', 'permit', 3);
INSERT INTO evidence VALUES ('p1', 'decision', 4);
INSERT INTO policy_versions VALUES (1, 'd1', '{}', 1700000000.0, 0);
INSERT INTO approvals VALUES ('apr_1', 'ad', X'7B7D', 'ops', 1700000001.0, 1700000301.0, 'pending', NULL, NULL, NULL);
INSERT INTO revocations (kind, target, reason, at, log_index) VALUES ('runtime', 'kid-9', 'lost', 1700000002.0, 5);
"""


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Config]:
    for section, key in SETTINGS:
        monkeypatch.delenv(f"FIAT_{section.upper()}_{key.upper()}", raising=False)
    monkeypatch.delenv("FIAT_HOME", raising=False)
    init_home(tmp_path / "home", origin="persist.example/log")
    yield load_config(tmp_path / "home", require=True)


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_new_home_records_the_schema_version(cfg: Config) -> None:
    assert _user_version(cfg.database_path) == SCHEMA_VERSION == 6


def test_a_version_2_database_gains_the_dpop_replay_cache(cfg: Config) -> None:
    """Schema 3 stores the DPoP replay cache; a version-2 file (no ``dpop_proofs``) is brought up to date
    on open, and what it held stays."""
    db = sqlite3.connect(cfg.database_path)
    db.execute("DROP TABLE dpop_proofs")
    db.execute(
        "INSERT INTO approvals (id, action_digest, request, policy_group, requested_at, expires_at, status, runtime)"
        " VALUES ('apr_v2', 'ad', x'7b7d', 'ops', 1700000001.0, 4000000000.0, 'pending', 'kid-2')"
    )
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    store = open_authority_store(cfg)
    try:
        old = store.approval("apr_v2")
        assert old is not None and old.runtime == "kid-2"
        assert store.remember_proof("k1", 2000.0, 1000.0) is True
        assert store.remember_proof("k1", 2000.0, 1000.0) is False
    finally:
        store.close()
    assert _user_version(cfg.database_path) == SCHEMA_VERSION
    db = sqlite3.connect(cfg.database_path)
    try:
        assert db.execute("SELECT key, expires FROM dpop_proofs").fetchall() == [("k1", 2000.0)]
    finally:
        db.close()


def test_a_version_3_database_gains_the_renewals_table(cfg: Config) -> None:
    """Schema 4 records renewal chains (one successor per predecessor); a version-3 file is brought up to date."""
    db = sqlite3.connect(cfg.database_path)
    db.execute("DROP TABLE renewals")
    db.execute("DROP INDEX permits_parent")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    store = open_authority_store(cfg)
    try:
        assert store.claim_renewal("pmt_a", "pmt_b", 1.0) is True
        assert store.claim_renewal("pmt_a", "pmt_c", 2.0) is False  # the predecessor's one successor
        assert store.successor_of("pmt_a") == "pmt_b"
    finally:
        store.close()
    assert _user_version(cfg.database_path) == SCHEMA_VERSION
    db = sqlite3.connect(cfg.database_path)
    try:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'permits_parent'").fetchone()
    finally:
        db.close()


def test_the_replay_cache_inserts_once_forgets_expired_rows_and_is_shared(cfg: Config) -> None:
    """``remember_proof`` is one atomic insert-if-absent: of two stores (two processes' worth of
    connections) over one file only the first wins; an expired row counts as absent; pruning deletes
    exactly the expired rows."""
    a, b = open_authority_store(cfg), open_authority_store(cfg)
    try:
        assert a.remember_proof("p", expires=100.0, now=10.0) is True
        assert b.remember_proof("p", expires=100.0, now=50.0) is False  # live: a replay
        assert a.remember_proof("p", expires=100.0, now=99.0) is False
        assert b.remember_proof("p", expires=300.0, now=100.0) is True  # expired at 100: absent again
        assert a.remember_proof("q", expires=150.0, now=100.0) is True
        assert a.prune_proofs(now=200.0) == 1  # q; p now lives until 300
        assert b.remember_proof("q", expires=400.0, now=200.0) is True
        assert b.remember_proof("p", expires=400.0, now=299.0) is False
        assert a.prune_proofs(now=1000.0) == 2
    finally:
        a.close()
        b.close()


def test_a_version_1_database_gains_the_approvals_runtime_column(cfg: Config) -> None:
    """Schema 2 records which runtime asked for an approval; a version-1 file is brought up to date."""
    db = sqlite3.connect(cfg.database_path)
    db.execute("ALTER TABLE approvals DROP COLUMN runtime")
    db.execute(
        "INSERT INTO approvals (id, action_digest, request, policy_group, requested_at, expires_at, status)"
        " VALUES ('apr_old', 'ad', x'7b7d', 'ops', 1700000001.0, 4000000000.0, 'pending')"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    authority = open_authority(cfg)
    try:
        old = authority.store.approval("apr_old")
        assert old is not None and old.runtime is None
        assert authority.approval("apr_old")["runtime"] is None
    finally:
        authority.close()
    assert _user_version(cfg.database_path) == SCHEMA_VERSION
    db = sqlite3.connect(cfg.database_path)
    try:
        assert "runtime" in {row[1] for row in db.execute("PRAGMA table_info(approvals)")}
    finally:
        db.close()


def test_a_database_written_before_versions_were_recorded_opens_and_is_stamped(cfg: Config) -> None:
    cfg.database_path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(cfg.database_path) + suffix).unlink(missing_ok=True)
    old = sqlite3.connect(cfg.database_path)
    old.executescript(PRE_VERSIONED)
    old.close()
    assert _user_version(cfg.database_path) == 0

    authority = open_authority(cfg)  # log, evidence index and authority store, all through wiring
    try:
        assert authority.log.checkpoint().size == 0  # the empty old log gets its first checkpoint
        assert authority.recorder.index.permit("p1") == PermitRecord(
            "p1", None, b"{}", 3, "agent:a", "kid-1", 0, 2000000000.0
        )
        assert authority.recorder.index.entries("p1") == [
            EvidenceLink("p1", "permit", 3),
            EvidenceLink("p1", "decision", 4),
        ]
        store = authority.store
        assert store.latest_policy() == StoredPolicy(1, "d1", 1700000000.0, 0, "{}")
        assert store.policy_history() == [PolicyVersion(1, "d1", 1700000000.0, 0)]
        assert store.approval("apr_1") == ApprovalRecord("apr_1", "ad", b"{}", "ops", 1700000001.0, 1700000301.0)
        assert store.revocations_since(0) == [Revocation(1, "runtime", "kid-9", "lost", 1700000002.0)]
        assert store.add_revocation("permit", "p1", "leaked", 1700000003.0, 6, expires=2000000060.0) == 2
        assert [r.target for r in store.revocations_since(0, live_at=2000000100.0)] == ["kid-9"]
        assert authority.log.append(b"after the upgrade").index == 0
    finally:
        authority.close()
    assert _user_version(cfg.database_path) == SCHEMA_VERSION


def test_a_newer_schema_version_is_refused_and_left_alone(cfg: Config) -> None:
    db = sqlite3.connect(cfg.database_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    stores = backend(cfg)
    for open_store in (stores.log_store, stores.evidence_index, stores.authority_store):
        with pytest.raises(
            StorageError, match=rf"newer than the version {SCHEMA_VERSION} this Fiat knows.*Upgrade Fiat"
        ):
            open_store(cfg)
    with pytest.raises(StorageError, match="Upgrade Fiat"):
        open_log(cfg)
    assert _user_version(cfg.database_path) == SCHEMA_VERSION + 1


def test_a_file_that_is_not_a_database_is_refused(cfg: Config) -> None:
    cfg.database_path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(cfg.database_path) + suffix).unlink(missing_ok=True)
    cfg.database_path.write_bytes(os.urandom(4096))
    with pytest.raises(StorageError, match=r"fiat\.db"):
        open_log(cfg)


def test_an_unknown_backend_is_a_config_error_naming_the_valid_ones(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = r"storage.backend 'postgres' is not a storage backend; use one of: 'sqlite'"
    monkeypatch.setenv("FIAT_STORAGE_BACKEND", "postgres")
    with pytest.raises(ConfigError, match=message):
        load_config(cfg.home, require=True)  # when the configuration loads
    other = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, backend="postgres"))
    for opener in (open_log, open_evidence, open_authority_store, open_authority):
        with pytest.raises(ConfigError, match=message):
            opener(other)  # and whenever a configuration built some other way opens storage


def test_every_configurable_backend_can_be_built() -> None:
    assert sorted(BACKENDS) == sorted(STORAGE_BACKENDS)


def test_the_log_closes_its_store_and_closing_again_is_harmless(cfg: Config) -> None:
    log = open_log(cfg)
    log.append(b"one")
    log.close()
    with pytest.raises(StorageError, match="closed"):
        log.store.tree_size()
    log.close()
    log.store.close()
    recorder = open_evidence(cfg)
    recorder.close()
    recorder.close()
    authority = open_authority(cfg)
    authority.close()
    authority.close()
    store = open_authority_store(cfg)
    store.close()
    store.close()


def test_rows_staged_in_a_log_batch_commit_with_it_or_not_at_all(cfg: Config) -> None:
    approval = ApprovalRecord("apr_staged", "ad", b"{}", "ops", 1.0, 2.0)
    log = open_log(cfg)
    store = open_authority_store(cfg)
    try:

        def failing(writer: LogWriter, first: int) -> None:
            writer.stage(approval)
            raise RuntimeError("the batch fails after staging")

        with pytest.raises(RuntimeError, match="after staging"):
            log.append_many([b"lost"], sidecar=failing)
        assert log.checkpoint().size == 0
        assert store.approval("apr_staged") is None

        log.append_many([b"kept"], sidecar=lambda writer, first: writer.stage(approval))
        assert log.checkpoint().size == 1
        assert store.approval("apr_staged") == approval
    finally:
        log.close()
        store.close()
