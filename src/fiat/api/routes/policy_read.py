"""Public reads of the published policy versions: auditors need the text behind each digest.

* ``GET /v1/policies`` — ``{"versions": [{version, digest, time, logIndex}], "active": N}``,
  oldest first: every version ``fiat policy publish`` (or ``POST /v1/policies``, admin) stored,
  each with the log index of its signed policy statement;
* ``GET /v1/policies/diff?from=A&to=B`` — ``{"from": A, "to": B, "diff": "..."}``: a unified
  diff (Python's :mod:`difflib`, the ``diff -u`` format) of every file of version A against B;
* ``GET /v1/policies/{version}`` — ``{version, digest, time, logIndex, files: {name: text}}``:
  the Cedar files (and schema) of one version as they were published.

The bundle digest a decision names is the one in the logged policy statement; recomputing it
from these files is what ``fiat verify`` and an auditor do, not this read.
"""

from __future__ import annotations

import base64
import difflib
import json
from typing import Any

from fastapi import FastAPI, Query

from fiat.api.context import ApiContext
from fiat.api.problems import Problem, problem_responses
from fiat.persist.records import PolicyVersion, StoredPolicy


def _version(p: PolicyVersion) -> dict[str, Any]:
    return {"version": p.version, "digest": p.digest, "time": p.published_at, "logIndex": p.log_index}


def _files(p: StoredPolicy) -> dict[str, str]:
    """The version's files as text (a byte that is not UTF-8 shows as U+FFFD: a read, not the bytes)."""
    return {
        name: base64.b64decode(content).decode("utf-8", errors="replace")
        for name, content in sorted(json.loads(p.files).items())
    }


def install(app: FastAPI, ctx: ApiContext) -> None:
    store = ctx.authority.store

    def stored(version: int) -> StoredPolicy:
        p = store.policy(version) if 1 <= version < 2**63 else None
        if p is None:
            raise Problem(404, "Not Found", f"no policy version {version}; GET /v1/policies lists them")
        return p

    @app.get("/v1/policies", tags=["policies"])
    def versions() -> dict[str, Any]:
        history = store.policy_history()
        return {"versions": [_version(p) for p in history], "active": store.latest_policy_version()}

    # Registered before /v1/policies/{version}: "diff" is no version.
    @app.get("/v1/policies/diff", tags=["policies"], responses=problem_responses(400, 404))
    def diff(from_: int = Query(alias="from"), to: int = Query()) -> dict[str, Any]:
        a, b = _files(stored(from_)), _files(stored(to))
        lines: list[str] = []
        for name in sorted(set(a) | set(b)):
            lines.extend(
                difflib.unified_diff(
                    a.get(name, "").splitlines(keepends=True),
                    b.get(name, "").splitlines(keepends=True),
                    fromfile=f"v{from_}/{name}" if name in a else "/dev/null",
                    tofile=f"v{to}/{name}" if name in b else "/dev/null",
                )
            )
        text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
        return {"from": from_, "to": to, "diff": text}

    @app.get("/v1/policies/{version}", tags=["policies"], responses=problem_responses(400, 404))
    def one(version: int) -> dict[str, Any]:
        p = stored(version)
        return {**_version(p), "files": _files(p)}
