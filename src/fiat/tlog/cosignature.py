"""C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature): witness cosignatures on checkpoints.

Two cosignature types (tlog-cosignature §Format):

* **Ed25519, signature type 0x04** — signed message (§Ed25519 signed message)::

      cosignature/v1
      time <POSIX seconds>
      <checkpoint note text>

  key ID = ``SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]``.

* **ML-DSA-44, signature type 0x06** — signed message (§ML-DSA-44 signed message), the
  ``cosigned_message`` struct in RFC 8446 §3 presentation language::

      struct {
          uint8 label[12] = "subtree/v1\\n\\0";
          opaque cosigner_name<1..2^8-1>;
          uint64 timestamp;
          opaque log_origin<1..2^8-1>;
          uint64 start;
          uint64 end;
          uint8 hash[32];
      } cosigned_message;

  (a ``<1..2^8-1>`` vector is a one-byte length and the bytes; integers are big-endian),
  signed with pure ML-DSA-44 (FIPS 204, empty context);
  key ID = ``SHA-256(name || 0x0A || 0x06 || 1312-byte public key)[:4]``.

Both signatures are a ``timestamped_signature``: ``u64 big-endian timestamp || signature``
(64 bytes for Ed25519, 2420 for ML-DSA-44). The timestamp MUST NOT exceed 2^63 - 1.
ML-DSA-44 comes from ``cryptography`` (>= 50, ``hazmat.primitives.asymmetric.mldsa``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey, MLDSA44PublicKey

from fiat.errors import MalformedError
from fiat.tlog import note

#: tlog-cosignature §Format: ML-DSA-44 cosignatures are signature type 0x06.
ALG_COSIGNATURE_MLDSA44 = 0x06
#: tlog-cosignature §ML-DSA-44 signed message: the 12-byte label.
MLDSA_LABEL = b"subtree/v1\n\x00"
ED25519_PUBLIC_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
MLDSA44_PUBLIC_SIZE = 1312
MLDSA44_SIGNATURE_SIZE = 2420
#: tlog-cosignature §Format: "It MUST NOT exceed 2^63 - 1".
MAX_TIMESTAMP = 2**63 - 1
_HASH_SIZE = 32


def _check_timestamp(timestamp: int) -> None:
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"a cosignature timestamp is between 0 and 2^63 - 1, not {timestamp}")


def message(checkpoint_text: str, timestamp: int) -> bytes:
    """The Ed25519 (0x04) signed message: ``cosignature/v1``, ``time N``, the checkpoint's note text."""
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


def mldsa_message(cosigner_name: str, timestamp: int, origin: str, start: int, end: int, root: bytes) -> bytes:
    """The ML-DSA-44 (0x06) signed message: the ``cosigned_message`` struct (see the module docstring)."""
    name_b, origin_b = cosigner_name.encode("utf-8"), origin.encode("utf-8")
    for what, value in (("cosigner_name", name_b), ("log_origin", origin_b)):
        if not 1 <= len(value) <= 255:
            raise ValueError(f"{what} is 1 to 255 bytes in a cosigned_message, not {len(value)}")
    _check_timestamp(timestamp)
    if start != 0 and timestamp != 0:
        raise ValueError("a subtree cosignature (start != 0) has a zero timestamp")
    if not 0 <= start <= end < 2**64:
        raise ValueError(f"the subtree [{start}, {end}) is not a range of 64-bit indexes")
    if len(root) != _HASH_SIZE:
        raise ValueError(f"the hash is {_HASH_SIZE} bytes, not {len(root)}")
    return b"".join(
        (
            MLDSA_LABEL,
            bytes([len(name_b)]),
            name_b,
            struct.pack(">Q", timestamp),
            bytes([len(origin_b)]),
            origin_b,
            struct.pack(">QQ", start, end),
            root,
        )
    )


def ed25519_key_id(name: str, public_key: bytes) -> int:
    """``SHA-256(<name> || "\\n" || 0x04 || 32-byte Ed25519 cosigner public key)[:4]``."""
    return note.key_id(name, note.ALG_COSIGNATURE_V1, public_key)


def mldsa_key_id(name: str, public_key: bytes) -> int:
    """``SHA-256(<name> || "\\n" || 0x06 || 1312-byte ML-DSA-44 cosigner public key)[:4]``."""
    return note.key_id(name, ALG_COSIGNATURE_MLDSA44, public_key)


def vkey(name: str, alg: int, public_key: bytes) -> str:
    """A cosigner's vkey (signed-note §Verifier keys; tlog-cosignature §Format): type 0x04 or 0x06."""
    note.check_key_name(name)
    sizes = {note.ALG_COSIGNATURE_V1: ED25519_PUBLIC_SIZE, ALG_COSIGNATURE_MLDSA44: MLDSA44_PUBLIC_SIZE}
    if sizes.get(alg) != len(public_key):
        raise ValueError(f"no cosigner key of type 0x{alg:02x} is {len(public_key)} bytes")
    return f"{name}+{note.key_id(name, alg, public_key):08x}+{note.b64(bytes([alg]) + public_key)}"


