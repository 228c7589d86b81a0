"""Helpers shared by the tests (``tests/`` is on ``sys.path``, see ``[tool.pytest.ini_options]``).

* :mod:`support.processes` — the ``fiat`` CLI in a child process, free ports, ``FiatServer``;
* :mod:`support.evidence` — real homes and execution bundles made in-process;
* :mod:`support.reference_merkle` — an in-memory RFC 6962 tree to check proofs against;
* ``support/workers/`` — scripts that tests start as child processes (crash and load workers).
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "policies"
WORKERS = Path(__file__).resolve().parent / "workers"


def copy_bundle(where: Path, name: str = "bundle") -> Path:
    """A copy of the example policy bundle at ``where/name`` (examples/policies is a link: copy its target)."""
    dst = where / name
    shutil.copytree(EXAMPLES.resolve(), dst)
    return dst


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` of a file with ``new``; ``old`` must be there."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path.name} no longer contains {old!r}; update this test"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
