"""C2SP tlog-witness (https://c2sp.org/tlog-witness): the ``add-checkpoint`` wire format.

Pure protocol code shared by the witness (``fiat witness serve``) and the log that submits to
witnesses: encoding and strict parsing of the request body, the ``409 Conflict`` size body,
the response's cosignature lines, and the monitoring path. No I/O, no HTTP.

Request body (tlog-witness §add-checkpoint)::

    old <size>\\n                 ASCII decimal, no leading zeroes (``0`` for zero)
    <base64 hash>\\n              zero or more consistency proof lines, at most 63
    \\n                           an empty line
    <checkpoint>                  a signed note (C2SP tlog-checkpoint), possibly several signatures

``409 Conflict`` body: the witness's latest cosigned size in decimal and a newline, with
``Content-Type: text/x.tlog.size``. ``200`` body: one or more note signature lines
(``— <name> <base64>\\n``), cosignatures (C2SP tlog-cosignature) on the checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from fiat.errors import MalformedError
from fiat.tlog import merkle, note

#: tlog-witness §add-checkpoint: "The client MUST NOT send more than 63 consistency proof lines."
MAX_PROOF_LINES = 63
#: The media type of a ``409 Conflict`` body (tlog-witness §add-checkpoint).
SIZE_MEDIA_TYPE = "text/x.tlog.size"
#: Where a witness takes submissions, under its submission prefix.
ADD_CHECKPOINT_PATH = "/add-checkpoint"
#: A bound on a request body: 63 proof lines and a checkpoint with up to 100 signatures.
MAX_REQUEST_SIZE = 1 << 20


def _decimal(text: str, what: str) -> int:
    """An ASCII decimal with no leading zeroes (unless it is ``0``), below 2**63."""
    if not text or not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0") or len(text) > 19:
        raise MalformedError(what, f"{text[:30]!r} is not an ASCII decimal with no leading zeroes")
    value = int(text)
    if value >= 1 << 63:
        raise MalformedError(what, "out of range")
    return value


@dataclass(frozen=True)
class AddCheckpointRequest:
    """One ``add-checkpoint`` submission: the old size, the consistency proof, the signed checkpoint."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes  # the signed note, verbatim

    def encode(self) -> bytes:
        if len(self.proof) > MAX_PROOF_LINES:
            raise ValueError(f"a consistency proof of more than {MAX_PROOF_LINES} hashes cannot be sent")
        lines = [f"old {self.old_size}", *(note.b64(h) for h in self.proof)]
        return ("\n".join(lines) + "\n\n").encode("ascii") + self.checkpoint

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpointRequest:
        """Strictly parse a request body; a :class:`MalformedError` means ``400 Bad Request``."""
        what = "add-checkpoint request"
        if len(body) > MAX_REQUEST_SIZE:
            raise MalformedError(what, f"larger than {MAX_REQUEST_SIZE} bytes")
        head, sep, checkpoint = body.partition(b"\n\n")
        if not sep:
            raise MalformedError(what, "no empty line separates the old size and proof from the checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError as exc:
            raise MalformedError(what, "the old size and proof lines are not ASCII") from exc
        first = lines[0]
        if not first.startswith("old "):
            raise MalformedError(what, f"the first line must be 'old <size>', not {first[:40]!r}")
        old = _decimal(first[len("old ") :], "old size")
        proof_lines = lines[1:]
        if len(proof_lines) > MAX_PROOF_LINES:
            raise MalformedError(what, f"more than {MAX_PROOF_LINES} consistency proof lines")
        proof = []
        for line in proof_lines:
            h = note.b64decode_strict(line, what)
            if len(h) != merkle.HASH_SIZE:
                raise MalformedError(what, f"a proof hash is {len(h)} bytes, expected {merkle.HASH_SIZE}")
            proof.append(h)
        if not checkpoint:
            raise MalformedError(what, "the checkpoint is missing")
        return cls(old, tuple(proof), checkpoint)


def encode_size(size: int) -> bytes:
    """The ``409 Conflict`` body: the latest cosigned size, in decimal, and a newline."""
    return f"{size}\n".encode("ascii")


def parse_size(body: bytes) -> int:
    """Parse a ``text/x.tlog.size`` body (a decimal and a newline)."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedError("tlog size", "not ASCII") from exc
    if not text.endswith("\n"):
        raise MalformedError("tlog size", "the size must end with a newline")
    return _decimal(text[:-1], "tlog size")


def encode_signatures(signatures: Sequence[note.Signature]) -> bytes:
    """A ``200`` body: the note signature lines, each ``— <name> <base64>`` and a newline."""
    if not signatures:
        raise ValueError("a witness answers at least one cosignature")
    return "".join(s.line() for s in signatures).encode("utf-8")


def parse_signatures(body: bytes) -> list[note.Signature]:
    """Parse a ``200`` body into signature lines (not yet verified: the caller checks the keys it trusts)."""
    what = "add-checkpoint response"
    if not body or len(body) > note.MAX_NOTE_SIZE:
        raise MalformedError(what, "empty or too large")
    # A signature block is exactly what follows a note's blank line: reuse the note parser.
    parsed = note.parse(b"x\n\n" + body)
    return list(parsed.signatures)


def origin_hash(origin: str) -> str:
    """tlog-witness §Monitor Retrieval Mechanism: SHA-256 of the origin, lowercase hex."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


def checkpoint_path(origin: str) -> str:
    """``<monitoring prefix>/<origin hash>/checkpoint``: the witness's latest cosigned checkpoint of a log."""
    return f"/{origin_hash(origin)}/checkpoint"
