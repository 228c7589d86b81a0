"""Helpers shared by the tests (``tests/`` is on ``sys.path``, see ``[tool.pytest.ini_options]``).

* :mod:`support.processes` — the ``fiat`` CLI in a child process, free ports, ``FiatServer``;
* :mod:`support.evidence` — real homes and execution bundles made in-process;
* :mod:`support.reference_merkle` — an in-memory RFC 6962 tree to check proofs against;
* ``support/workers/`` — scripts that tests start as child processes (crash and load workers).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "policies"
WORKERS = Path(__file__).resolve().parent / "workers"
