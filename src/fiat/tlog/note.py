"""C2SP signed-note (https://c2sp.org/signed-note) with Ed25519 signatures.

Byte-compatible with Go's ``golang.org/x/mod/sumdb/note``: the same verifier
key (``vkey``) and signer key (``PRIVATE+KEY+...``) encodings, the same key IDs
and, since Ed25519 is deterministic, the same signed bytes.

No I/O here: parsing, signing and verification only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fiat.errors import MalformedError, NoteVerificationError

#: signed-note §Signature types: 0x01 — Ed25519.
ALG_ED25519 = 0x01
#: signed-note §Signature types: 0x04 — timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature).
ALG_COSIGNATURE_V1 = 0x04

SIG_PREFIX = "\u2014 "  # em dash, space — signed-note §Format
#: Verifiers MUST accept at least 16 signatures (signed-note §Format); we cap at 100.
MAX_SIGNATURES = 100
#: An upper bound on the size of a note we are willing to parse.
MAX_NOTE_SIZE = 1 << 20


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4), padding required, no stray characters."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(what, f"invalid base64: {text[:40]!r}") from exc
    # Reject non-canonical encodings (non-zero padding bits) so one value has one spelling.
    if b64(raw) != text:
        raise MalformedError(what, f"non-canonical base64: {text[:40]!r}")
    return raw


def key_id(name: str, alg: int, public_key: bytes) -> int:
    """key ID = SHA-256(key name || 0x0A || signature type || public key)[:4] — signed-note §Signatures."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()
    return int(struct.unpack(">I", digest[:4])[0])


