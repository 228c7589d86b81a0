"""RFC 8785 (JCS) and compact JSON for the authority's hot path, encoded by orjson.

``fiat.formats.jcs`` is the reference canonicalizer: standard library only, so the
offline verifier needs nothing else. Here the same rules choose the encoder, and
orjson writes the bytes about ten times faster:

* RFC 8785 §3.2.2.2 — strings: orjson escapes exactly ``"``, ``\\`` and the control
  characters (``\\b \\t \\n \\f \\r`` short, others ``\\u00xx`` lower-case) and writes
  everything else as raw UTF-8, as JCS asks;
* RFC 8785 §3.2.3 — members sorted (``OPT_SORT_KEYS``): code-point order, which is
  UTF-16 code-unit order when every member name lies in the Basic Multilingual Plane;
* RFC 8785 §3.2.2.3 — numbers: integers only; orjson's float format is not
  ECMAScript's, so a value holding a float goes to the reference encoder.

:func:`canonical` checks those conditions (``jcs.is_plain``) and falls back to
``jcs.canonicalize`` otherwise; the tests hold both to the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from fiat.formats import jcs


def canonical(value: Any) -> bytes:
    """The RFC 8785 bytes of a JSON value (same bytes as ``jcs.canonicalize``)."""
    if jcs.is_plain(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # a lone surrogate: the reference encoder reports it
    return jcs.canonicalize(value)


def canonical_built(value: Any) -> bytes:
    """RFC 8785 bytes of a value Fiat built itself, without the type walk.

    The caller guarantees what ``jcs.is_plain`` would check: only strings, integers in the
    exact range, booleans, null, lists and objects whose member names lie in the Basic
    Multilingual Plane; no floating-point numbers. Anything received goes through
    :func:`canonical`.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return jcs.canonicalize(value)


def compact(value: Any) -> bytes:
    """Compact JSON (RFC 8259), member order kept: for JWS payloads, which are not canonicalized."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: the standard library writes it
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