def parse_vkey(text: str) -> tuple[str, int, bytes]:
    """A cosigner vkey: (name, signature type 0x04 or 0x06, public key); the key ID must match."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise MalformedError("cosigner vkey", "expected <name>+<hex key ID>+<base64 key>")
    name, hex_id, key_b64 = parts
    note.check_key_name(name)
    if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
        raise MalformedError("cosigner vkey", f"key ID {hex_id!r} is not 8 lowercase hex digits")
    material = note.b64decode_strict(key_b64, "cosigner vkey")
    alg, public = (material[0], material[1:]) if material else (-1, b"")
    sizes = {note.ALG_COSIGNATURE_V1: ED25519_PUBLIC_SIZE, ALG_COSIGNATURE_MLDSA44: MLDSA44_PUBLIC_SIZE}
    if sizes.get(alg) != len(public):
        raise MalformedError(
            "cosigner vkey", "expected an Ed25519 (0x04, 32 bytes) or ML-DSA-44 (0x06, 1312 bytes) cosigner key"
        )
    if note.key_id(name, alg, public) != int(hex_id, 16):
        raise MalformedError("cosigner vkey", "the key ID does not match the key name and public key")
    return name, alg, public


def ed25519_signature(checkpoint_text: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> note.Signature:
    """An Ed25519 (0x04) cosignature line on a checkpoint's note text."""
    _check_timestamp(timestamp)
    kid = ed25519_key_id(name, key.public_key().public_bytes_raw())
    return note.Signature(name, kid, struct.pack(">Q", timestamp) + key.sign(message(checkpoint_text, timestamp)))


def mldsa_signature(
    name: str, key: MLDSA44PrivateKey, timestamp: int, origin: str, size: int, root: bytes
) -> note.Signature:
    """An ML-DSA-44 (0x06) cosignature line on a checkpoint: the whole tree, start 0 and end ``size``
    (tlog-witness §add-checkpoint: "start MUST be zero and end MUST be the checkpoint size")."""
    kid = mldsa_key_id(name, key.public_key().public_bytes_raw())
    signed = key.sign(mldsa_message(name, timestamp, origin, 0, size, root))
    return note.Signature(name, kid, struct.pack(">Q", timestamp) + signed)


def cosign(checkpoint_note: bytes, name: str, key: Ed25519PrivateKey, timestamp: int) -> bytes:
    """Add an Ed25519 cosignature line to a signed checkpoint and return the new note bytes."""
    parsed = note.parse(checkpoint_note)
    sig = ed25519_signature(parsed.text, name, key, timestamp)
    return note.Note(parsed.text, (*parsed.signatures, sig)).encode()


def _verified(
    parsed: note.Note,
    witnesses: Iterable[tuple[str, bytes]],
    key_id: Callable[[str, bytes], int],
    signature_size: int,
    check: Callable[[str, bytes, int, bytes], None],
) -> list[tuple[str, int]]:
    """The (name, timestamp) of every witness with a line of its name and key ID whose
    ``timestamped_signature`` (tlog-cosignature §Format) ``check`` accepts; other lines are ignored.
    ``check(name, public key, timestamp, signature)`` raises on a bad signature."""
    out = []
    for name, public in witnesses:
        kid = key_id(name, public)
        for sig in parsed.signatures:
            if sig.name != name or sig.key_id != kid or len(sig.signature) != 8 + signature_size:
                continue
            (ts,) = struct.unpack(">Q", sig.signature[:8])
            if ts > MAX_TIMESTAMP:
                continue
            try:
                check(name, public, ts, sig.signature[8:])
            except (InvalidSignature, ValueError):
                continue
            out.append((name, ts))
            break
    return out


def verified_cosigners(parsed: note.Note, witnesses: Iterable[tuple[str, bytes]]) -> list[tuple[str, int]]:
    """The (name, timestamp) of every known Ed25519 witness whose cosignature verifies; unknown ones are ignored."""

    def check(_name: str, public: bytes, ts: int, signature: bytes) -> None:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message(parsed.text, ts))

    return _verified(parsed, witnesses, ed25519_key_id, ED25519_SIGNATURE_SIZE, check)


def verified_mldsa_cosigners(
    parsed: note.Note, origin: str, size: int, root: bytes, witnesses: Iterable[tuple[str, bytes]]
) -> list[tuple[str, int]]:
    """The (name, timestamp) of every known ML-DSA-44 witness whose checkpoint cosignature (start 0,
    end ``size``) on ``origin``/``root`` verifies; unknown signature lines are ignored."""

    def check(name: str, public: bytes, ts: int, signature: bytes) -> None:
        MLDSA44PublicKey.from_public_bytes(public).verify(signature, mldsa_message(name, ts, origin, 0, size, root))

    return _verified(parsed, witnesses, mldsa_key_id, MLDSA44_SIGNATURE_SIZE, check)