def check_key_name(name: str) -> None:
    """Key names MUST be non-empty and contain no Unicode spaces or '+' — signed-note §Format."""
    if not name:
        raise MalformedError("key name", "key names must not be empty")
    for ch in name:
        if ch == "+" or ch.isspace() or unicodedata.category(ch) == "Zs" or ord(ch) < 0x20:
            raise MalformedError("key name", f"{name!r} contains a space, a control character or '+'")


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 note verifier: a key name, its key ID and its public key."""

    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey | bytes) -> Verifier:
        check_key_name(name)
        raw = public_key if isinstance(public_key, bytes) else public_key.public_bytes_raw()
        if len(raw) != 32:
            raise MalformedError("verifier key", "an Ed25519 public key is 32 bytes")
        return cls(name, key_id(name, ALG_ED25519, raw), raw)

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<hex8 key ID>+<base64(0x01 || pubkey)>`` — signed-note §Verifier keys."""
        vkey = vkey.strip()
        parts = vkey.split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise MalformedError("verifier key", "expected <name>+<hex key ID>+<base64 key>")
        name, hex_id, key_b64 = parts
        check_key_name(name)
        if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
            raise MalformedError("verifier key", f"key ID {hex_id!r} is not 8 lowercase hex digits")
        material = b64decode_strict(key_b64, "verifier key")
        if len(material) != 33 or material[0] != ALG_ED25519:
            raise MalformedError("verifier key", "only Ed25519 keys (type 0x01, 32 bytes) are supported")
        public = material[1:]
        if key_id(name, ALG_ED25519, public) != int(hex_id, 16):
            raise MalformedError("verifier key", "the key ID does not match the key name and public key")
        return cls(name, int(hex_id, 16), public)

    def encode(self) -> str:
        return f"{self.name}+{self.key_id:08x}+{b64(bytes([ALG_ED25519]) + self.public_key)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer:
    """An Ed25519 note signer."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        check_key_name(name)
        self.name = name
        self._key = private_key
        self.verifier = Verifier.from_public_key(name, private_key.public_key())

    @property
    def key_id(self) -> int:
        return self.verifier.key_id

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """Parse Go's signer key format ``PRIVATE+KEY+<name>+<hex8 id>+<base64(0x01 || seed)>``."""
        parts = skey.strip().split("+", 4)  # base64 may itself contain "+"
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise MalformedError("signer key", "expected PRIVATE+KEY+<name>+<hex key ID>+<base64 key>")
        name, hex_id, key_b64 = parts[2:]
        check_key_name(name)
        material = b64decode_strict(key_b64, "signer key")
        if len(material) != 33 or material[0] != ALG_ED25519:
            raise MalformedError("signer key", "only Ed25519 keys (type 0x01, 32-byte seed) are supported")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(material[1:]))
        if f"{signer.key_id:08x}" != hex_id:
            raise MalformedError("signer key", "the key ID does not match the key name and key")
        return signer

    def encode(self) -> str:
        seed = self._key.private_bytes_raw()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{b64(bytes([ALG_ED25519]) + seed)}"

    def sign(self, text: bytes) -> bytes:
        return self._key.sign(text)


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: int
    signature: bytes  # the algorithm's signature, without the 4-byte key ID

    def line(self) -> str:
        return f"{SIG_PREFIX}{self.name} {b64(struct.pack('>I', self.key_id) + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed signed note: its text (with final newline) and all signature lines."""

    text: str
    signatures: tuple[Signature, ...]

    def encode(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode("utf-8")


def _check_text(text: str, what: str) -> None:
    # Signed notes MUST NOT contain ASCII control characters other than newline — §Format.
    for ch in text:
        if ord(ch) < 0x20 and ch != "\n":
            raise MalformedError(what, f"contains the control character {ch!r}")


def check_note_text(text: str) -> None:
    """A note text must end in a newline and carry no control characters — signed-note §Format."""
    if not text.endswith("\n"):
        raise MalformedError("signed note", "the note text must end with a newline")
    _check_text(text, "signed note")


def sign(text: str, signers: Sequence[Signer], existing: Sequence[Signature] = ()) -> bytes:
    """Sign ``text`` with each signer and return the encoded signed note."""
    check_note_text(text)
    if not signers and not existing:
        raise ValueError("a signed note needs at least one signature")
    message = text.encode("utf-8")
    sigs = list(existing) + [Signature(s.name, s.key_id, s.sign(message)) for s in signers]
    return Note(text, tuple(sigs)).encode()


def parse(data: bytes) -> Note:
    """Split a signed note into text and signature lines, rejecting anything malformed."""
    if len(data) > MAX_NOTE_SIZE:
        raise MalformedError("signed note", f"larger than {MAX_NOTE_SIZE} bytes")
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("signed note", "not valid UTF-8") from exc
    _check_text(s, "signed note")
    # The text is separated from the signatures by the last empty line.
    split = s.rfind("\n\n")
    if split < 0:
        raise MalformedError("signed note", "no blank line separates the text from the signatures")
    text, sig_block = s[: split + 1], s[split + 2 :]
    if not sig_block.endswith("\n"):
        raise MalformedError("signed note", "the last signature line must end with a newline")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError("signed note", f"more than {MAX_SIGNATURES} signatures")
    sigs: list[Signature] = []
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise MalformedError("signed note", f"signature line does not start with an em dash: {line[:40]!r}")
        rest = line[len(SIG_PREFIX) :]
        name, sep, sig_b64 = rest.partition(" ")
        if not sep or not name or " " in sig_b64:
            raise MalformedError("signed note", f"signature line is not '— <name> <base64>': {line[:60]!r}")
        check_key_name(name)
        raw = b64decode_strict(sig_b64, "signed note")
        if len(raw) < 5:
            raise MalformedError("signed note", "a signature must hold a 4-byte key ID and a signature")
        sigs.append(Signature(name, struct.unpack(">I", raw[:4])[0], raw[4:]))
    return Note(text, tuple(sigs))


def open_note(data: bytes, verifiers: Iterable[Verifier]) -> tuple[Note, list[Signature]]:
    """Parse and verify a signed note — signed-note §Signatures.

    Returns the note and the signatures that verified. Signatures from unknown
    keys are ignored; a known key's bad signature rejects the whole note; a note
    with no verified signature from a known key is rejected.
    """
    note = parse(data)
    known: dict[tuple[str, int], Verifier] = {}
    for v in verifiers:
        other = known.get((v.name, v.key_id))
        if other is not None and other.public_key != v.public_key:
            # As Go's note.VerifierList: two keys with one name and ID cannot be told apart.
            raise NoteVerificationError("note-signature", f"ambiguous verifier keys for {v.name}+{v.key_id:08x}")
        known[(v.name, v.key_id)] = v
    message = note.text.encode("utf-8")
    verified: list[Signature] = []
    for sig in note.signatures:
        trusted = known.get((sig.name, sig.key_id))
        if trusted is None:
            continue  # MUST ignore signatures from unknown keys
        if not trusted.verify(message, sig.signature):
            raise NoteVerificationError(
                "note-signature", f"the signature by {sig.name} ({sig.key_id:08x}) does not verify"
            )
        verified.append(sig)
    if not verified:
        names = ", ".join(sorted({f"{k[0]}+{k[1]:08x}" for k in known})) or "none"
        raise NoteVerificationError("note-signature", f"no signature from a trusted key (trusted: {names})")
    return note, verified
