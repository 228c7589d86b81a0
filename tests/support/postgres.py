"""The suite's PostgreSQL server: one real server per test process, a new database per test.

:func:`server` starts it on first use (``initdb`` + ``pg_ctl`` from the machine's PostgreSQL
binaries, as an unprivileged user when the tests run as root: :mod:`fiat.bench.pgserver`)
and stops it when the process exits. Where no binaries are installed, the tests that need
it are skipped with the reason (install ``postgresql-15``: ``scripts/system-deps.sh``).
"""

from __future__ import annotations

import atexit

import pytest

from fiat.bench.pgserver import PostgresServer, PostgresUnavailable

_server: PostgresServer | None = None


def server() -> PostgresServer:
    """This test process's PostgreSQL server (started on first use); skips the test without binaries."""
    global _server
    if _server is None:
        try:
            started = PostgresServer().start()
        except PostgresUnavailable as exc:
            pytest.skip(str(exc))
        atexit.register(started.stop)
        _server = started
    return _server


def new_database(prefix: str = "fiat") -> str:
    """A new, empty database on this process's server; its connection string."""
    return server().create_database(prefix)
