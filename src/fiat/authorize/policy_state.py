"""The active policy: which published Cedar bundle version step 6 (``policy``) evaluates.

Publishing validates a bundle, logs a signed policy statement and stores the new version
(:meth:`PolicyState.publish`); the authority loads the newest stored version
(:meth:`PolicyState.reload`) and, before each decision, follows a version another process
published through the same store (:meth:`PolicyState.follow`, at most once a second). A
version that does not load leaves no active policy: every request is denied, with the reason.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fiat.authorize.policy import PolicyBundle, PolicyError, load_bundle, read_bundle_files
from fiat.authorize.signing import AuthorityKeys
from fiat.persist.protocols import AuthorityStore
from fiat.persist.records import StoredPolicy
from fiat.prove import evidence as ev

log = logging.getLogger("fiat.authority")


@dataclass
class ActivePolicy:
    version: int
    digest: str
    bundle: PolicyBundle


@dataclass(eq=False)
class PolicyState:
    """The active policy version (swapped whole on a change; readers take no lock)."""

    store: AuthorityStore
    recorder: ev.EvidenceRecorder
    keys: AuthorityKeys
    clock: Callable[[], float]
    active: ActivePolicy | None = field(default=None, init=False)
    error: str | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _checked: float = field(default_factory=time.monotonic, init=False, repr=False)

    def reload(self) -> bool:
        """Load the newest published policy version if it changed. Returns True on change."""
        latest = self.store.latest_policy()
        if latest is None:
            with self._lock:
                self.active, self.error = None, "no policy has been published"
            return False
        version, digest, files_json = latest.version, latest.digest, latest.files
        if self.active is not None and self.active.version == version:
            return False
        try:
            files = {k: base64.b64decode(v) for k, v in json.loads(files_json).items()}
            bundle = load_bundle(files=files)
        except (PolicyError, ValueError) as exc:
            with self._lock:
                self.active, self.error = None, f"policy version {version} does not load: {exc}"
            log.error("policy version %d does not load; every request is denied: %s", version, exc)
            return True
        with self._lock:
            self.active, self.error = ActivePolicy(version, digest, bundle), None
        log.info("policy version %d (%s) is active", version, digest[:16])
        return True

    def follow(self) -> None:
        """Pick up a version published through the same store by another process, checked at most once a second."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        latest = self.store.latest_policy_version()
        current = self.active
        if latest is not None and (current is None or current.version != latest):
            self.reload()

    def publish(self, directory: Path) -> tuple[int, str, int]:
        """Validate and publish a bundle: new version, signed and logged policy statement."""
        files = read_bundle_files(directory)
        bundle = load_bundle(directory, files)
        errors = bundle.validate()
        if errors:
            raise PolicyError("the bundle does not validate against its schema:\n  " + "\n  ".join(errors))
        latest = self.store.latest_policy()
        if latest is not None and latest.digest == bundle.digest:
            return latest.version, bundle.digest, latest.log_index  # unchanged: no new version
        version = 1 if latest is None else latest.version + 1
        now = self.clock()
        statement = ev.policy_statement(digest=bundle.digest, version=version, files=bundle.manifest(), at=now)
        index = self.keys.record(self.recorder, statement)
        encoded = json.dumps({k: base64.b64encode(v).decode() for k, v in files.items()}, sort_keys=True)
        self.store.add_policy(StoredPolicy(version, bundle.digest, now, index, encoded))
        self.reload()
        return version, bundle.digest, index
