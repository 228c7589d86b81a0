"""RFC 8785 JSON Canonicalization Scheme (JCS), standard library only.

The verifier must recompute digests without third-party packages, so the
canonical form is produced here; tests check it against the ``rfc8785``
package byte for byte.

* RFC 8785 §3.2.2.2 — strings: only ``"``, ``\\`` and control characters are
  escaped (``\\b \\t \\n \\f \\r`` or ``\\u00xx``, lower-case hex); all else is raw UTF-8.
* RFC 8785 §3.2.2.3 — numbers: the ECMAScript ``Number.prototype.toString``
  form of the IEEE 754 double; NaN and infinities are not JSON.
* RFC 8785 §3.2.3 — object members sorted by the UTF-16 code units of their names.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fiat.errors import MalformedError

_SURROGATE = re.compile("[\ud800-\udfff]")
_encode_basestring = json.encoder.encode_basestring
MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 64


def _string(s: str) -> str:
    if _SURROGATE.search(s):
        raise MalformedError("JSON", "a string contains a lone UTF-16 surrogate")
    # The standard library's C encoder escapes exactly what RFC 8785 §3.2.2.2 asks:
    # '"', '\\', \b \t \n \f \r in short form, other controls as lower-case \u00xx,
    # and leaves everything else (ensure_ascii=False) as raw UTF-8.
    return _encode_basestring(s)


def canonical_string(s: str) -> bytes:
    """The RFC 8785 bytes of one string (§3.2.2.2)."""
    return _string(s).encode("utf-8")


def _number(x: float) -> str:
    """ECMAScript Number::toString(x) for a finite double (ECMA-262 §6.1.6.1.20)."""
    if not math.isfinite(x):
        raise MalformedError("JSON", "NaN and Infinity are not JSON numbers")
    if x == 0:
        return "0"  # also -0
    sign = "-" if x < 0 else ""
    # repr() gives the shortest round-tripping digits, as ECMAScript requires.
    mantissa, _, exp_s = repr(abs(x)).partition("e")
    int_part, _, frac = mantissa.partition(".")
    digits = (int_part + frac).lstrip("0")
    # n: position of the decimal point relative to the digit string (ECMA-262 "n").
    n = len(int_part.lstrip("0")) if int_part.strip("0") else -(len(frac) - len(frac.lstrip("0")))
    n += int(exp_s) if exp_s else 0
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        s = digits + "0" * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        exp = f"e{'+' if e >= 0 else '-'}{abs(e)}"
        s = (digits[0] + ("." + digits[1:] if k > 1 else "")) + exp
    return sign + s


def _encode(value: Any, depth: int, out: list[str]) -> None:
    if depth > MAX_DEPTH:
        raise MalformedError("JSON", f"nested deeper than {MAX_DEPTH} levels")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise MalformedError("JSON", f"integer {value} is outside the IEEE 754 exact range (RFC 8785 §3.2.2.3)")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, depth + 1, out)
        out.append("]")
    elif isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise MalformedError("JSON", "object member names must be strings")
            if _SURROGATE.search(k):
                raise MalformedError("JSON", "a member name contains a lone UTF-16 surrogate")
        out.append("{")
        for i, k in enumerate(sorted(value, key=lambda s: s.encode("utf-16-be"))):
            if i:
                out.append(",")
            out.append(_string(k))
            out.append(":")
            _encode(value[k], depth + 1, out)
        out.append("}")
    else:
        raise MalformedError("JSON", f"cannot canonicalize a {type(value).__name__}")


def is_plain(value: Any) -> bool:
    """True when the standard library's sorted, compact dump is already RFC 8785.

    That holds without floating-point numbers (their ECMAScript form differs), with
    integers in the exact range, and with member names inside the Basic Multilingual
    Plane (where code-point order equals UTF-16 code-unit order).
    """
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str) or v is None or isinstance(v, bool):
            continue
        if isinstance(v, int):
            if abs(v) > MAX_SAFE_INTEGER:
                return False
            continue
        if depth >= MAX_DEPTH:
            return False
        if isinstance(v, dict):
            for k, x in v.items():
                if not isinstance(k, str) or not (k.isascii() or max(k) < "\U00010000"):
                    return False
                stack.append((x, depth + 1))
        elif isinstance(v, list | tuple):
            stack.extend((x, depth + 1) for x in v)
        else:
            return False
    return True


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value."""
    if is_plain(value):
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: the full encoder below reports it
    out: list[str] = []
    _encode(value, 0, out)
    return "".join(out).encode("utf-8")
