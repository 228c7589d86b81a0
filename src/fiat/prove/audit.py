"""Audit a remote tiled log: recompute everything from tiles and entries, check consistency.

The audit walks the log as an independent monitor would (C2SP tlog-tiles),
each rule one named step:

1. ``checkpoint-signature`` — the checkpoint is a signed note by the log key
   whose name is the checkpoint's origin (tlog-checkpoint §Signatures).
2. ``entry-bundle`` — every entry bundle decodes and its entries hash
   (RFC 6962 leaf hash) to the matching level-0 tile (tlog-tiles §Log entries).
3. ``tile-hashes`` — every hash in a level ``l >= 1`` tile is the Merkle root of
   the full tile below it (tlog-tiles §Merkle Tree).
4. ``root-hash`` — the tiles hash to the checkpoint's root (RFC 9162 §2.1.1).
5. ``consistency`` — the checkpoint is consistent with the last one this
   auditor saw for the same origin (RFC 9162 §2.1.4); a smaller tree than
   before is a rollback.

The trust logic takes a :class:`Fetcher`; HTTP lives in :class:`HttpFetcher`.
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fiat.errors import AuditError, InconsistentTreeError, MalformedError, ProofError, VerificationError
from fiat.tlog import merkle, note
from fiat.tlog.checkpoint import SignedCheckpoint, open_with_any
from fiat.tlog.merkle import HASH_SIZE
from fiat.tlog.tiles import (
    TILE_WIDTH,
    Tile,
    TileHashSource,
    entry_bundles_for_size,
    parse_bundle,
    split_hashes,
    tiles_for_size,
)


class Fetcher(Protocol):
    def get(self, path: str) -> bytes:
        """Fetch ``<prefix>/<path>``; raise :class:`AuditError` if it cannot be had."""


@dataclass(frozen=True)
class AuditReport:
    origin: str
    size: int
    root: bytes
    previous_size: int | None
    tiles: int
    bundles: int
    steps: tuple[str, ...]


def audit_log(
    fetcher: Fetcher,
    log_key: note.Verifier | Sequence[note.Verifier],
    previous: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[AuditReport, SignedCheckpoint]:
    """Audit the log behind ``fetcher``. Raises :class:`VerificationError` naming the failed step.

    ``log_key`` may list several keys of one log (after a rotation: the current and retired ones).
    """
    keys = [log_key] if isinstance(log_key, note.Verifier) else list(log_key)
    steps: list[str] = []
    # Step 1: checkpoint signature and origin.
    raw = fetcher.get("checkpoint")
    try:
        cp = open_with_any(raw, keys)
    except MalformedError as exc:
        raise VerificationError("checkpoint-signature", str(exc)) from exc
    steps.append("checkpoint-signature")
    size = cp.size
    hash_tiles = list(tiles_for_size(size))
    bundles = list(entry_bundles_for_size(size))
    total, done = len(hash_tiles) + len(bundles), 0
    if progress:
        progress(total, done)

    fetched: dict[tuple[int, int], bytes] = {}

    def tile_data(t: Tile) -> bytes:
        data = fetcher.get(t.path())
        try:
            split_hashes(data, t.width)
        except MalformedError as exc:
            raise VerificationError("tile-hashes", f"{t.path()}: {exc.reason}") from exc
        fetched[(t.level, t.index)] = data
        return data

    # Step 2: entry bundles against level-0 tiles; remember each full tile's root for level 1.
    below: list[bytes] = []  # roots of the full tiles of the level under the one being checked
    for b in bundles:
        t0 = Tile(0, b.index, b.width)
        level0 = tile_data(t0)
        try:
            entries = parse_bundle(fetcher.get(b.path()), b.width)
        except MalformedError as exc:
            raise VerificationError("entry-bundle", f"{b.path()}: {exc.reason}") from exc
        hashes = [merkle.leaf_hash(e) for e in entries]
        if b"".join(hashes) != level0:
            bad = next(i for i, h in enumerate(hashes) if level0[i * HASH_SIZE : (i + 1) * HASH_SIZE] != h)
            raise VerificationError(
                "entry-bundle", f"entry {b.index * TILE_WIDTH + bad} does not hash to its level-0 tile hash"
            )
        if t0.is_full:
            below.append(merkle.root_of_hashes(hashes))
        done += 2
        if progress:
            progress(total, done)
    steps.append("entry-bundle")

    # Step 3: each higher level against the roots of the full tiles below it.
    for level in range(1, 64):
        level_tiles = [t for t in hash_tiles if t.level == level]
        if not level_tiles:
            break
        above: list[bytes] = []
        for t in level_tiles:
            hashes = split_hashes(tile_data(t), t.width)
            expected = below[t.index * TILE_WIDTH : t.index * TILE_WIDTH + t.width]
            if hashes != expected:
                raise VerificationError("tile-hashes", f"{t.path()} does not match the tiles of level {level - 1}")
            if t.is_full:
                above.append(merkle.root_of_hashes(hashes))
            done += 1
            if progress:
                progress(total, done)
        below = above
    if size:
        steps.append("tile-hashes")

    # Step 4: the verified tiles hash to the signed root.
    def read(level: int, index: int, width: int) -> bytes:
        data = fetched.get((level, index))
        if data is None:
            raise AuditError(f"tile {level}/{index} was not fetched")
        return data[: width * HASH_SIZE]

    source = TileHashSource(read, size)
    if merkle.tree_root(source, size) != cp.root:
        raise VerificationError("root-hash", f"the tiles do not hash to the checkpoint's root at size {size}")
    steps.append("root-hash")

    # Step 5: consistency with the last checkpoint seen for this origin.
    previous_size = None
    if previous is not None:
        try:
            old = open_with_any(previous, keys)
        except (MalformedError, VerificationError) as exc:
            raise AuditError(f"the remembered checkpoint for {keys[0].name} does not verify: {exc}") from exc
        previous_size = old.size
        if old.size > size:
            raise InconsistentTreeError(
                "consistency", f"rollback: the log now shows size {size}, but size {old.size} was seen before"
            )
        proof = merkle.consistency_proof(source, old.size, size)
        try:
            merkle.verify_consistency(old.size, size, old.root, cp.root, proof)
        except ProofError as exc:
            raise InconsistentTreeError(
                "consistency",
                f"split view: the tree of size {size} does not extend the tree of size {old.size} seen before",
            ) from exc
        steps.append("consistency")
    report = AuditReport(cp.origin, size, cp.root, previous_size, len(hash_tiles), len(bundles), tuple(steps))
    return report, cp


# -- I/O: HTTP fetching and the remembered checkpoints --------------------------


class HttpFetcher:
    """Fetch tlog-tiles resources from ``<prefix>/...`` with one keep-alive HTTP client."""

    def __init__(self, prefix: str, timeout: float = 30.0) -> None:
        import httpx  # imported here so the trust logic above needs no HTTP library

        self.prefix = prefix.rstrip("/")
        from fiat import tls

        self._client = httpx.Client(
            timeout=timeout, headers={"Accept-Encoding": "gzip, identity"}, verify=tls.client_context()
        )
        self._httpx = httpx

    def get(self, path: str) -> bytes:
        url = f"{self.prefix}/{path}"
        try:
            r = self._client.get(url)
        except self._httpx.HTTPError as exc:
            raise AuditError(f"cannot fetch {url}: {exc}") from exc
        if r.status_code != 200:
            raise AuditError(f"{url} answered HTTP {r.status_code}")
        return r.content

    def close(self) -> None:
        self._client.close()


def remembered_path(audit_dir: Path, origin: str) -> Path:
    return audit_dir / (urllib.parse.quote(origin, safe="") + ".checkpoint")


def load_remembered(audit_dir: Path, origin: str) -> bytes | None:
    path = remembered_path(audit_dir, origin)
    return path.read_bytes() if path.exists() else None


def remember(audit_dir: Path, cp: SignedCheckpoint) -> Path:
    """Atomically record ``cp`` as the latest checkpoint seen for its origin."""
    audit_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the home: private, as every home is
    audit_dir.mkdir(mode=0o700, exist_ok=True)
    path = remembered_path(audit_dir, cp.origin)
    fd, tmp = tempfile.mkstemp(dir=audit_dir, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cp.note_bytes)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["AuditReport", "Fetcher", "HttpFetcher", "audit_log", "load_remembered", "remember"]
