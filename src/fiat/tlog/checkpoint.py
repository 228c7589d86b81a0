"""C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): the signed tree head."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fiat.errors import MalformedError, NoteVerificationError
from fiat.tlog import note
from fiat.tlog.merkle import HASH_SIZE


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text — tlog-checkpoint §Note text."""
        lines = [self.origin, str(self.size), note.b64(self.root), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse_text(cls, text: str) -> Checkpoint:
        what = "checkpoint"
        if not text.endswith("\n"):
            raise MalformedError(what, "the note text must end with a newline")
        lines = text[:-1].split("\n")
        # At least three non-empty lines: origin, tree size, root hash.
        if len(lines) < 3:
            raise MalformedError(what, "expected at least three lines: origin, tree size, root hash")
        origin, size_s, root_s, *ext = lines
        if not origin:
            raise MalformedError(what, "the origin line is empty")
        # Tree size: ASCII decimal with no leading zeroes (unless 0).
        if not size_s.isascii() or not size_s.isdigit() or (len(size_s) > 1 and size_s[0] == "0"):
            raise MalformedError(what, f"tree size {size_s[:30]!r} is not a decimal with no leading zeroes")
        if len(size_s) > 20 or int(size_s) >= 1 << 63:
            raise MalformedError(what, "tree size is out of range")
        root = note.b64decode_strict(root_s, what)
        if len(root) != HASH_SIZE:
            raise MalformedError(what, f"root hash is {len(root)} bytes, expected {HASH_SIZE}")
        # Extension lines, if any, MUST be non-empty.
        if any(not e for e in ext):
            raise MalformedError(what, "extension lines must not be empty")
        return cls(origin, int(size_s), root, tuple(ext))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint together with the exact signed-note bytes it came from."""

    checkpoint: Checkpoint
    note_bytes: bytes

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root

    @property
    def origin(self) -> str:
        return self.checkpoint.origin


def sign_checkpoint(cp: Checkpoint, signer: note.Signer) -> SignedCheckpoint:
    return SignedCheckpoint(cp, note.sign(cp.text(), [signer]))


def open_checkpoint(data: bytes, log_verifier: note.Verifier, extra: Iterable[note.Verifier] = ()) -> SignedCheckpoint:
    """Verify a checkpoint signed by the log key and parse it.

    Steps (tlog-checkpoint §Signatures, signed-note §Signatures):
    1. ``note-signature``: the note verifies under the log's key (unknown signatures ignored).
    2. ``checkpoint-format``: the text is a well-formed checkpoint.
    3. ``checkpoint-origin``: the origin line equals the log's key name.
    """
    n, verified = note.open_note(data, [log_verifier, *extra])
    if not any(s.name == log_verifier.name and s.key_id == log_verifier.key_id for s in verified):
        raise NoteVerificationError(
            "note-signature", f"the checkpoint is not signed by the log key {log_verifier.name}"
        )
    cp = Checkpoint.parse_text(n.text)
    if cp.origin != log_verifier.name:
        raise NoteVerificationError(
            "checkpoint-origin", f"checkpoint origin {cp.origin!r} is not the log's origin {log_verifier.name!r}"
        )
    return SignedCheckpoint(cp, data)


def open_with_any(
    data: bytes, keys: Sequence[note.Verifier], max_sizes: Sequence[int | None] | None = None
) -> SignedCheckpoint:
    """Open a checkpoint signed by any of a log's keys (current and retired ones).

    ``max_sizes[i]`` bounds the tree size key ``i`` may vouch for (a retired log key only
    vouches for trees up to the size at which it was retired: checkpoints carry no time).
    """
    if not keys:
        raise NoteVerificationError("note-signature", "no log key to verify the checkpoint with")
    last: Exception | None = None
    for i, key in enumerate(keys):
        try:
            cp = open_checkpoint(data, key)
        except (MalformedError, NoteVerificationError) as exc:
            last = exc
            continue
        limit = None if max_sizes is None else max_sizes[i]
        if limit is not None and cp.size > limit:
            raise NoteVerificationError(
                "note-signature",
                f"the checkpoint (size {cp.size}) is signed by a retired log key trusted only up to size {limit}",
            )
        return cp
    assert last is not None
    raise last
