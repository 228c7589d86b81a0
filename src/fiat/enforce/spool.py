"""The receipt spool: no execution receipt is ever lost, whatever happens to the authority.

A governed execution (``fiat run``, a ``fiat.governed`` block) signs its receipt and
**spools it first**, durably, in the runtime's home; uploading it to the authority is a
separate step, with retries and backoff, that may happen now or much later:

* ``<home>/spool/receipts/`` (mode 0700) holds one file per receipt, ``<permit id>.json``:
  ``{"version": 1, "permitId", "authority", "envelope", "spooledAt", "attempts",
  "lastError", "evidence"}`` (``evidence``: where ``fiat run --evidence FILE`` wants the
  bundle written once the receipt is logged; null otherwise). The permit id must be a safe
  file name (:data:`SAFE_ID`), or nothing is written.
* Writing is crash-safe: a temporary ``.<permit id>.<pid>.tmp`` is written and fsynced,
  renamed over the final name, and the directory is fsynced, so after a crash either the
  complete receipt is there or (a torn temporary) nothing is. A temporary whose writer is
  no longer alive is removed by the next listing; a final file that does not parse is
  reported (``fiat receipts list``) and never deleted — it may be the only copy.
* Uploading is ``POST /v1/receipts``; on success the file is removed (and the directory
  fsynced). The authority logs one receipt per permit (:mod:`fiat.authorize.receipts`), so
  the same receipt uploaded twice is one log entry with one index: two processes flushing
  one spool at once cannot log anything twice. Each upload still takes an exclusive
  ``flock`` on the spool file (waiting for another process that holds it, within the bound),
  which only spares duplicate work: the second then gets the same index from the authority.
* Retries: a network failure, or a 5xx answer, is retried with exponential backoff (0.1 s,
  doubling, at most 1 s between tries) until the bound given (``runtime.receipt_upload_s``,
  2 s by default, at the end of a run: a dead authority never holds a run up for long). Any
  other refusal (4xx) is final for this flush: the file stays, with the refusal as its
  ``lastError``, for an operator to look at.

Who flushes: the next ``fiat run`` (in the background, from the moment its permit is
established, joined within the upload bound at its end); ``fiat receipts flush``; and every
long-running guard (:class:`Flusher`, poked by the heartbeat loop on every successful check,
i.e. whenever the authority is demonstrably back).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.api.client import AuthorityClient, ClientError
from fiat.errors import FiatError, MalformedError, StorageError
from fiat.formats.encoding import rfc3339

SPOOL_VERSION = 1
#: A permit id that can name a file: what the authority mints (``pmt_`` and base64url).
SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
FIRST_BACKOFF, MAX_BACKOFF = 0.1, 1.0
WHAT = "spooled receipt"


class SpoolError(StorageError):
    """The spool cannot be written (an unsafe permit id, a full disk, no permission)."""


@dataclass(frozen=True)
class Spooled:
    """One receipt waiting in the spool."""

    permit_id: str
    path: Path
    authority: str
    envelope: dict[str, Any]
    spooled_at: str
    attempts: int
    last_error: str | None
    evidence: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SPOOL_VERSION,
            "permitId": self.permit_id,
            "authority": self.authority,
            "envelope": self.envelope,
            "spooledAt": self.spooled_at,
            "attempts": self.attempts,
            "lastError": self.last_error,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Unreadable:
    """A spool file that does not parse: reported, never deleted."""

    path: Path
    error: str


@dataclass
class FlushReport:
    """What one flush did: ``uploaded`` (permit id → log index), ``remaining`` (permit id → why),
    ``unreadable`` files, and the bundles written for ``--evidence`` (permit id → path) or not
    (permit id → why; the receipt is logged all the same, ``fiat bundle`` exports it)."""

    uploaded: dict[str, int] = field(default_factory=dict)
    remaining: dict[str, str] = field(default_factory=dict)
    unreadable: list[Unreadable] = field(default_factory=list)
    bundles: dict[str, str] = field(default_factory=dict)
    bundle_errors: dict[str, str] = field(default_factory=dict)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse(path: Path) -> Spooled:
    raw = path.read_bytes()  # FileNotFoundError: uploaded and removed by another process meanwhile
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise MalformedError(WHAT, f"{path} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != SPOOL_VERSION:
        raise MalformedError(WHAT, f"{path}: not a version-{SPOOL_VERSION} spooled receipt")
    permit_id, authority, envelope = doc.get("permitId"), doc.get("authority"), doc.get("envelope")
    if not isinstance(permit_id, str) or path.name != f"{permit_id}.json":
        raise MalformedError(WHAT, f"{path}: its permitId does not match the file name")
    if not isinstance(authority, str) or not isinstance(envelope, dict):
        raise MalformedError(WHAT, f"{path}: authority or envelope missing")
    attempts, last_error, evidence = doc.get("attempts", 0), doc.get("lastError"), doc.get("evidence")
    return Spooled(
        permit_id,
        path,
        authority,
        envelope,
        str(doc.get("spooledAt", "")),
        attempts if isinstance(attempts, int) else 0,
        last_error if isinstance(last_error, str) else None,
        evidence if isinstance(evidence, str) else None,
    )


class ReceiptSpool:
    """The spool directory of one home (see the module docstring for the layout and rules)."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "spool" / "receipts"

    # -- writing -------------------------------------------------------------------------------
    def _ensure(self) -> None:
        for d in (self.dir.parent, self.dir):
            d.mkdir(mode=0o700, exist_ok=True, parents=True)
            os.chmod(d, 0o700)

    def path_for(self, permit_id: str) -> Path:
        if not SAFE_ID.fullmatch(permit_id):
            raise SpoolError(f"the permit id {permit_id!r} is not a safe spool file name; nothing was spooled")
        return self.dir / f"{permit_id}.json"

    def put(self, envelope: dict[str, Any], permit_id: str, authority: str, evidence: Path | None = None) -> Spooled:
        """Write a receipt durably (temporary, fsync, rename, fsync of the directory)."""
        entry = Spooled(
            permit_id,
            self.path_for(permit_id),
            authority.rstrip("/"),
            envelope,
            rfc3339(time.time()),
            0,
            None,
            None if evidence is None else str(evidence.resolve()),
        )
        try:
            self._ensure()
            self._write(entry)
        except OSError as exc:
            raise SpoolError(f"cannot spool the receipt for {permit_id} in {self.dir}: {exc.strerror}") from exc
        return entry

    def _write(self, entry: Spooled) -> None:
        tmp = self.dir / f".{entry.permit_id}.{os.getpid()}.tmp"
        data = json.dumps(entry.to_json(), indent=2, sort_keys=True).encode() + b"\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, entry.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.dir)

    def _remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            _fsync_dir(self.dir)

    # -- reading -------------------------------------------------------------------------------
    def entries(self) -> tuple[list[Spooled], list[Unreadable]]:
        """The spooled receipts, oldest first, and the files that do not parse.

        A temporary left by a writer that is no longer alive (a torn write) is removed.
        """
        if not self.dir.is_dir():
            return [], []
        good: list[Spooled] = []
        bad: list[Unreadable] = []
        for p in sorted(self.dir.iterdir()):
            if p.name.startswith("."):
                m = re.fullmatch(r"\.[A-Za-z0-9_-]+\.(\d+)\.tmp", p.name)
                if m and not _alive(int(m.group(1))):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                continue
            if not p.name.endswith(".json"):
                continue
            try:
                good.append(_parse(p))
            except FileNotFoundError:
                continue  # uploaded (and removed) by another process meanwhile
            except OSError as exc:
                bad.append(Unreadable(p, f"cannot read it: {exc.strerror}"))
            except MalformedError as exc:
                bad.append(Unreadable(p, str(exc)))
        good.sort(key=lambda e: (e.spooled_at, e.permit_id))
        return good, bad

    def pending(self, authority: str | None = None) -> list[Spooled]:
        entries, _ = self.entries()
        return [e for e in entries if authority is None or e.authority == authority.rstrip("/")]

    # -- uploading -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, entry: Spooled, deadline: float) -> Iterator[bool]:
        """An exclusive flock on the entry's file, waited for until ``deadline`` (monotonic);
        yields False if another process held it all that time. A file already gone (another
        process uploaded it) needs no lock: uploading it again is idempotent."""
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except FileNotFoundError:
            yield True
            return
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.02)
            yield True
        finally:
            os.close(fd)

    def upload(self, entry: Spooled, budget: float, *, url: str | None = None, lock: bool = True) -> Uploaded:
        """Upload one receipt, retrying within ``budget`` seconds; on success the file is removed
        and the result has its log index, otherwise the file is kept with its attempts counted.

        ``url`` overrides the authority the entry names. With ``lock``, a process uploading the
        same file is waited for (within the budget), and the receipt is then sent all the same:
        the authority answers the index it logged it at. ``lock=False`` is for the process that
        just spooled the receipt (nobody else can be uploading it yet to any harm).
        """
        if not lock:
            return self._upload(entry, budget, url)
        started = time.monotonic()
        with self._locked(entry, started + budget) as held:
            if not held:
                return Uploaded(entry, None, "another process held it for the whole upload bound")
            return self._upload(entry, budget - (time.monotonic() - started), url)

    def _upload(self, entry: Spooled, budget: float, url: str | None) -> Uploaded:
        deadline = time.monotonic() + max(budget, 0.0)
        target = (url or entry.authority).rstrip("/")
        delay = FIRST_BACKOFF
        attempts, error = entry.attempts, "not tried"
        with AuthorityClient(target) as client:
            while True:
                attempts += 1
                remaining = max(deadline - time.monotonic(), 0.05)
                try:
                    index = int(client.receipt(entry.envelope, timeout=remaining)["logIndex"])
                except ClientError as exc:
                    error = str(exc)
                    retry = exc.status is None or exc.status >= 500
                    if retry and time.monotonic() + delay < deadline:
                        time.sleep(delay)
                        delay = min(delay * 2, MAX_BACKOFF)
                        continue
                    break
                except (KeyError, TypeError, ValueError) as exc:
                    error = f"the authority at {target} answered without a log index: {exc}"
                    break
                self._remove(entry.path)
                return Uploaded(entry, index, None, target)
        with contextlib.suppress(OSError):
            if entry.path.exists():
                self._write(dataclasses.replace(entry, attempts=attempts, last_error=error))
        return Uploaded(entry, None, error, target)

    def flush(
        self,
        budget: float,
        *,
        authority: str | None = None,
        url: str | None = None,
        runtime_key: Ed25519PrivateKey | None = None,
        on_entry: Callable[[Uploaded], None] | None = None,
    ) -> FlushReport:
        """Upload every receipt spooled for ``authority`` (all, when None) within ``budget`` seconds
        in all; ``url`` sends them all to that authority instead of the one each names. With
        ``runtime_key``, an uploaded receipt's bundle is written where its ``evidence`` asks."""
        report = FlushReport()
        entries, report.unreadable = self.entries()
        deadline = time.monotonic() + budget
        for entry in entries:
            if authority is not None and entry.authority != authority.rstrip("/"):
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                report.remaining[entry.permit_id] = "the flush ran out of time before trying it"
                continue
            done = self.upload(entry, left, url=url)
            if done.index is not None:
                report.uploaded[entry.permit_id] = done.index
                if entry.evidence and runtime_key is not None:
                    try:
                        write_bundle(done.authority, runtime_key, entry.permit_id, Path(entry.evidence))
                        report.bundles[entry.permit_id] = entry.evidence
                    except ClientError as exc:
                        report.bundle_errors[entry.permit_id] = str(exc)
                    except OSError as exc:
                        report.bundle_errors[entry.permit_id] = f"cannot write {entry.evidence}: {exc.strerror}"
            else:
                report.remaining[entry.permit_id] = done.error or "not uploaded"
            if on_entry is not None:
                on_entry(done)
        return report


