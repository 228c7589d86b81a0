"""A witness home's keys: the Ed25519 cosigner key and the ML-DSA-44 cosigner key.

* ``keys/witness.pem`` — Ed25519, PKCS#8 PEM, mode 0600 (read and written by :mod:`fiat.keys.pem`, as every
  Fiat key).
* ``keys/witness-mldsa.key`` — ML-DSA-44: one line, the base64 of the 32-byte seed ξ from which
  FIPS 204 ML-DSA.KeyGen_internal derives the key pair (the "seed" private key format of
  draft-ietf-lamps-dilithium-certificates), mode 0600, never overwritten; a file others can read
  is refused, as for the PEM keys.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

from fiat.errors import KeyFileError

ED25519_FILE = "witness.pem"
MLDSA_FILE = "witness-mldsa.key"
SEED_SIZE = 32


def write_mldsa(path: Path, key: MLDSA44PrivateKey) -> None:
    """Write the seed, 0600; fails if ``path`` exists (a key is never replaced)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; Fiat never overwrites a key") from exc
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, base64.b64encode(key.private_bytes_raw()) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def load_mldsa(path: Path) -> MLDSA44PrivateKey:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"no ML-DSA-44 witness key at {path}; run `fiat witness init` on the home to create it, "
            "or set witness.mldsa = false"
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}`"
        )
    text = path.read_bytes().strip()
    try:
        seed = base64.b64decode(text, validate=True)
    except binascii.Error:
        seed = b""
    if len(seed) != SEED_SIZE:
        raise KeyFileError(f"{path} does not hold an ML-DSA-44 seed (one line: base64 of {SEED_SIZE} bytes)")
    return MLDSA44PrivateKey.from_seed_bytes(seed)


def ensure_mldsa(keys_dir: Path) -> tuple[MLDSA44PrivateKey, bool]:
    path = keys_dir / MLDSA_FILE
    if path.exists():
        return load_mldsa(path), False
    key = MLDSA44PrivateKey.generate()
    try:
        write_mldsa(path, key)
    except KeyFileError:
        return load_mldsa(path), False  # another process won the race
    return key, True
