"""Small, strict encoders shared by the verifier (standard library only)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from fiat.errors import MalformedError
from fiat.verify.jcs import canonicalize

_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url(data: bytes) -> str:
    """base64url without padding — RFC 7515 §2 (``BASE64URL``)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str) -> bytes:
    if not isinstance(text, str) or any(c not in _B64URL for c in text) or len(text) % 4 == 1:
        raise MalformedError(what, "not unpadded base64url (RFC 7515 §2)")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:
        raise MalformedError(what, "non-canonical base64url")
    return raw


def b64std(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64std_decode(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedError(what, "expected a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(what, "invalid base64") from exc
    return raw


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_digest(value: Any) -> str:
    """SHA-256 (hex) over the RFC 8785 canonical form."""
    return sha256_hex(canonicalize(value))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise MalformedError("JSON", f"duplicate member name {k[:40]!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise MalformedError("JSON", f"{name} is not a JSON number")


def loads_strict(data: bytes | str, what: str, max_size: int = 16 << 20) -> Any:
    """Parse JSON strictly: size-bounded, depth-bounded, no duplicate names, no NaN/Infinity."""
    if len(data) > max_size:
        raise MalformedError(what, f"larger than {max_size:,} bytes")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError(what, "not UTF-8") from exc
    # Depth check before parsing: json's recursion would otherwise be the limit.
    depth = deepest = 0
    in_str = esc = False
    for ch in data:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > 64:
                raise MalformedError(what, "nested deeper than 64 levels")
        elif ch in "]}":
            depth -= 1
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except MalformedError as exc:
        raise MalformedError(what, exc.reason) from exc
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise MalformedError(what, f"not valid JSON: {exc}") from exc


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, what: str) -> float:
    """Parse an RFC 3339 UTC timestamp (``...Z``) into POSIX seconds."""
    if not isinstance(value, str) or not value.endswith("Z") or "T" not in value:
        raise MalformedError(what, f"{value!r} is not an RFC 3339 UTC time like 2026-01-31T12:00:00Z")
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00").timestamp()
    except ValueError as exc:
        raise MalformedError(what, f"{value!r} is not an RFC 3339 time") from exc
