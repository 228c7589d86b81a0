"""The transparency log: a sequencer that batches appends into durable, signed tree states.

Life of an append:

1. ``append()`` checks the entry (at most 65,535 bytes) and queues it.
2. The sequencer thread takes a batch (up to ``batch_max_entries``, waiting at
   most ``batch_linger`` after the first queued entry for company).
3. In one exclusive storage transaction it re-reads the committed tree size
   (another process may have appended), hashes the batch into the right edge
   of the tree (the *frontier*: the right-most partial tile of every level),
   computes the new root, signs a C2SP checkpoint and writes entries, changed
   tiles and checkpoint together.
4. Only after the commit returns does each caller get its index and the
   checkpoint that covers it.

Why a signed checkpoint can never be inconsistent with an earlier one: the
tree only grows by appending to the committed frontier, and the checkpoint is
committed atomically with the tiles it describes. On open, the stored
checkpoint is re-derived from the stored tiles and the log refuses to run if
they disagree.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

from fiat.errors import LogClosedError, StorageError
from fiat.persist.protocols import LogStore, LogWriter
from fiat.tlog import merkle, note
from fiat.tlog.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint, sign_checkpoint
from fiat.tlog.merkle import HASH_SIZE
from fiat.tlog.note import Signer
from fiat.tlog.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileHashSource,
    check_entry,
)

log = logging.getLogger("fiat.log")


@dataclass(frozen=True)
class AppendResult:
    """Where an entry landed and the signed checkpoint that first covers it."""

    index: int
    checkpoint: SignedCheckpoint


def _push(rng: list[tuple[int, bytes]], h: bytes) -> None:
    """Add a hash to a compact range: merge equal-height perfect subtrees like a binary counter."""
    rng.append((0, h))
    while len(rng) >= 2 and rng[-1][0] == rng[-2][0]:
        height, right = rng.pop()
        _, left = rng.pop()
        rng.append((height + 1, merkle.node_hash(left, right)))


@dataclass
class Frontier:
    """The right edge of the tree.

    For each level: the hashes of its right-most, partial tile (``partial``)
    and the same row as a compact range of perfect-subtree roots (``ranges``),
    kept incrementally so that the root and every full tile's hash cost
    O(log n) per batch instead of re-hashing the partial tiles.
    """

    size: int = 0
    partial: list[list[bytes]] = field(default_factory=list)
    ranges: list[list[tuple[int, bytes]]] = field(default_factory=list)

    def copy(self) -> Frontier:
        return Frontier(self.size, [list(p) for p in self.partial], [list(r) for r in self.ranges])

    @classmethod
    def load(cls, read_tile: LogWriter | LogStore, size: int) -> Frontier:
        partial: list[list[bytes]] = []
        ranges: list[list[tuple[int, bytes]]] = []
        level = 0
        while size >> (TILE_HEIGHT * level):
            total = size >> (TILE_HEIGHT * level)
            index, width = divmod(total, TILE_WIDTH)
            hashes: list[bytes] = []
            if width:
                data = read_tile.read_tile(level, index)
                if data is None or len(data) < width * HASH_SIZE:
                    raise StorageError(
                        f"tile {level}/{index} is missing or shorter than the committed tree size {size} requires"
                    )
                hashes = [data[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(width)]
            rng: list[tuple[int, bytes]] = []
            for h in hashes:
                _push(rng, h)
            partial.append(hashes)
            ranges.append(rng)
            level += 1
        return cls(size, partial, ranges)

    def append(self, leaf_hashes: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
        """Add leaves; return every tile that changed, at its new width."""
        dirty: set[tuple[int, int]] = set()
        full: dict[tuple[int, int], bytes] = {}
        partial, ranges = self.partial, self.ranges
        for h in leaf_hashes:
            level = 0
            count = self.size  # hashes at ``level`` before this one
            while True:
                if len(partial) == level:
                    partial.append([])
                    ranges.append([])
                row = partial[level]
                row.append(h)
                _push(ranges[level], h)
                tile_index = count // TILE_WIDTH
                if len(row) < TILE_WIDTH:
                    dirty.add((level, tile_index))
                    break
                # The tile filled up: store it whole and carry its root (now the
                # single height-8 node of the compact range) one level up.
                full[(level, tile_index)] = b"".join(row)
                dirty.discard((level, tile_index))
                h = ranges[level][0][1]
                partial[level] = []
                ranges[level] = []
                level += 1
                count >>= TILE_HEIGHT
            self.size += 1
        for level, tile_index in dirty:
            full[(level, tile_index)] = b"".join(partial[level])
        return full

    def root(self) -> bytes:
        """MTH of the whole tree: right-fold the perfect subtrees, left-most (highest level) first."""
        nodes = [h for rng in reversed(self.ranges) for _, h in rng]
        if not nodes:
            return merkle.EMPTY_ROOT
        acc = nodes[-1]
        for h in reversed(nodes[:-1]):
            acc = merkle.node_hash(h, acc)
        return acc


#: Work to do inside the batch's storage transaction, given the writer and the first index
#: of the entries it was submitted with (e.g. indexing evidence atomically with the log).
Sidecar = Callable[[LogWriter, int], None]


class _Pending:
    __slots__ = ("entry", "first", "future", "queued", "sidecar")

    def __init__(self, entry: bytes, first: bool, sidecar: Sidecar | None) -> None:
        self.entry = entry
        self.first = first  # the first entry of its submit() call: groups are never split
        self.sidecar = sidecar
        self.future: Future[AppendResult] = Future()
        self.queued = time.monotonic()


class TransparencyLog:
    """An RFC 6962 log with C2SP checkpoints and tiles, over a :class:`LogStore`.

    Thread-safe. Appends from any thread are batched by one sequencer thread. The log
    owns ``store``: :meth:`close` closes it.
    """

    def __init__(
        self,
        store: LogStore,
        signer: Signer,
        *,
        batch_max_entries: int = 4096,
        batch_linger: float = 0.0,
        retired: Sequence[note.Verifier] = (),
    ) -> None:
        if batch_max_entries < 1:
            raise ValueError("batch_max_entries must be at least 1")
        if batch_linger < 0:
            raise ValueError("batch_linger cannot be negative")
        self.store = store
        self.signer = signer
        self.origin = signer.name
        self.verifier = signer.verifier
        self.retired = list(retired)  # earlier log keys: the stored checkpoint may be theirs
        self.batch_max_entries = batch_max_entries
        self.batch_linger = batch_linger
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._read_checkpoint: SignedCheckpoint | None = None
        self._staging = threading.local()
        #: Called by the sequencer after each durable batch with its entries' latencies (seconds
        #: from queued to checkpointed): a cheap observation hook (the server's telemetry), never
        #: a dependency of the log on what observes it. Exceptions it raises are logged and ignored.
        self.on_integrated: Callable[[list[float]], None] | None = None
        #: Further hooks of the same kind, called after ``on_integrated`` (the witness collector's wake-up).
        self.integration_hooks: list[Callable[[list[float]], None]] = []
        #: Whether witnesses cosign this log's checkpoints (a :class:`fiat.prove.witnessing.WitnessCollector`
        #: runs): then :meth:`served_checkpoint` is the witnessed one once it exists.
        self.witnessing = False
        self._witnessed: SignedCheckpoint | None = None
        self._embedded_lock = threading.Lock()
        self._embedded_floor: int | None = None
        self._frontier, self._checkpoint = self._recover()

    # -- recovery ---------------------------------------------------------------

    def _recover(self) -> tuple[Frontier, SignedCheckpoint]:
        """Load the committed state and prove it is self-consistent before signing anything new."""
        with self.store.writer() as w:
            size = w.tree_size()
            frontier = Frontier.load(w, size)
            stored = self.store.checkpoint()
            if stored is None:
                if size != 0:
                    raise StorageError(f"the log holds {size} entries but no checkpoint")
                cp = sign_checkpoint(Checkpoint(self.origin, 0, merkle.EMPTY_ROOT), self.signer)
                w.write(0, [], {}, cp.note_bytes)
                return frontier, cp
        try:
            cp = self._open_own(stored)
        except Exception as exc:
            raise StorageError(
                f"the stored checkpoint does not verify under the log key for origin {self.origin!r} ({exc}). "
                "Was log.origin changed or the log key replaced? Restore them; a log's identity cannot change."
            ) from exc
        if cp.size != size:
            raise StorageError(f"the stored checkpoint covers {cp.size} entries but the tree holds {size}")
        if frontier.root() != cp.root:
            raise StorageError(
                f"the stored tiles do not hash to the stored checkpoint's root at size {size}; refusing to sign"
            )
        return frontier, cp

    def rekey(self, signer: Signer, retired: Sequence[note.Verifier]) -> None:
        """Sign from now on with ``signer`` (a rotated log key); the origin cannot change."""
        if signer.name != self.origin:
            raise StorageError(f"a log key for {signer.name!r} cannot sign for the log {self.origin!r}")
        self.signer, self.verifier, self.retired = signer, signer.verifier, list(retired)

    def _open_own(self, data: bytes) -> SignedCheckpoint:
        """Open a checkpoint this log signed, with its current key or a retired one."""
        last: Exception | None = None
        for v in (self.verifier, *self.retired):
            try:
                return open_checkpoint(data, v)
            except Exception as exc:
                last = exc
        assert last is not None
        raise last

    # -- appends ------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._closing:
                raise LogClosedError("the log has been closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fiat-log-sequencer", daemon=True)
                self._thread.start()

    def submit(self, entries: Sequence[bytes], sidecar: Sidecar | None = None) -> list[Future[AppendResult]]:
        """Queue entries; each future resolves once its entry is durable and checkpointed.

        The entries of one call land contiguously in one batch; ``sidecar`` runs inside that
        batch's transaction, so whatever it writes commits atomically with the entries.
        """
        for e in entries:
            if not isinstance(e, bytes | bytearray | memoryview):
                raise TypeError("log entries are bytes")
            check_entry(bytes(e))
        pending = [_Pending(bytes(e), i == 0, sidecar) for i, e in enumerate(entries)]
        staged: list[_Pending] | None = getattr(self._staging, "entries", None)
        if staged is not None:
            staged.extend(pending)  # queued together when the staging block ends
        else:
            self._enqueue(pending)
        return [p.future for p in pending]

    def _enqueue(self, pending: list[_Pending], *, raise_closed: bool = True) -> None:
        try:
            if self._thread is None:
                self.start()
            with self._cond:
                if self._closing:
                    raise LogClosedError("the log is closed; no more appends are accepted")
                self._queue.extend(pending)
                self._cond.notify()
        except LogClosedError as exc:
            for p in pending:
                if not p.future.done():
                    p.future.set_exception(exc)  # staged submitters learn it from their futures
            if raise_closed:
                raise

    @contextmanager
    def staged(self) -> Iterator[None]:
        """Hold this thread's submissions and queue them at once when the block ends.

        A producer that submits many small groups in a burst (the authority's decider)
        would otherwise wake the sequencer for the first few and commit them alone; staged,
        the burst becomes one batch: one transaction, one fsync, one signed checkpoint.
        Waiting on a staged entry inside the block would never end: :meth:`flush` first.
        """
        if getattr(self._staging, "entries", None) is not None:
            yield  # already staging: the outer block queues
            return
        self._staging.entries = []
        try:
            yield
        finally:
            self.flush()
            self._staging.entries = None

    def flush(self) -> None:
        """Queue what this thread has staged (a no-op outside :meth:`staged`)."""
        staged: list[_Pending] | None = getattr(self._staging, "entries", None)
        if staged:
            batch = list(staged)
            staged.clear()
            self._enqueue(batch, raise_closed=False)

    def append(self, entry: bytes, timeout: float | None = None) -> AppendResult:
        """Append one entry and wait until it is durable and covered by a signed checkpoint."""
        future = self.submit([entry])[0]
        self.flush()
        return future.result(timeout)

    def append_many(
        self, entries: Sequence[bytes], timeout: float | None = None, sidecar: Sidecar | None = None
    ) -> list[AppendResult]:
        futures = self.submit(entries, sidecar)
        self.flush()
        return [f.result(timeout) for f in futures]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                deadline = self._queue[0].queued + self.batch_linger
                while len(self._queue) < self.batch_max_entries and not self._closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = [self._queue.popleft()]
                while self._queue and (len(batch) < self.batch_max_entries or not self._queue[0].first):
                    batch.append(self._queue.popleft())
            sidecars = [(i, p.sidecar) for i, p in enumerate(batch) if p.first and p.sidecar is not None]
            try:
                start, cp = self.integrate([p.entry for p in batch], sidecars)
            except BaseException as exc:
                log.error("log batch of %d entries failed: %s", len(batch), exc)
                for p in batch:
                    p.future.set_exception(exc)
                continue
            done = time.monotonic()
            for i, p in enumerate(batch):
                p.future.set_result(AppendResult(start + i, cp))
            latencies = [done - p.queued for p in batch]
            for hook in (self.on_integrated, *self.integration_hooks):
                if hook is None:
                    continue
                try:
                    hook(latencies)
                except Exception as exc:
                    log.warning("log integration hook failed: %s", exc)

    def integrate(
        self, entries: Sequence[bytes], sidecars: Sequence[tuple[int, Sidecar]] = ()
    ) -> tuple[int, SignedCheckpoint]:
        """Durably append ``entries`` as one batch; return the first index and the new checkpoint.

        Called by the sequencer thread; also usable directly by a single-threaded writer.
        ``sidecars`` are (offset in ``entries``, callable) run inside the same transaction.
        """
        with self.store.writer() as w:
            start = w.tree_size()
            if start != self._frontier.size:
                # Another process appended since we last looked: resume from its frontier.
                self._frontier = Frontier.load(w, start)
            frontier = self._frontier.copy()
            changed = frontier.append([merkle.leaf_hash(e) for e in entries])
            cp = sign_checkpoint(Checkpoint(self.origin, frontier.size, frontier.root()), self.signer)
            w.write(start, entries, changed, cp.note_bytes)
            for offset, sidecar in sidecars:
                sidecar(w, start + offset)
        self._frontier = frontier
        self._checkpoint = cp
        return start, cp

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting appends, finish the queued ones, stop the sequencer and close the store.

        The log owns its store: closing the log closes it. Idempotent.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            for p in self._queue:
                p.future.set_exception(LogClosedError("the log closed before this entry was sequenced"))
            self._queue.clear()
        if thread is not None and thread.is_alive():
            # A batch still being written keeps its connection; the store closes with the process.
            log.error("the log's sequencer did not stop within %.0f s; its store is left open", timeout)
            return
        self.store.close()

    # -- reads --------------------------------------------------------------------

    def checkpoint(self) -> SignedCheckpoint:
        """The latest committed checkpoint (read from storage: another process may have advanced it)."""
        data = self.store.checkpoint()
        if data is None:
            return self._checkpoint
        if data == self._checkpoint.note_bytes:
            return self._checkpoint
        seen = self._read_checkpoint  # advanced by another process: parse each new one once
        if seen is None or seen.note_bytes != data:
            seen = SignedCheckpoint(Checkpoint.parse_text(note.parse(data).text), data)
            self._read_checkpoint = seen
        return seen

    def witnessed_checkpoint(self) -> SignedCheckpoint | None:
        """The newest stored checkpoint the witness quorum cosigned (its note carries the cosignature
        lines, C2SP tlog-cosignature), or None before the first one."""
        data = self.store.witnessed_checkpoint()
        if data is None:
            return None
        seen = self._witnessed
        if seen is None or seen.note_bytes != data:
            seen = SignedCheckpoint(Checkpoint.parse_text(note.parse(data).text), data)
            self._witnessed = seen
        return seen

    def record_witnessed(self, cp: SignedCheckpoint) -> bool:
        """Persist a checkpoint of this log with its quorum of cosignatures, unless a larger one is stored.

        The note must still verify under this log's key (the cosignature lines are extra signatures,
        which signed-note verifiers ignore when they do not know them). Returns whether it was stored.
        """
        opened = self._open_own(cp.note_bytes)
        if opened.checkpoint != cp.checkpoint:
            raise ValueError("the witnessed note's text is not the checkpoint it claims to be")
        if cp.size > self.checkpoint().size:
            raise ValueError(f"a witnessed checkpoint of size {cp.size} is beyond the log")
        stored = self.store.set_witnessed_checkpoint(cp.size, cp.note_bytes)
        if stored:
            self._witnessed = cp
        return stored

    def served_checkpoint(self) -> SignedCheckpoint:
        """What ``/log/checkpoint`` serves: with witnesses, the newest cosigned checkpoint (until the
        first one exists, the latest plain one); without, the latest checkpoint."""
        if self.witnessing:
            witnessed = self.witnessed_checkpoint()
            if witnessed is not None:
                return witnessed
        return self.checkpoint()

    def embeddable_checkpoint(self) -> SignedCheckpoint:
        """The checkpoint a trust state embeds: never smaller than one embedded before.

        A guard halts when the tree it is shown shrinks (``log-continuity``), and the cosigned
        checkpoint lags the latest plain one. So the witnessed checkpoint is embedded only once it
        is at least as large as every checkpoint embedded before (at start, the latest plain one,
        which bounds what an earlier process could have embedded); until then, the plain one.
        """
        plain = self.checkpoint()
        witnessed = self.witnessed_checkpoint() if self.witnessing else None
        with self._embedded_lock:
            floor = plain.size if self._embedded_floor is None else self._embedded_floor
            chosen = witnessed if witnessed is not None and witnessed.size >= floor else plain
            self._embedded_floor = max(floor, chosen.size)
            return chosen

    def read_tile(self, level: int, index: int, width: int) -> bytes:
        """The first ``width`` hashes of a tile, if the committed tree has them."""
        data = self.store.read_tile(level, index)
        if data is None or len(data) < width * HASH_SIZE:
            raise KeyError(f"tile {level}/{index} width {width} is not in the log")
        return data[: width * HASH_SIZE]

    def read_entries(self, start: int, end: int) -> list[bytes]:
        return self.store.read_entries(start, end)

    def hash_source(self, size: int) -> TileHashSource:
        return TileHashSource(self.read_tile, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> tuple[list[bytes], SignedCheckpoint]:
        """Inclusion proof for ``index`` against the latest checkpoint (or a given size).

        The checkpoint returned is the latest one, whatever ``size``: a caller proving against an
        earlier checkpoint pairs the proof with that checkpoint's note itself."""
        cp = self.checkpoint()
        size = cp.size if size is None else size
        if not 0 <= index < size <= cp.size:
            raise IndexError(f"entry {index} is not in the log of size {cp.size}")
        return merkle.inclusion_proof(self.hash_source(size), index, size), cp

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        cp = self.checkpoint()
        if not 0 <= old_size <= new_size <= cp.size:
            raise IndexError(f"sizes {old_size}..{new_size} are not within the log of size {cp.size}")
        return merkle.consistency_proof(self.hash_source(new_size), old_size, new_size)
