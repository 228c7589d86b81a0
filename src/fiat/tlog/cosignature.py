"""C2SP tlog-cosignature, Ed25519 (signature type 0x04): witness cosignatures on checkpoints.

Signed message (tlog-cosignature §Ed25519 signed message)::

    cosignature/v1
    time <POSIX seconds>
    <checkpoint note text>

Signature bytes: ``u64 big-endian timestamp || 64-byte Ed25519 signature``;
key ID = ``SHA-256(name || 0x0A || 0x04 || pubkey)[:4]``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fiat.tlog import note


def message(checkpoint_text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


def cosign(checkpoint_note: bytes, name: str, key: Ed25519PrivateKey, timestamp: int) -> bytes:
    """Add a cosignature line to a signed checkpoint and return the new note bytes."""
    parsed = note.parse(checkpoint_note)
    public = key.public_key().public_bytes_raw()
    kid = note.key_id(name, note.ALG_COSIGNATURE_V1, public)
    sig = struct.pack(">Q", timestamp) + key.sign(message(parsed.text, timestamp))
    return note.Note(parsed.text, (*parsed.signatures, note.Signature(name, kid, sig))).encode()


def verified_cosigners(parsed: note.Note, witnesses: Iterable[tuple[str, bytes]]) -> list[tuple[str, int]]:
    """The (name, timestamp) of every known witness whose cosignature verifies; unknown ones are ignored."""
    out = []
    for name, public in witnesses:
        kid = note.key_id(name, note.ALG_COSIGNATURE_V1, public)
        for sig in parsed.signatures:
            if sig.name != name or sig.key_id != kid or len(sig.signature) != 72:
                continue
            (ts,) = struct.unpack(">Q", sig.signature[:8])
            if ts > 2**63 - 1:
                continue
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(sig.signature[8:], message(parsed.text, ts))
            except InvalidSignature:
                continue
            out.append((name, ts))
            break
    return out
