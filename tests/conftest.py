"""Shared test set-up. The tests are grouped by the package they mainly test:

* ``tlog/`` — Merkle trees, signed notes, the C2SP/RFC conformance vectors;
* ``verify/`` — the offline verifier: tamper corpus, hostile input, import isolation;
* ``authorize/`` — the authority's decision hot path, several authorities over one home;
* ``enforce/`` — the runtime guard (``fiat run``, ``fiat.governed``) against a real server;
* ``persist/`` — storage and crash safety;
* ``api/`` — the HTTP API: the authority's routes, the log's tile routes, hostile requests;
* ``cli/`` — the command line: ``fiat`` commands, policies, keys, ``fiat demo``;
* ``bench/`` — the benchmarks' own MCP servers (echo upstream, bare hop) and a quick real ``fiat bench mcp``;
* ``interop/`` — other implementations (Python packages; Go's sumdb/note and tlog in ``interop/go``);
* ``project/`` — the tree itself: the import graph, the executable documentation.

The shared helpers live in ``tests/support`` and are imported as ``support`` (``tests`` is on
``pythonpath`` in pyproject.toml): ``support.processes`` runs the ``fiat`` CLI in a child
process and starts ``fiat serve`` / ``fiat log serve`` (``FiatServer``); ``support.evidence``
makes real homes and bundles. Test modules are imported with ``--import-mode=importlib``, so
two folders may hold test files of the same name.
"""

from __future__ import annotations

import pytest

# Assertions inside the shared helpers get pytest's detailed messages too.
pytest.register_assert_rewrite("support")


@pytest.fixture
def pg_dsn(request: pytest.FixtureRequest) -> str:
    """A new, empty database on the suite's real PostgreSQL server (tests/support/postgres.py)."""
    from support.postgres import new_database

    return new_database(request.node.name[:30])
