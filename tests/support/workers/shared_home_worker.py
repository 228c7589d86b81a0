"""Child process for tests/test_hot_path.py: one of several processes writing to one Fiat home.

Usage:

* ``python shared_home_worker.py authorize HOME TAG REQUESTS THREADS`` — open an
  ``Authority`` over the home, print ``ready``, wait for a line on stdin, then run
  ``REQUESTS`` authorizations from ``THREADS`` threads (a fixed mix of allows, denies and
  pendings) and print one JSON line: ``{"tag", "results": [{decision, permitId,
  permitIndex, decisionIndex, actionDigest, kind}], "errors": [...], "started", "finished"}``
  (wall-clock times around the authorizations).
* ``python shared_home_worker.py sqlite DB TAG TRANSACTIONS THREADS BUSY_MS RAW`` — print
  ``ready``, wait for stdin, then run ``TRANSACTIONS`` write transactions from ``THREADS``
  threads on the table ``t`` of DB, each reading the counter, sleeping a little and writing
  it back plus one row. With ``RAW`` = 0 through ``fiat.persist.sqlite.SQLiteDatabase`` (its
  file lock queues writers); with 1 through plain ``sqlite3`` (``BEGIN IMMEDIATE`` and
  SQLite's own busy handler only). Prints one JSON line ``{"tag", "done", "errors"}``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

CLAIMS = {"image": "registry.example/agent@sha256:" + "cd" * 32, "host": "worker"}


def _requests(tag: str, n: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Allows (deploy docs, 3 replicas), denies (60 replicas: replica-ceiling) and pendings (critical)."""
    out = []
    for i in range(n):
        kind = ("allow", "allow", "allow", "deny", "allow", "pending")[i % 6]
        if kind == "allow":
            out.append((kind, "service:docs", "deploy", {"version": f"{tag}.{i}", "replicas": 3}))
        elif kind == "deny":
            out.append((kind, "service:docs", "deploy", {"version": f"{tag}.{i}", "replicas": 60}))
        else:
            out.append((kind, "service:payments", "deploy", {"version": f"{tag}.{i}", "replicas": 2}))
    return out


def authorize(home: str, tag: str, n: int, threads: int) -> None:
    from fiat.authorize.authority import AuthorizationRequest
    from fiat.config import load_config
    from fiat.formats.encoding import json_digest
    from fiat.home import keyring
    from fiat.wiring import open_authority

    cfg = load_config(Path(home), require=True)
    authority = open_authority(cfg)
    kid = keyring(cfg).signing_key("runtime")[0].kid
    evidence = {"claims": CLAIMS, "digest": json_digest(CLAIMS)}
    work = _requests(tag, n)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()
    print("ready", flush=True)
    sys.stdin.readline()

    def run(part: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        for kind, resource, action, context in part:
            try:
                r = authority.authorize(
                    AuthorizationRequest("agent:release-bot", action, resource, kid, context, evidence=evidence)
                )
                row = {
                    "kind": kind,
                    "decision": r.decision,
                    "reason": r.reason,
                    "permitId": r.permit_id,
                    "permitIndex": r.permit_index,
                    "decisionIndex": r.decision_index,
                    "actionDigest": r.action_digest,
                }
                with lock:
                    results.append(row)
            except Exception:
                with lock:
                    errors.append(traceback.format_exc())

    started = time.time()
    pool = [threading.Thread(target=run, args=(work[i::threads],)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    finished = time.time()
    authority.close()
    out = {"tag": tag, "results": results, "errors": errors, "started": started, "finished": finished}
    print(json.dumps(out), flush=True)


def sqlite_writes(db: str, tag: str, n: int, threads: int, busy_ms: int, raw: bool) -> None:
    from fiat.persist.sqlite import SQLiteDatabase

    # Fiat's writer lock may wait (30 s); SQLite's own busy handler is set to busy_ms (0) on each
    # connection below, so only the writer lock can keep these transactions from colliding.
    database = SQLiteDatabase(db, "NORMAL", 30_000)
    local = threading.local()
    errors: list[str] = []
    done = [0]
    lock = threading.Lock()

    def raw_conn() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = sqlite3.connect(db, isolation_level=None, timeout=busy_ms / 1000)
            conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        return conn

    def one(conn: sqlite3.Connection, thread: int, seq: int) -> None:
        (value,) = conn.execute("SELECT value FROM counter WHERE id = 1").fetchone()
        time.sleep(0.0005)  # hold the write lock a little: writers overlap
        conn.execute("UPDATE counter SET value = ? WHERE id = 1", (value + 1,))
        conn.execute("INSERT INTO t (seen, writer) VALUES (?, ?)", (value, f"{tag}-{thread}-{seq}"))

    def run(thread: int, count: int) -> None:
        for seq in range(count):
            try:
                if raw:
                    conn = raw_conn()
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        one(conn, thread, seq)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                else:
                    if not getattr(local, "tuned", False):
                        database.conn().execute(f"PRAGMA busy_timeout={busy_ms}")
                        local.tuned = True
                    with database.transaction() as conn:
                        one(conn, thread, seq)
                with lock:
                    done[0] += 1
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    print("ready", flush=True)
    sys.stdin.readline()
    pool = [threading.Thread(target=run, args=(i, n // threads + (i < n % threads))) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    database.close()
    print(json.dumps({"tag": tag, "done": done[0], "errors": errors}), flush=True)


def main() -> None:
    mode = sys.argv[1]
    if mode == "authorize":
        authorize(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "sqlite":
        sqlite_writes(
            sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "1"
        )
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
