"""Shared test set-up. Tests are grouped by the package they mainly test (tests/tlog, tests/verify, ...).

The shared helpers live in ``tests/support`` (importable as ``support``: ``tests`` is on
``pythonpath`` in pyproject.toml, and test modules are imported with ``--import-mode=importlib``,
so two folders may hold test files of the same name).
"""

from __future__ import annotations

import pytest

# Assertions inside the shared helpers get pytest's detailed messages too.
pytest.register_assert_rewrite("support")
