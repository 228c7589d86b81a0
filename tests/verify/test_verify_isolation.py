"""``fiat.verify`` needs nothing but ``cryptography``: no web stack, no database, no JWT or JCS package.

A relying party verifies offline with the smallest install. The check runs in a
child interpreter (``python -I``) whose import system refuses every module Fiat's
other layers use; it imports ``fiat.verify``, parses a real bundle and trust root
written by this process, and verifies them (and a tampered and a malformed bundle,
so the failure paths run too).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.evidence import make_execution

BLOCKED = (
    "starlette",
    "fastapi",
    "uvicorn",
    "httpx",
    "jwt",
    "rfc8785",
    "typer",
    "rich",
    "click",
    "sqlite3",
    "_sqlite3",
    "psycopg",
    "pydantic",
    "cedarpy",
    "securesystemslib",
    "anyio",
)

CHILD = r"""
import importlib.abc
import json
import sys

BLOCKED = tuple(json.loads(sys.argv[1]))
attempts = []


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            attempts.append(name)
            raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
        return None


sys.meta_path.insert(0, Block())
before = set(sys.modules)

from fiat.errors import MalformedError
from fiat.verify import Bundle, TrustRoot, verify

bundle_bytes, root_bytes = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
root = TrustRoot.parse(root_bytes)
result = verify(Bundle.parse(bundle_bytes), root)

doc = json.loads(bundle_bytes)
del doc["statements"][-1]  # the receipt: verification must fail at a step, not crash
tampered = verify(Bundle.parse(json.dumps(doc).encode()), root)
try:
    Bundle.parse(bundle_bytes[: len(bundle_bytes) // 2])
    malformed = None
except MalformedError as exc:
    malformed = str(exc)

loaded = set(sys.modules) - before
print(json.dumps({
    "verified": result.verified,
    "steps": [[s.name, s.status] for s in result.steps],
    "tamperedFailedStep": tampered.failed.name if tampered.failed else None,
    "malformed": malformed,
    "attempts": attempts,
    "blockedLoaded": sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED)),
    "thirdParty": sorted({m.split(".")[0] for m in loaded} - set(sys.stdlib_module_names)),
    "fiat": sorted(m for m in sys.modules if m == "fiat" or m.startswith("fiat.")),
}))
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("isolation")
    ex = make_execution(tmp / "home")
    bundle, root = tmp / "bundle.json", tmp / "trust-root.json"
    bundle.write_text(json.dumps(ex.bundle_json()), encoding="utf-8")
    root.write_text(json.dumps(ex.trust_root().to_json()), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, json.dumps(BLOCKED), str(bundle), str(root)],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_verifies_a_real_bundle_with_the_other_layers_blocked(report: dict[str, Any]) -> None:
    assert report["verified"] is True, report["steps"]
    assert all(status == "pass" for _, status in report["steps"])


def test_failure_paths_need_nothing_more(report: dict[str, Any]) -> None:
    assert report["tamperedFailedStep"] == "receipt"
    assert report["malformed"] is not None and report["malformed"].startswith("malformed bundle")


def test_no_blocked_module_is_loaded_or_even_tried(report: dict[str, Any]) -> None:
    assert report["blockedLoaded"] == []
    assert report["attempts"] == []


def test_only_cryptography_beyond_the_standard_library(report: dict[str, Any]) -> None:
    # cryptography's own native pieces (_cffi_backend, _openssl) come with it.
    assert set(report["thirdParty"]) <= {"fiat", "cryptography", "_cffi_backend", "_openssl"}, report["thirdParty"]
    assert "cryptography" in report["thirdParty"]


def test_only_the_verifier_and_pure_protocol_modules_load(report: dict[str, Any]) -> None:
    for name in report["fiat"]:
        assert name in ("fiat", "fiat.errors", "fiat.verify", "fiat.formats", "fiat.tlog") or name.startswith(
            ("fiat.verify.", "fiat.formats.", "fiat.tlog.")
        ), name
    for heavy in ("fiat.prove", "fiat.formats.canonical", "fiat.persist", "fiat.home", "fiat.authorize"):
        assert heavy not in report["fiat"]


def test_the_blocker_works(tmp_path: Path) -> None:
    """The child's finder really refuses the blocked modules (they are installed here)."""
    script = CHILD.split("before = set(sys.modules)")[0] + (
        "import importlib\n"
        "for name in ('typer', 'sqlite3', 'jwt', 'rich.console'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    raise SystemExit(f'{name} was importable')\n"
        "print(json.dumps(attempts))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script, json.dumps(BLOCKED)],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout) == ["typer", "sqlite3", "jwt", "rich"]
