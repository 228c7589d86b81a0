"""The lineage explorer's store queries on a real SQLite file: permits by principal, id and issue
time; children; a permit's whole connected lineage (up to its root, then every descendant, across
renewals); renewals; and schema 5's migration, which fills ``permits.iat`` from the log's entries."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from fiat.persist.records import PermitRecord
from fiat.persist.sqlite import SCHEMA_VERSION, SQLiteAuthorityStore, SQLiteEvidenceIndex


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SQLiteEvidenceIndex, SQLiteAuthorityStore]]:
    path = tmp_path / "fiat.db"
    index, store = SQLiteEvidenceIndex(path), SQLiteAuthorityStore(path)
    try:
        yield index, store
    finally:
        index.close()
        store.close()


def permit(jti: str, parent: str | None, at: int, principal: str = "agent:a", depth: int = 0) -> PermitRecord:
    return PermitRecord(
        jti, parent, b'{"action":"shell:run"}', at, principal, "kid-1", depth, 2e9, 1_700_000_000.0 + at
    )


def three_generations(index: SQLiteEvidenceIndex, store: SQLiteAuthorityStore) -> None:
    """root → child → grandchild; the child renewed (child → child2, whose child is the grandchild);
    an unrelated permit of another principal."""
    for p in (
        permit("root", None, 0),
        permit("child", "root", 1, depth=1),
        permit("child2", "root", 2, depth=1),
        permit("grand", "child2", 3, depth=2),
        permit("other", None, 4, principal="agent:b"),
    ):
        index.record(p, [])
    assert store.claim_renewal("child", "child2", 1_700_000_002.0)


def test_find_permits_filters_by_principal_id_and_time_newest_first(
    stores: tuple[SQLiteEvidenceIndex, SQLiteAuthorityStore],
) -> None:
    index, store = stores
    three_generations(index, store)
    ids = lambda found: [p.jti for p in found]  # noqa: E731
    assert ids(index.find_permits(principal="agent:a")) == ["grand", "child2", "child", "root"]
    assert ids(index.find_permits(principal="agent:a", limit=2)) == ["grand", "child2"]
    assert ids(index.find_permits(jti="other")) == ["other"]
    assert ids(index.find_permits(jti="other", principal="agent:a")) == []
    assert ids(index.find_permits(since=1_700_000_001.0, until=1_700_000_003.0)) == ["grand", "child2", "child"]
    assert ids(index.find_permits(principal="agent:a", since=1_700_000_003.5)) == []
    assert ids(index.find_permits(limit=0)) == []
    assert index.find_permits(jti="root")[0].iat == 1_700_000_000.0


def test_a_principal_that_is_sql_finds_nothing(stores: tuple[SQLiteEvidenceIndex, SQLiteAuthorityStore]) -> None:
    """Attack: the filters are bound parameters, never SQL text."""
    index, store = stores
    three_generations(index, store)
    assert index.find_permits(principal="agent:a' OR '1'='1") == []
    assert index.find_permits(jti="x') OR 1=1 --") == []
    assert index.lineage("root') OR 1=1 --") == []


def test_children_and_renewals(stores: tuple[SQLiteEvidenceIndex, SQLiteAuthorityStore]) -> None:
    index, store = stores
    three_generations(index, store)
    assert [p.jti for p in index.children("root")] == ["child", "child2"]
    assert [p.jti for p in index.children("child2")] == ["grand"]
    assert index.children("grand") == []
    assert index.renewals(["child2"]) == [("child", "child2")]
    assert index.renewals(["child"]) == [("child", "child2")]
    assert index.renewals(["root", "grand"]) == []


def test_lineage_from_any_member_is_the_whole_connected_chain(
    stores: tuple[SQLiteEvidenceIndex, SQLiteAuthorityStore],
) -> None:
    index, store = stores
    three_generations(index, store)
    for member in ("root", "child", "child2", "grand"):
        assert [p.jti for p in index.lineage(member)] == ["root", "child", "child2", "grand"], member
    assert [p.jti for p in index.lineage("other")] == ["other"]
    assert index.lineage("never-issued") == []
    assert len(index.lineage("grand", limit=2)) == 2


def test_a_parent_loop_ends_the_walk(stores: tuple[SQLiteEvidenceIndex, SQLiteAuthorityStore]) -> None:
    """A corrupt graph (a permit whose ancestor names it as parent) does not loop forever."""
    index, _ = stores
    index.record(permit("a", "b", 0), [])
    index.record(permit("b", "a", 1), [])
    assert sorted(p.jti for p in index.lineage("a")) == ["a", "b"]


def _token(claims: dict[str, object]) -> bytes:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(b'{}')}.{b64(json.dumps(claims).encode())}.sig".encode()


def test_a_version_4_database_gains_iat_from_each_permits_log_entry(tmp_path: Path) -> None:
    path = tmp_path / "fiat.db"
    SQLiteEvidenceIndex(path).close()  # today's layout, then taken back to version 4's
    db = sqlite3.connect(path)
    db.execute("DROP INDEX permits_iat")
    db.execute("DROP INDEX permits_principal_iat")
    db.execute("ALTER TABLE permits DROP COLUMN iat")
    db.execute("INSERT INTO log_entries VALUES (0, ?)", (_token({"jti": "p0", "iat": 1_700_000_123}),))
    db.execute("INSERT INTO log_entries VALUES (1, ?)", (b"not a token",))
    db.execute("INSERT INTO permits VALUES ('p0', NULL, X'7B7D', 0, 'agent:a', 'kid-1', 0, 2000000000.0)")
    db.execute("INSERT INTO permits VALUES ('p1', NULL, X'7B7D', 1, 'agent:a', 'kid-1', 0, 2000000000.0)")
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    index = SQLiteEvidenceIndex(path)
    try:
        assert index.permit("p0") == PermitRecord("p0", None, b"{}", 0, "agent:a", "kid-1", 0, 2e9, 1_700_000_123.0)
        p1 = index.permit("p1")
        assert p1 is not None and p1.iat is None  # an entry without a readable iat stays unknown
        assert [p.jti for p in index.find_permits(since=1_700_000_000.0)] == ["p0"]
    finally:
        index.close()
    db = sqlite3.connect(path)
    try:
        assert int(db.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION == 6
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"permits_iat", "permits_principal_iat"} <= names
        plan = " ".join(
            str(r[3])
            for r in db.execute(
                "EXPLAIN QUERY PLAN SELECT jti FROM permits WHERE principal = ? ORDER BY iat DESC", ("a",)
            )
        )
        assert "permits_principal_iat" in plan
    finally:
        db.close()
