"""Child process for tests/test_crash.py: an authority that crashes right after a log batch commits.

Usage: ``python crash_authority.py HOME REQUESTS CRASH_AFTER``

Opens the home's authority with its stores passed in (``fiat.wiring.backend``), over a log
whose ``integrate`` ends the process with ``os._exit(CRASHED)`` as soon as its
``CRASH_AFTER``-th batch has committed: the batch is durable, and nothing that would have run
after it (answering callers, or any write outside the batch) happens. Then it asks for
``REQUESTS`` decisions from four threads, alternating deploys to ``service:payments`` (an
approval is required: pending) and to ``service:docs`` (allowed). Exits 3 if it was not crashed.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from fiat.authorize.authority import Authority, AuthorizationRequest
from fiat.config import load_config
from fiat.formats.encoding import json_digest
from fiat.home import keyring
from fiat.prove.evidence import EvidenceRecorder
from fiat.prove.log import Sidecar, TransparencyLog
from fiat.tlog.checkpoint import SignedCheckpoint
from fiat.wiring import backend

CRASHED = 70
CLAIMS = {"image": "registry.example/agent@sha256:" + "ab" * 32, "host": "ci-7"}


class CrashingLog(TransparencyLog):
    crash_after = 1
    batches = 0

    def integrate(
        self, entries: Sequence[bytes], sidecars: Sequence[tuple[int, Sidecar]] = ()
    ) -> tuple[int, SignedCheckpoint]:
        result = super().integrate(entries, sidecars)  # committed: entries, tiles, checkpoint, staged rows
        self.batches += 1
        if self.batches >= self.crash_after:
            os._exit(CRASHED)
        return result


def main() -> None:
    home, requests, crash_after = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    cfg = load_config(home, require=True)
    stores = backend(cfg)
    ring = keyring(cfg)
    signer, retired = ring.log_keys(cfg.log.origin, cfg.log_key_path)
    log = CrashingLog(stores.log_store(cfg), signer, retired=retired, batch_max_entries=cfg.log.batch_max_entries)
    log.crash_after = crash_after
    authority = Authority(cfg, EvidenceRecorder(log, stores.evidence_index(cfg)), stores.authority_store(cfg))
    kid = ring.signing_key("runtime")[0].kid
    evidence = {"claims": CLAIMS, "digest": json_digest(CLAIMS)}

    def ask(first: int) -> None:
        for n in range(first, requests, 4):
            resource = "service:payments" if n % 2 == 0 else "service:docs"
            context = {"version": f"1.2.{n}", "replicas": 3}
            request = AuthorizationRequest("agent:release-bot", "deploy", resource, kid, context, evidence=evidence)
            authority.authorize(request)

    threads = [threading.Thread(target=ask, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    authority.close()
    sys.exit(3)


if __name__ == "__main__":
    main()