@dataclass(frozen=True)
class Uploaded:
    """The result of uploading one spooled receipt: its log index, or why not."""

    entry: Spooled
    index: int | None
    error: str | None
    authority: str = ""


def write_bundle(authority: str, key: Ed25519PrivateKey, permit_id: str, target: Path) -> None:
    """Fetch the permit's evidence bundle (read with the runtime key, DPoP) and write it atomically."""
    with AuthorityClient(authority) as client:
        bundle = client.bundle(key, permit_id)
    write_atomically(target, json.dumps(bundle, indent=2) + "\n")


def write_atomically(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through a fresh temporary file beside it, then rename it over.

    The temporary file is made by ``mkstemp`` (``O_CREAT | O_EXCL``, mode 0600, an unpredictable
    name), so a symbolic link planted where the temporary file would go cannot redirect the
    write to another file; the rename replaces ``target`` itself, never what a link there names.
    """
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


class Flusher:
    """Flushes a spool in a background thread, at most one flush at a time, with backoff.

    :meth:`poke` is cheap: the heartbeat loop calls it after every successful check (trust
    is fresh, so the authority is reachable); it starts a flush when one is due — at once the
    first time, then after ``idle`` seconds, and with doubling backoff while receipts remain.
    """

    def __init__(
        self,
        spool: ReceiptSpool,
        authority: str,
        budget: float,
        runtime_key: Ed25519PrivateKey | None = None,
        idle: float = 5.0,
    ) -> None:
        self.spool, self.authority, self.budget, self.runtime_key = spool, authority, budget, runtime_key
        self.idle = idle
        self._next = 0.0
        self._backoff = 1.0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last: FlushReport | None = None

    def poke(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next or (self._thread is not None and self._thread.is_alive()):
                return
            self._next = now + self.idle
            self._thread = threading.Thread(target=self._run, name="fiat-spool-flush", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            report = self.spool.flush(self.budget, authority=self.authority, runtime_key=self.runtime_key)
        except (FiatError, OSError):
            report = None
        self.last = report
        with self._lock:
            if report is None or report.remaining:
                self._next = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, 60.0)
            else:
                self._backoff = 1.0

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for a flush in progress."""
        thread = self._thread
        if thread is not None:
            thread.join(max(timeout, 0.0))
