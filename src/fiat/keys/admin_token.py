"""The admin bearer token: ``<home>/keys/admin.token``, 0600, written by ``fiat init``.

The token is the file's content without surrounding whitespace. It must be visible ASCII
(it travels in an ``Authorization`` header) and reach :data:`MIN_TOKEN_BITS` by the estimate
of :func:`token_bits`, with at least :data:`MIN_TOKEN_DISTINCT` different characters: at
least 32 hex digits or 22 base64url characters. ``fiat serve`` refuses to start otherwise
(:func:`read_admin_token`), naming the file and the fix (``fiat init`` writes a fresh one), so
an empty file can never make ``Authorization: Bearer`` with nothing after it an admin call.
A token file readable by other users is refused like a private key (it may have leaked).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from fiat.errors import AdminTokenError, ConfigError, KeyFileError

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret
ADMIN_TOKEN_PREFIX = "fiat_admin_"  # noqa: S105 - the marker of a generated token, not a secret
#: The least entropy an admin token may have, estimated as :func:`token_bits` does.
MIN_TOKEN_BITS = 128
#: The fewest distinct characters a token may have (rules out ``aaaa…`` and ``0000…``).
MIN_TOKEN_DISTINCT = 8
_HEX = frozenset("0123456789abcdefABCDEF")


def token_bits(token: str) -> int:
    """A token's entropy as Fiat estimates it: 4 bits a character when every character (after a
    ``fiat_admin_`` prefix) is a hex digit, 6 bits otherwise (base64url and the like). So a token
    needs at least 32 hex digits or 22 other characters to reach :data:`MIN_TOKEN_BITS`."""
    body = token.removeprefix(ADMIN_TOKEN_PREFIX)
    return len(body) * (4 if set(body) <= _HEX else 6)


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be the admin token, or None when it can."""
    if not token:
        return "it is empty"
    if any(not 0x21 <= ord(c) <= 0x7E for c in token):
        return "it holds spaces, control or non-ASCII characters (it travels in an HTTP header)"
    body = token.removeprefix(ADMIN_TOKEN_PREFIX)
    if token_bits(token) < MIN_TOKEN_BITS or len(set(body)) < MIN_TOKEN_DISTINCT:
        return (
            f"it is too weak: at least {MIN_TOKEN_BITS} bits are needed (32 hex digits or 22 base64url "
            f"characters, {MIN_TOKEN_DISTINCT} of them different)"
        )
    return None


def new_admin_token() -> str:
    """A fresh token: the ``fiat_admin_`` prefix and 256 random bits, base64url."""
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def write_admin_token(keys_dir: Path) -> None:
    """Write a fresh admin token to ``keys_dir/admin.token`` (0600; replaces the file atomically)."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = keys_dir / ADMIN_TOKEN_FILE
    tmp = path.with_name(f".{ADMIN_TOKEN_FILE}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_admin_token() + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_admin_token(keys_dir: Path) -> str:
    """The admin bearer token; an :class:`AdminTokenError` saying how to fix it when it is missing, empty or weak.

    ``fiat serve`` calls this before it starts, so a bad file stops the server instead of
    making anyone who sends ``Authorization: Bearer`` with nothing after it admin.
    """
    path = keys_dir / ADMIN_TOKEN_FILE
    home = keys_dir.parent
    fix = f"run `fiat init --home {home}`, which writes a new token (and keeps every key)"
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}`"
                " (and replace the token if others could read it: delete it and run `fiat init`)"
            )
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise AdminTokenError(f"the admin token {path} is missing; {fix}") from None
    except OSError as exc:  # not ours to replace: a ConfigError, not an AdminTokenError
        raise ConfigError(f"cannot read the admin token {path}: {exc}") from exc
    except UnicodeDecodeError:
        raise AdminTokenError(f"the admin token {path} cannot be used: it is not UTF-8 text; {fix}") from None
    problem = token_problem(token)
    if problem is not None:
        raise AdminTokenError(f"the admin token {path} cannot be used: {problem}; {fix}")
    return token


def ensure_admin_token(keys_dir: Path) -> str:
    """The admin bearer token, written first (0600) when the file is missing (never printed by the server)."""
    if not (keys_dir / ADMIN_TOKEN_FILE).exists():
        write_admin_token(keys_dir)
    return read_admin_token(keys_dir)
