"""The import graph keeps its promises (ARCHITECTURE.md).

* No cycle between Fiat's packages.
* Pure protocol code (``fiat.formats``, ``fiat.tlog``) and the offline verifier
  (``fiat.verify``) import no producer: only each other, ``fiat.errors``, the
  standard library and ``cryptography`` (``fiat.formats.canonical`` alone may use
  ``orjson``; the verifier never imports it).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

from support import REPO

SRC = REPO / "src" / "fiat"

PURE = {"formats": {"errors"}, "tlog": {"errors"}, "verify": {"errors", "formats", "tlog"}}


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py") if len(rel) > 1 or rel[0] != "__init__.py" else "fiat"


def _imports(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        me = _package_of(path)
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] == "fiat" and len(parts) > 1 and parts[1] != me:
                edges[me].add(parts[1])
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_cycle_between_packages() -> None:
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_pure_packages_import_no_producer() -> None:
    edges = _graph()
    for package, allowed in PURE.items():
        assert edges.get(package, set()) <= allowed, (package, edges.get(package))


def test_pure_packages_use_only_the_standard_library_and_cryptography() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for package in PURE:
        for path in (SRC / package).rglob("*.py"):
            for module in _imports(path):
                top = module.split(".")[0]
                if top in stdlib or top in ("fiat", "cryptography"):
                    continue
                assert (package, path.name, top) == ("formats", "canonical.py", "orjson"), (path, module)
    verifier_modules = {m for p in (SRC / "verify").rglob("*.py") for m in _imports(p)}
    assert "fiat.formats.canonical" not in verifier_modules


def test_only_the_edges_import_the_http_layer() -> None:
    """``fiat.api`` (HTTP) is an edge: the CLI, the guard (its client), the MCP gateway (the same
    client), the bench and the demo import it; ``fiat.api.mcp`` imports nothing of ``fiat.mcp``."""
    importers = {package for package, imports in _graph().items() if "api" in imports}
    assert importers <= {"cli", "enforce", "mcp", "bench", "demo"}, importers
    assert "mcp" not in _graph().get("api", set())
