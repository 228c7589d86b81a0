"""Small, strict encoders shared by the verifier (standard library only)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import math
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fiat.errors import MalformedError
from fiat.formats.jcs import canonicalize

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
MAX_DEPTH = 64


def b64url(data: bytes) -> str:
    """base64url without padding — RFC 7515 §2 (``BASE64URL``)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str) -> bytes:
    """Unpadded base64url (RFC 7515 §2) in its one canonical spelling (unused bits zero, RFC 4648 §3.5)."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise MalformedError(what, "not unpadded base64url (RFC 7515 §2)")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:
        raise MalformedError(what, "non-canonical base64url")
    return raw


def b64std(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64std_decode(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4), padded, in its one canonical spelling.

    RFC 4648 §3.5 lets a decoder ignore the unused bits of the last character; Fiat
    does not: an encoding whose unused bits are not zero (or any other spelling that
    does not re-encode to itself) is refused, so each value has exactly one encoding
    and a bundle's bytes are unique (the same rule as :func:`b64url_decode` for JWS,
    and as ``fiat.tlog.note.b64decode_strict`` for signed notes and proof files).
    """
    if not isinstance(text, str):
        raise MalformedError(what, "expected a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(what, "invalid base64") from exc
    if b64std(raw) != text:
        raise MalformedError(what, "non-canonical base64 (RFC 4648 §3.5: the unused bits must be zero)")
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
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except MalformedError as exc:
        raise MalformedError(what, exc.reason) from exc
    except RecursionError as exc:  # the C scanner's recursion guard: hostile nesting
        raise MalformedError(what, f"nested deeper than {MAX_DEPTH} levels") from exc
    except (json.JSONDecodeError, ValueError) as exc:
        raise MalformedError(what, f"not valid JSON: {exc}") from exc
    deepest = _depth(value) if len(data) < 65536 else _text_depth(data)
    if deepest > MAX_DEPTH:
        raise MalformedError(what, f"nested deeper than {MAX_DEPTH} levels")
    return value


_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: linear, no backtracking
_BRACKETS = str.maketrans({"[": "\x01", "{": "\x01", "]": "\xff", "}": "\xff"})
_NOT_BRACKET = re.compile(r"[^\x01\xff]")


def _text_depth(text: str) -> int:
    """Nesting depth of already-parsed (hence well-formed) JSON text, in C-speed passes."""
    brackets = _NOT_BRACKET.sub("", _STRINGS.sub("", text).translate(_BRACKETS))
    deltas = memoryview(brackets.encode("latin-1")).cast("b")
    return max(itertools.accumulate(deltas), default=0)


def _depth(value: Any) -> int:
    """Nesting depth, computed iteratively (no recursion on hostile input)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v)
    return deepest


def rfc3339(ts: float) -> str:
    """RFC 3339 UTC time to the second (``2026-01-31T12:00:00Z``)."""
    return _rfc3339_second(math.floor(ts))


@lru_cache(maxsize=256)
def _rfc3339_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, what: str) -> float:
    """Parse an RFC 3339 UTC timestamp (``...Z``) into POSIX seconds."""
    if not isinstance(value, str) or not value.endswith("Z") or "T" not in value:
        raise MalformedError(what, f"{value!r} is not an RFC 3339 UTC time like 2026-01-31T12:00:00Z")
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00").timestamp()
    except ValueError as exc:
        raise MalformedError(what, f"{value!r} is not an RFC 3339 time") from exc
