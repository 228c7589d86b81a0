"""The main job on embedded defaults (``make run``): sample entries for a fresh log."""

from __future__ import annotations

import json
import time

from fiat.config import Config
from fiat.home import open_log
from fiat.prove.checkpoint import SignedCheckpoint

SAMPLE_ACTIONS = (
    ("agent:release-bot", "deploy", "service:payments"),
    ("agent:support-assistant", "tool:refund", "order:48213"),
    ("user:alice", "shell:kubectl-rollout", "cluster:prod-eu"),
    ("agent:data-sync", "tool:s3-put", "bucket:reports"),
    ("agent:release-bot", "tool:git-tag", "repo:fiat"),
)


def sample_entries(now: float | None = None) -> list[bytes]:
    """Clearly labelled sample records: the log is real, these events are examples."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return [
        json.dumps(
            {"sample": True, "principal": p, "action": a, "resource": r, "logged_at": ts},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        for p, a, r in SAMPLE_ACTIONS
    ]


def append_samples(cfg: Config) -> tuple[list[int], SignedCheckpoint]:
    log = open_log(cfg)
    try:
        results = log.append_many(sample_entries())
        return [r.index for r in results], results[-1].checkpoint
    finally:
        log.close()
        log.store.close()
