"""Ed25519 key files: PKCS#8 PEM, written 0600, optionally passphrase-protected.

Writing never replaces an existing key file (``O_EXCL``); loading refuses a
private key that other users can read, the way OpenSSH does.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.errors import KeyFileError

PASSPHRASE_ENV = "FIAT_KEY_PASSPHRASE"  # noqa: S105 - the variable name, not a secret


def _passphrase(explicit: str | None) -> bytes | None:
    value = explicit if explicit is not None else os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def write_private_key(path: Path, key: Ed25519PrivateKey, passphrase: str | None = None) -> None:
    """Write ``key`` as PKCS#8 PEM with mode 0600. Fails if ``path`` exists."""
    secret = _passphrase(passphrase)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; Fiat never overwrites a key") from exc
    try:
        os.fchmod(fd, 0o600)  # in case the umask widened nothing but a filesystem ignores mode
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_key(path: Path, passphrase: str | None = None) -> tuple[Ed25519PrivateKey, bool]:
    """Load the key at ``path``, creating it first if absent. Returns (key, created)."""
    if path.exists():
        return load_private_key(path, passphrase), False
    key = Ed25519PrivateKey.generate()
    try:
        write_private_key(path, key, passphrase)
    except KeyFileError:
        return load_private_key(path, passphrase), False  # another process won the race
    return key, True


def load_private_key(path: Path, passphrase: str | None = None) -> Ed25519PrivateKey:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise KeyFileError(f"no key at {path}; run `fiat init` to create the home's keys") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}`"
        )
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=_passphrase(passphrase))
    except TypeError as exc:
        raise KeyFileError(
            f"{path} is encrypted; set {PASSPHRASE_ENV} to its passphrase"
            if b"ENCRYPTED" in data
            else f"{path} is not encrypted, but a passphrase was given; unset {PASSPHRASE_ENV}"
        ) from exc
    except ValueError as exc:
        raise KeyFileError(f"cannot read {path}: wrong passphrase or not a PKCS#8 PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, but Fiat keys are Ed25519")
    return key
