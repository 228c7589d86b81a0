"""Environment measurement: pluggable probes that produce RATS Evidence (RFC 9334 §3).

Evidence is ``{"claims": {probe: claims}, "digest": SHA-256(RFC 8785(claims))}``.
The authority appraises it into an Attestation Result; the permit binds the
digest; the runtime guard re-measures on every heartbeat and halts on drift.

Re-measuring is cheap: every file is ``stat``-ed first and re-hashed only if its
size, mtime, ctime or inode changed since the last measurement.

Probes:

* ``process`` — the command's executable (resolved path, SHA-256), argv, working directory;
* ``files``   — declared paths and globs, as a tree digest over (path, SHA-256) pairs;
* ``python``  — interpreter, version, and every installed distribution with the digest of its RECORD;
* ``env``     — the values of an allowlist of environment variables;
* ``host``    — machine id, kernel, and the container image digest where the runtime can see it.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import os
import platform
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fiat.formats.encoding import json_digest

MAX_FILES = 10_000


class FileHasher:
    """SHA-256 of files, cached by (size, mtime_ns, ctime_ns, inode): stat first, re-hash on change."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self._lock = threading.Lock()
        self.hashed = 0  # how many files were actually read (for tests and benchmarks)

    def digest(self, path: str) -> str | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError:
            return None
        value = h.hexdigest()
        with self._lock:
            self._cache[path] = (key, value)
            self.hashed += 1
        return value


Probe = Callable[[FileHasher], dict[str, Any]]


def process_probe(argv: Sequence[str] | None = None, cwd: str | None = None) -> Probe:
    def probe(hasher: FileHasher) -> dict[str, Any]:
        args = list(argv) if argv is not None else [sys.executable]
        exe = shutil.which(args[0]) if args else None
        path = os.path.realpath(exe) if exe else None
        return {
            "executable": path,
            "executableSha256": hasher.digest(path) if path else None,
            "argv": args,
            "cwd": cwd or os.getcwd(),
        }

    return probe


def files_probe(patterns: Sequence[str], base: str | None = None) -> Probe:
    def probe(hasher: FileHasher) -> dict[str, Any]:
        root = base or os.getcwd()
        paths: set[str] = set()
        for pattern in patterns:
            full = pattern if os.path.isabs(pattern) else os.path.join(root, pattern)
            matches = glob.glob(full, recursive=True) or ([full] if not glob.has_magic(full) else [])
            for m in matches:
                if os.path.isdir(m):
                    for dirpath, _, names in os.walk(m):
                        paths.update(os.path.join(dirpath, n) for n in names)
                else:
                    paths.add(m)
                if len(paths) > MAX_FILES:
                    raise ValueError(f"more than {MAX_FILES} files match the measured patterns")
        entries = sorted((os.path.relpath(p, root), hasher.digest(p)) for p in paths)
        tree = json_digest([[p, d] for p, d in entries])
        return {"patterns": list(patterns), "count": len(entries), "treeSha256": tree}

    return probe


class _PythonProbe:
    """Installed distributions and their RECORD digests (RECORD lists every file with its hash).

    The distribution list is re-scanned only when a ``sys.path`` directory changes (an
    install or removal); otherwise each heartbeat only ``stat``s the RECORD files.
    """

    def __init__(self) -> None:
        self._dirs: dict[str, int] = {}
        self._records: list[tuple[str, str | None]] = []

    def _scan_needed(self) -> bool:
        current = {}
        for d in sys.path:
            try:
                current[d] = os.stat(d or ".").st_mtime_ns
            except OSError:
                continue
        if current != self._dirs:
            self._dirs = current
            return True
        return False

    def __call__(self, hasher: FileHasher) -> dict[str, Any]:
        if self._scan_needed() or not self._records:
            records = []
            for dist in importlib.metadata.distributions():
                base = getattr(dist, "_path", None)
                path = os.path.join(str(base), "RECORD") if base is not None else None
                records.append((f"{dist.metadata['Name'] or '?'}=={dist.version}", path))
            self._records = sorted(records)
        dists = {name: (hasher.digest(path) if path else None) for name, path in self._records}
        return {
            "implementation": platform.python_implementation(),
            "version": platform.python_version(),
            "executable": os.path.realpath(sys.executable),
            "distributions": json_digest(dists),
            "count": len(dists),
        }


def env_probe(allowlist: Sequence[str]) -> Probe:
    def probe(_: FileHasher) -> dict[str, Any]:
        return {name: os.environ.get(name) for name in sorted(allowlist)}

    return probe


def host_probe(_: FileHasher) -> dict[str, Any]:
    machine_id = None
    for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            machine_id = Path(candidate).read_text().strip() or None
            break
        except OSError:
            continue
    uname = platform.uname()
    image = os.environ.get("FIAT_CONTAINER_IMAGE_DIGEST")  # set by the deployment where visible
    return {
        "machineId": machine_id,
        "kernel": f"{uname.system} {uname.release}",
        "arch": uname.machine,
        "containerImageDigest": image,
    }


@dataclass
class Measurer:
    """A set of probes; ``measure()`` returns Evidence. Reuse one instance to keep the stat cache."""

    probes: dict[str, Probe] = field(default_factory=dict)
    hasher: FileHasher = field(default_factory=FileHasher)

    def measure(self) -> dict[str, Any]:
        claims = {name: probe(self.hasher) for name, probe in sorted(self.probes.items())}
        return {"claims": claims, "digest": json_digest(claims)}


class Coalesced:
    """A probe shared by every guard in the process: its result is reused for ``window`` seconds.

    Many guards re-measuring the same interpreter or host in one heartbeat then cost one
    measurement, not one each; a change is still seen within ``window``.
    """

    def __init__(self, probe: Probe, window: float = 0.05) -> None:
        self.probe, self.window = probe, window
        self._lock = threading.Lock()
        self._at = -1.0
        self._value: dict[str, Any] = {}

    def __call__(self, hasher: FileHasher) -> dict[str, Any]:
        import time

        with self._lock:
            now = time.monotonic()
            if now - self._at > self.window:
                self._value = self.probe(hasher)
                self._at = now
            return self._value


#: Process-wide probes and stat cache, shared by every measurer this process creates.
SHARED_HASHER = FileHasher()
_PYTHON = Coalesced(_PythonProbe())
_HOST = Coalesced(host_probe, window=1.0)


def default_measurer(
    argv: Sequence[str] | None = None,
    cwd: str | None = None,
    files: Sequence[str] = (),
    env_allowlist: Sequence[str] = (),
    python: bool = True,
) -> Measurer:
    probes: dict[str, Probe] = {"process": process_probe(argv, cwd), "host": _HOST}
    if files:
        probes["files"] = files_probe(files, cwd)
    if env_allowlist:
        probes["env"] = env_probe(env_allowlist)
    if python:
        probes["python"] = _PYTHON
    return Measurer(probes, SHARED_HASHER)
