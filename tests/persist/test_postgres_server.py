"""The suite's own PostgreSQL server (tests/support/postgres.py): a real server, not run as root,
that gives every test a database of its own."""

from __future__ import annotations

import os

import psycopg

from fiat.bench.pgserver import SERVER_USER


def test_the_server_is_real_and_runs_unprivileged(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        version = int(conn.execute("SHOW server_version_num").fetchone()[0])
        data = conn.execute("SHOW data_directory").fetchone()[0]
        fsync = conn.execute("SHOW fsync").fetchone()[0]
    assert version >= 150000
    assert fsync == "on"  # PostgreSQL's durable defaults, not a tuned-down test server
    owner = os.stat(data).st_uid
    assert owner != 0  # PostgreSQL refuses root; the data directory belongs to the server's user
    if os.geteuid() == 0:
        import pwd

        assert pwd.getpwuid(owner).pw_name == SERVER_USER


def test_each_test_gets_an_empty_database_of_its_own(pg_dsn: str) -> None:
    from support.postgres import new_database

    other = new_database("other")
    assert other != pg_dsn
    with psycopg.connect(pg_dsn) as a, psycopg.connect(other) as b:
        a.execute("CREATE TABLE t (x int)")
        a.commit()
        tables = b.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    assert tables == 0
