"""Hostile bundles and trust roots: refused as malformed, or failed at a step, quickly; never a crash.

The parsers (``Bundle.parse``, ``TrustRoot.parse``) may only raise ``MalformedError``;
``verify`` may only report a failed step. Nothing else may escape, nothing may hang,
and each rejection must take well under a second. Every input here is derived from
a real bundle (``make_execution``) or is plain garbage; the CLI must answer exit 2
with a readable message for what does not parse.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fiat.authorize.permit import Constraints
from fiat.errors import MalformedError
from fiat.formats import dsse as dsse_module
from fiat.formats.encoding import b64url, b64url_decode
from fiat.home import trust_root
from fiat.verify import STEPS, Bundle, TrustRoot, verify
from fiat.verify.bundle import MAX_BUNDLE
from support.evidence import Execution, custom_execution, make_execution
from support.processes import fiat

EXIT_FAILED, EXIT_INVALID = 1, 2
LIMIT_S = 1.0  # each rejection must be this fast

Json = Any
Path_ = tuple[str | int, ...]


# -- fixtures ---------------------------------------------------------------------------------


@dataclass
class Real:
    tmp: Path
    root_exec: Execution
    child: Execution  # parent = root_exec, one approval: every statement kind and an ancestor
    root: TrustRoot
    bundle_json: Json
    bundle_bytes: bytes
    root_json: Json
    root_bytes: bytes


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Real:
    tmp = tmp_path_factory.mktemp("hostile")
    root_exec = make_execution(tmp / "home")
    child = make_execution(tmp / "home", parent=root_exec.jti, approvals=1)
    root = trust_root(child.cfg)
    bj = child.bundle_json()
    rj = root.to_json()
    result = verify(Bundle.parse(json.dumps(bj).encode()), root)
    assert result.verified, [(s.name, s.detail) for s in result.steps]
    return Real(tmp, root_exec, child, root, bj, json.dumps(bj, indent=1).encode(), rj, json.dumps(rj).encode())


# -- the oracle ---------------------------------------------------------------------------------


def check_bundle(data: bytes, root: TrustRoot) -> str:
    """'malformed', 'verified' or the failed step; anything else raised is a bug. Must be fast."""
    start = time.perf_counter()
    try:
        bundle = Bundle.parse(data)
    except MalformedError as exc:
        assert str(exc).startswith("malformed ")
        outcome = "malformed"
    else:
        result = verify(bundle, root)
        assert [s.name for s in result.steps] == list(STEPS)
        failed = result.failed
        outcome = "verified" if result.verified else (failed.name if failed else "?")
        assert outcome != "?"
    elapsed = time.perf_counter() - start
    assert elapsed < LIMIT_S, f"{elapsed:.2f} s to reject {len(data):,} bytes ({outcome})"
    return outcome


def check_root(data: bytes, bundle: Bundle) -> str:
    start = time.perf_counter()
    try:
        root = TrustRoot.parse(data)
    except MalformedError as exc:
        assert str(exc).startswith("malformed ")
        outcome = "malformed"
    else:
        result = verify(bundle, root)
        failed = result.failed
        outcome = "verified" if result.verified else (failed.name if failed else "?")
    elapsed = time.perf_counter() - start
    assert elapsed < LIMIT_S, f"{elapsed:.2f} s to reject a trust root of {len(data):,} bytes ({outcome})"
    return outcome


def normalized(data: bytes) -> Json:
    """The bundle as the verifier sees it, modulo what it may legitimately ignore: repeated copies
    of a genuine statement, and an ancestor's receipt (ancestors need none: ``require_receipt=False``)."""

    def canon(b: Json, ancestor: bool) -> Json:
        statements = {json.dumps(s, sort_keys=True) for s in b["statements"]}
        if ancestor:
            statements = {s for s in statements if "/receipt/v1" not in json.dumps(_statement(json.loads(s)))}
        out = {**b, "statements": sorted(statements)}
        if "ancestors" in b:
            out["ancestors"] = [canon(a, True) for a in b["ancestors"]]
        return out

    return canon(Bundle.parse(data).to_json(), False)


# -- JSON tree helpers ------------------------------------------------------------------------------


def positions(v: Json, path: Path_ = ()) -> Iterator[Path_]:
    yield path
    if isinstance(v, dict):
        for k in v:
            yield from positions(v[k], (*path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from positions(x, (*path, i))


def get(doc: Json, path: Path_) -> Json:
    for p in path:
        doc = doc[p]
    return doc


def replaced(doc: Json, path: Path_, value: Json) -> Json:
    if not path:
        return value
    out = copy.deepcopy(doc)
    get(out, path[:-1])[path[-1]] = value
    return out


def string_positions(doc: Json) -> list[Path_]:
    return [p for p in positions(doc) if isinstance(get(doc, p), str)]


# -- truncation -------------------------------------------------------------------------------------


def _offsets(n: int) -> list[int]:
    return sorted({*range(0, min(n, 200)), *range(200, n, 61), n - 1})


def test_truncated_bundle_at_many_offsets(real: Real) -> None:
    data = real.bundle_bytes.rstrip()
    for cut in _offsets(len(data)):
        assert check_bundle(data[:cut], real.root) == "malformed", cut


def test_truncated_trust_root_at_many_offsets(real: Real) -> None:
    data = real.root_bytes.rstrip()
    bundle = real.child.bundle
    for cut in _offsets(len(data)):
        assert check_root(data[:cut], bundle) == "malformed", cut


def test_truncated_embedded_texts(real: Real) -> None:
    """The compact JWS, a DSSE payload and a tlog-proof, each cut short inside a valid bundle."""
    for path in (("permit", "token"), ("statements", 0, "envelope", "payload"), ("permit", "tlogProof")):
        text = get(real.bundle_json, path)
        for cut in range(0, len(text), max(1, len(text) // 40)):
            data = json.dumps(replaced(real.bundle_json, path, text[:cut])).encode()
            assert check_bundle(data, real.root) != "verified", (path, cut)


# -- size ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda n: b'{"mediaType": "' + b"a" * n + b'"}', id="one-long-string"),
        pytest.param(lambda n: b" " * n + b"{}", id="whitespace"),
        pytest.param(lambda n: b"[" + b"0," * (n // 2) + b"0]", id="many-numbers"),
    ],
)
def test_huge_bundle_is_rejected_by_size(real: Real, shape: Callable[[int], bytes]) -> None:
    data = shape(20 << 20)
    assert len(data) >= 20 << 20
    assert check_bundle(data, real.root) == "malformed"
    with pytest.raises(MalformedError, match="larger than"):
        Bundle.parse(data)


def test_huge_trust_root_is_rejected_by_size(real: Real) -> None:
    data = b'{"mediaType": "' + b"a" * (5 << 20) + b'"}'
    with pytest.raises(MalformedError, match="larger than"):
        TrustRoot.parse(data)
    assert check_root(data, real.child.bundle) == "malformed"


def test_large_string_just_under_the_limit_is_quick(real: Real) -> None:
    doc = copy.deepcopy(real.bundle_json)
    doc["actionRequest"]["context"]["blob"] = "x" * (MAX_BUNDLE - (1 << 20))
    data = json.dumps(doc).encode()
    assert len(data) < MAX_BUNDLE
    assert check_bundle(data, real.root) == "action-binding"


def test_half_limit_bundle_of_small_arrays_is_rejected_in_bounded_time(real: Real) -> None:
    """4 MiB of tiny arrays: parsing alone is ~0.5 s here, so this one gets a larger bound."""
    data = b'{"mediaType": 1, "pad": [' + b"[1]," * (1 << 20) + b"[1]]}"
    start = time.perf_counter()
    with pytest.raises(MalformedError):
        Bundle.parse(data)
    assert time.perf_counter() - start < 5 * LIMIT_S


# -- nesting -------------------------------------------------------------------------------------------


def _nested_variants(real: Real) -> dict[str, bytes]:
    bj = real.bundle_json
    token = bj["permit"]["token"].split(".")
    deep_payload = b64url(b"[" * 40_000)  # stays under the 64 KiB token limit
    stmt = copy.deepcopy(bj)
    stmt["statements"][0]["envelope"]["payload"] = base64.b64encode(b"[" * 100_000).decode()
    header = copy.deepcopy(bj)
    header["permit"]["token"] = ".".join([b64url(b'{"a":' * 10_000), token[1], token[2]])
    payload = copy.deepcopy(bj)
    payload["permit"]["token"] = ".".join([token[0], deep_payload, token[2]])
    text = json.dumps(bj)
    context = text.replace('"context": {', '"context": {"deep": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1)
    just_over = text.replace('"context": {', '"context": {"deep": ' + "[" * 62 + "]" * 62 + ", ", 1)
    under = text.replace('"context": {', '"context": {"deep": ' + "[" * 55 + "]" * 55 + ", ", 1)
    return {
        "brackets-100k": b"[" * 100_000,
        "brackets-100k-closed": b"[" * 100_000 + b"]" * 100_000,
        "objects-100k": b'{"a":' * 100_000,
        "in-action-context": context.encode(),
        "in-action-context-just-over-64": just_over.encode(),
        "in-action-context-under-64": under.encode(),
        "in-jws-header": json.dumps(header).encode(),
        "in-jws-payload": json.dumps(payload).encode(),
        "in-dsse-payload": json.dumps(stmt).encode(),
        "brackets-inside-a-string": text.replace('"context": {', '"context": {"s": "' + "[" * 100_000 + '", ').encode(),
    }


def test_deeply_nested_json(real: Real) -> None:
    outcomes = {name: check_bundle(data, real.root) for name, data in _nested_variants(real).items()}
    assert outcomes["brackets-100k"] == outcomes["objects-100k"] == outcomes["in-action-context"] == "malformed"
    assert outcomes["in-jws-header"] == outcomes["in-jws-payload"] == outcomes["in-dsse-payload"] == "malformed"
    assert outcomes["in-action-context-just-over-64"] == "malformed"
    assert outcomes["in-action-context-under-64"] == "action-binding"
    assert outcomes["brackets-inside-a-string"] == "action-binding"


def test_deeply_nested_trust_root(real: Real) -> None:
    text = json.dumps(real.root_json)
    for data in (
        b"[" * 100_000,
        text.replace('"log": {', '"log": {"deep": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1).encode(),
    ):
        assert check_root(data, real.child.bundle) == "malformed"


# -- wrong types everywhere ------------------------------------------------------------------------------

REPLACEMENTS = {
    "null": None,
    "zero": 0,
    "negative": -1,
    "float": 1.5,
    "huge-int": 2**70,
    "true": True,
    "list": [],
    "list-of-junk": [None, {}, "x"],
    "object": {},
    "object-of-junk": {"a": [1]},
    "empty-string": "",
    "long-string": "x" * 100_000,
}


@pytest.mark.parametrize("kind", list(REPLACEMENTS))
def test_wrong_type_at_every_bundle_position(real: Real, kind: str) -> None:
    value = REPLACEMENTS[kind]
    seen: dict[str, int] = {}
    for path in positions(real.bundle_json):
        if get(real.bundle_json, path) == value and type(get(real.bundle_json, path)) is type(value):
            continue
        data = json.dumps(replaced(real.bundle_json, path, value)).encode()
        outcome = check_bundle(data, real.root)
        if outcome == "verified":
            # Only a change the parser normalises away may verify.
            assert normalized(data) == normalized(real.bundle_bytes), path
        seen[outcome] = seen.get(outcome, 0) + 1
    assert seen.get("malformed", 0) > 20, seen


@pytest.mark.parametrize("kind", list(REPLACEMENTS))
def test_wrong_type_at_every_trust_root_position(real: Real, kind: str) -> None:
    value = REPLACEMENTS[kind]
    bundle = real.child.bundle
    seen: dict[str, int] = {}
    for path in positions(real.root_json):
        data = json.dumps(replaced(real.root_json, path, value)).encode()
        outcome = check_root(data, bundle)
        seen[outcome] = seen.get(outcome, 0) + 1
    assert seen.get("malformed", 0) > 5, seen


# -- duplicate names, NaN, numbers --------------------------------------------------------------------------


def _reencode_jws_part(token: str, part: int, edit: Callable[[bytes], bytes]) -> str:
    parts = token.split(".")
    parts[part] = b64url(edit(b64url_decode(parts[part], "test")))
    return ".".join(parts)


def _reencode_payload(st: Json, edit: Callable[[bytes], bytes]) -> None:
    env = st["envelope"]
    env["payload"] = base64.b64encode(edit(base64.b64decode(env["payload"]))).decode()


def _with(doc: Json, edit: Callable[[Json], None]) -> bytes:
    out = copy.deepcopy(doc)
    edit(out)
    return json.dumps(out).encode()


def test_duplicate_member_names(real: Real) -> None:
    bj, text = real.bundle_json, json.dumps(real.bundle_json)

    def jws_dup(d: Json) -> None:
        d["permit"]["token"] = _reencode_jws_part(d["permit"]["token"], 1, lambda b: b'{"sub":"x",' + b[1:])

    def jws_header_dup(d: Json) -> None:
        d["permit"]["token"] = _reencode_jws_part(d["permit"]["token"], 0, lambda b: b'{"alg":"none",' + b[1:])

    def dsse_dup(d: Json) -> None:
        _reencode_payload(d["statements"][0], lambda b: b'{"predicateType":"x",' + b[1:])

    variants = {
        "top-level": ('{"mediaType": "x", ' + text[1:]).encode(),
        "action-request": text.replace('"actionRequest": {', '"actionRequest": {"principal": "agent:evil", ', 1),
        "context": text.replace('"context": {', '"context": {"replicas": 1, ', 1),
        "envelope": text.replace('"envelope": {', '"envelope": {"payloadType": "x", ', 1),
        "signature": text.replace('"keyid": ', '"sig": "AAAA", "keyid": ', 1),
        "ancestor": text.replace('"ancestors": [{', '"ancestors": [{"statements": [], ', 1),
        "jws-payload": _with(bj, jws_dup),
        "jws-header": _with(bj, jws_header_dup),
        "dsse-payload": _with(bj, dsse_dup),
    }
    for name, data in variants.items():
        raw = data if isinstance(data, bytes) else data.encode()
        assert raw != real.bundle_bytes
        with pytest.raises(MalformedError, match="duplicate"):
            Bundle.parse(raw)
        assert check_bundle(raw, real.root) == "malformed", name
    root_text = json.dumps(real.root_json)
    for data in (
        '{"issuer": "evil", ' + root_text[1:],
        root_text.replace('"publicKey": ', '"publicKey": "AAAA", "publicKey": ', 1),
    ):
        with pytest.raises(MalformedError, match="duplicate"):
            TrustRoot.parse(data.encode())


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(real: Real, token: str) -> None:
    text = json.dumps(real.bundle_json)
    root_text = json.dumps(real.root_json)

    def jws_nan(d: Json) -> None:
        d["permit"]["token"] = _reencode_jws_part(
            d["permit"]["token"], 1, lambda b: b'{"x":' + token.encode() + b"," + b[1:]
        )

    def dsse_nan(d: Json) -> None:
        _reencode_payload(d["statements"][1], lambda b: b'{"x":' + token.encode() + b"," + b[1:])

    variants = [
        text.replace('"replicas": 3', f'"replicas": {token}', 1).encode(),
        text.replace(
            '"consistency": []', f'"consistency": [{{"oldSize": {token}, "newSize": 1, "proof": []}}]', 1
        ).encode(),
        _with(real.bundle_json, jws_nan),
        _with(real.bundle_json, dsse_nan),
        token.encode(),
    ]
    for data in variants:
        assert data != real.bundle_bytes
        with pytest.raises(MalformedError, match=r"not a JSON number|not valid JSON"):
            Bundle.parse(data)
        assert check_bundle(data, real.root) == "malformed"
    data = root_text.replace('"quorum": 0', f'"quorum": {token}', 1).encode()
    assert check_root(data, real.child.bundle) == "malformed"


def test_out_of_range_numbers(real: Real) -> None:
    text = json.dumps(real.bundle_json)
    for number in ("1e400", "-1e400", "1" * 5000, "123456789012345678901234567890", "1e-400", "-0"):
        data = text.replace('"replicas": 3', f'"replicas": {number}', 1).encode()
        assert check_bundle(data, real.root) in ("malformed", "action-binding"), number
        if number == "-0":
            continue  # 0 is a tree size like any other
        data = text.replace('"consistency": []', f'"consistency": [{{"oldSize": {number}, "newSize": 1, "proof": []}}]')
        assert check_bundle(data.encode(), real.root) == "malformed", number


# -- encodings -----------------------------------------------------------------------------------------------

BAD_UTF8 = {
    "ff": b"\xff",
    "continuation": b"\x80",
    "overlong-slash": b"\xc0\xaf",
    "encoded-surrogate": b"\xed\xa0\x80",
    "truncated-sequence": b"\xe2\x82",
    "above-unicode": b"\xf4\x90\x80\x80",
}


@pytest.mark.parametrize("bad", list(BAD_UTF8))
def test_invalid_utf8(real: Real, bad: str) -> None:
    seq = BAD_UTF8[bad]
    data = real.bundle_bytes
    for anchor in (b'"agent:', b'"service:', b'"c2sp.org/tlog-proof@v1', b'"application/vnd.in-toto+json'):
        i = data.index(anchor) + 1
        mutated = data[:i] + seq + data[i:]
        with pytest.raises(MalformedError, match="UTF-8"):
            Bundle.parse(mutated)
        assert check_bundle(mutated, real.root) == "malformed"
    assert check_bundle(seq + data, real.root) == "malformed"
    assert check_root(real.root_bytes[:20] + seq + real.root_bytes[20:], real.child.bundle) == "malformed"

    def jws_bad(d: Json) -> None:
        d["permit"]["token"] = _reencode_jws_part(d["permit"]["token"], 1, lambda b: b[:10] + seq + b[10:])

    def dsse_bad(d: Json) -> None:
        _reencode_payload(d["statements"][0], lambda b: b[:10] + seq + b[10:])

    for data in (_with(real.bundle_json, jws_bad), _with(real.bundle_json, dsse_bad)):
        assert check_bundle(data, real.root) == "malformed"


def test_byte_order_marks_and_binary_garbage(real: Real) -> None:
    for prefix in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00"):
        assert check_bundle(prefix + real.bundle_bytes, real.root) == "malformed"
    assert check_bundle(real.bundle_bytes.decode().encode("utf-16"), real.root) == "malformed"
    for seed in range(20):
        garbage = hashlib.sha256(b"%d" % seed).digest() * (seed * 50 + 1)
        assert check_bundle(garbage, real.root) == "malformed"
        assert check_root(garbage, real.child.bundle) == "malformed"
    assert check_bundle(b"", real.root) == "malformed"
    assert check_root(b"", real.child.bundle) == "malformed"


def test_lone_surrogate_escapes_in_every_string(real: Real) -> None:
    r"""A ``\ud800`` escape is valid JSON text but no Unicode string: refuse it or fail a step."""
    seen: dict[str, int] = {}
    for path in string_positions(real.bundle_json):
        if path[-1] == "tlogProof":
            continue  # see test_lone_surrogate_in_tlog_proof (a src bug)
        value = get(real.bundle_json, path)
        for mutated in ("\ud800" + value, value[:5] + "\udfff" + value[5:]):
            data = json.dumps(replaced(real.bundle_json, path, mutated)).encode()
            outcome = check_bundle(data, real.root)
            assert outcome != "verified", path
            seen[outcome] = seen.get(outcome, 0) + 1
    # ... and in member names
    data = json.dumps({**real.bundle_json, "\ud800": 1}).encode()
    assert check_bundle(data, real.root) == "malformed"
    assert seen.get("malformed", 0) > 10, seen


def test_lone_surrogate_in_tlog_proof(real: Real) -> None:
    data = json.dumps(replaced(real.bundle_json, ("permit", "tlogProof"), "\ud800")).encode()
    with pytest.raises(MalformedError):
        Bundle.parse(data)


def test_lone_surrogates_in_trust_root(real: Real) -> None:
    for path in string_positions(real.root_json):
        value = get(real.root_json, path)
        data = json.dumps(replaced(real.root_json, path, "\ud800" + value)).encode()
        check_root(data, real.child.bundle)


# -- counts ---------------------------------------------------------------------------------------------------


def test_statement_list_of_ten_thousand(real: Real) -> None:
    st0 = real.bundle_json["statements"][0]
    for statements in ([{}] * 10_000, [st0] * 10_000, [st0] * 257, [None] * 10_000, [[]] * 10_000):
        data = json.dumps({**real.bundle_json, "statements": statements}).encode()
        assert check_bundle(data, real.root) == "malformed"


def test_the_most_statements_allowed_is_still_quick(real: Real) -> None:
    """256 copies of genuine statements: all parse and verify, within the time bound."""
    sts = real.bundle_json["statements"]
    copies = [s for s in sts if "receipt" not in json.dumps(_statement(s))]
    receipt = [s for s in sts if s not in copies]
    statements = (copies * 256)[: 256 - len(receipt)] + receipt
    data = json.dumps({**real.bundle_json, "statements": statements}).encode()
    assert check_bundle(data, real.root) == "verified"


def _statement(st: Json) -> Json:
    return json.loads(base64.b64decode(st["envelope"]["payload"]))


def test_ancestor_and_signature_counts(real: Real) -> None:
    anc = real.bundle_json["ancestors"][0]
    for ancestors in ([anc] * 10_000, [anc] * 33, [{**anc, "ancestors": [anc]}], [None]):
        data = json.dumps({**real.bundle_json, "ancestors": ancestors}).encode()
        assert check_bundle(data, real.root) == "malformed"
    doc = copy.deepcopy(real.bundle_json)
    doc["statements"][0]["envelope"]["signatures"] *= 17
    assert check_bundle(json.dumps(doc).encode(), real.root) == "malformed"
    doc["consistency"] = [{"oldSize": 1, "newSize": 2, "proof": ["A" * 44] * 129}]
    assert check_bundle(json.dumps(doc).encode(), real.root) == "malformed"


def test_trust_root_with_ten_thousand_keys(real: Real) -> None:
    keys = real.root_json["keys"]
    for many in ([keys[0]] * 10_001, [{}] * 10_000, [None] * 10_000):
        assert check_root(json.dumps({**real.root_json, "keys": many}).encode(), real.child.bundle) == "malformed"
    # 10,000 copies of genuine keys are allowed, and still quick.
    data = json.dumps({**real.root_json, "keys": (keys * 10_000)[:10_000]}).encode()
    assert check_root(data, real.child.bundle) == "verified"


def test_signature_checks_are_linear_in_signatures(real: Real, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    class Counting:
        def __init__(self, key: Ed25519PublicKey) -> None:
            self.key = key

        @classmethod
        def from_public_bytes(cls, data: bytes) -> Counting:
            return cls(Ed25519PublicKey.from_public_bytes(data))

        def verify(self, signature: bytes, data: bytes) -> None:
            nonlocal calls
            calls += 1
            self.key.verify(signature, data)

    monkeypatch.setattr(dsse_module, "Ed25519PublicKey", Counting)
    doc = copy.deepcopy(real.bundle_json)
    i = next(i for i, s in enumerate(doc["statements"]) if _statement(s)["predicateType"].endswith("/decision/v1"))
    sigs = doc["statements"][i]["envelope"]["signatures"]
    junk = {"keyid": sigs[0]["keyid"], "sig": base64.b64encode(bytes(64)).decode()}
    sigs[:] = [junk] * 15 + sigs  # the genuine signature last
    outcome = check_bundle(json.dumps(doc).encode(), real.root)
    assert outcome == "log-inclusion"  # the signatures verify; the extra ones change the logged bytes
    total = sum(len(s["envelope"]["signatures"]) for s in doc["statements"])
    assert calls <= total, f"{calls} signature checks for {total} signatures"


# -- a validly signed permit with absurd numbers --------------------------------------------------------------


def _execution_with_constraints(real: Real, constraints: Constraints) -> Bundle:
    return custom_execution(
        real.child.cfg, now=time.time(), resource="service:huge", context={}, constraints=constraints
    )


def test_signed_permit_with_ordinary_constraints_verifies(real: Real) -> None:
    bundle = _execution_with_constraints(real, Constraints(max_duration=300))
    assert verify(bundle, real.root).verified


def test_signed_permit_with_absurd_max_duration_fails_closed(real: Real) -> None:
    bundle = _execution_with_constraints(real, Constraints(max_duration=10**400))
    data = json.dumps(bundle.to_json()).encode()
    assert check_bundle(data, real.root) in ("verified", "permit-claims", "receipt")


# -- fuzzing -----------------------------------------------------------------------------------------------

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "c2sp.org/tlog-proof@v1\nindex 0\n\n", "AAAA", "-", "application/vnd.in-toto+json"]),
)
_json = st.recursive(
    _leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _mutate(data: st.DataObject, doc: Json) -> Json:
    paths = list(positions(doc))
    path = data.draw(st.sampled_from(paths), label="path")
    value = get(doc, path)
    op = data.draw(st.sampled_from(["replace", "delete", "insert", "edit", "duplicate"]), label="op")
    if op == "replace" or (not path and op == "delete"):
        return replaced(doc, path, data.draw(_json, label="value"))
    if op == "delete" and path:
        out = copy.deepcopy(doc)
        del get(out, path[:-1])[path[-1]]
        return out
    if op == "insert" and isinstance(value, dict):
        key = data.draw(st.one_of(st.text(max_size=12), st.sampled_from(list(value) or ["x"])), label="key")
        return replaced(doc, path, {**value, key: data.draw(_json, label="value")})
    if op == "duplicate" and isinstance(value, list) and value:
        return replaced(doc, path, value + value[: data.draw(st.integers(1, len(value)), label="n")])
    if isinstance(value, str) and value:
        i = data.draw(st.integers(0, len(value) - 1), label="i")
        how = data.draw(st.sampled_from(["char", "cut", "insert", "double"]), label="how")
        ch = data.draw(st.characters(codec="utf-8"), label="ch")
        edited = {
            "char": value[:i] + ch + value[i + 1 :],
            "cut": value[:i],
            "insert": value[:i] + ch + value[i:],
            "double": value + value,
        }[how]
        return replaced(doc, path, edited)
    if isinstance(value, bool | int | float):
        return replaced(doc, path, data.draw(_leaf, label="value"))
    return replaced(doc, path, data.draw(_json, label="value"))


@pytest.mark.timeout(240)
@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzzed_bundles_fail_closed(real: Real, data: st.DataObject) -> None:
    doc = real.bundle_json
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        doc = _mutate(data, doc)
    raw = json.dumps(doc).encode()
    if data.draw(st.booleans(), label="flip a byte"):
        i = data.draw(st.integers(0, len(raw) - 1), label="byte")
        raw = raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255), label="mask")]) + raw[i + 1 :]
    outcome = check_bundle(raw, real.root)
    if outcome == "verified":
        assert normalized(raw) == normalized(real.bundle_bytes)


@pytest.mark.timeout(240)
@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzzed_trust_roots_fail_closed(real: Real, data: st.DataObject) -> None:
    doc = real.root_json
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        doc = _mutate(data, doc)
    check_root(json.dumps(doc).encode(), real.child.bundle)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes_are_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedError):
        Bundle.parse(raw)
    with pytest.raises(MalformedError):
        TrustRoot.parse(raw)


# -- the CLI ----------------------------------------------------------------------------------------------------


def _hostile_files(real: Real) -> dict[str, bytes]:
    text = json.dumps(real.bundle_json)
    return {
        "truncated": real.bundle_bytes[: len(real.bundle_bytes) // 2],
        "huge": b" " * (20 << 20) + b"{}",
        "nested": b"[" * 100_000,
        "duplicate": ('{"mediaType": "x", ' + text[1:]).encode(),
        "nan": text.replace('"replicas": 3', '"replicas": NaN', 1).encode(),
        "invalid-utf8": real.bundle_bytes.replace(b'"agent:', b'"\xffagent:', 1),
        "statements-10000": json.dumps({**real.bundle_json, "statements": [{}] * 10_000}).encode(),
        "wrong-type": json.dumps({**real.bundle_json, "permit": None}).encode(),
        "empty": b"",
        "markup-in-member-name": json.dumps({**real.bundle_json, "[/x]": 1}).encode(),
    }


@pytest.fixture(scope="module")
def hostile_cli(real: Real) -> dict[str, tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]]:
    d = real.tmp / "cli"
    d.mkdir()
    root_file = d / "root.json"
    root_file.write_bytes(real.root_bytes)
    out = {}
    for name, data in _hostile_files(real).items():
        f = d / f"{name}.json"
        f.write_bytes(data)
        out[name] = (
            fiat("verify", f, "--trust-root", root_file),
            fiat("verify", f, "--trust-root", root_file, "--json"),
        )
    return out


@pytest.mark.parametrize(
    "name",
    [
        "truncated",
        "huge",
        "nested",
        "duplicate",
        "nan",
        "invalid-utf8",
        "statements-10000",
        "wrong-type",
        "empty",
        "markup-in-member-name",
    ],
)
def test_cli_refuses_hostile_bundles_with_exit_2(name: str, hostile_cli: Any) -> None:
    human, as_json = hostile_cli[name]
    assert human.returncode == EXIT_INVALID, human.stderr
    stderr = human.stderr.decode()
    assert stderr.startswith("error: ") and "malformed bundle" in stderr, stderr
    assert "Traceback" not in stderr
    assert as_json.returncode == EXIT_INVALID, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["verified"] is False and report["failedStep"] == "bundle-format"
    assert report["error"].startswith("malformed bundle")


def test_cli_refuses_hostile_trust_roots_with_exit_2(real: Real) -> None:
    d = real.tmp / "cli-root"
    d.mkdir()
    bundle = d / "bundle.json"
    bundle.write_bytes(real.bundle_bytes)
    for name, data in {
        "truncated": real.root_bytes[:100],
        "nested": b"[" * 100_000,
        "quorum-too-high": json.dumps({**real.root_json, "witnesses": {"quorum": 3}}).encode(),
    }.items():
        f = d / f"{name}.json"
        f.write_bytes(data)
        proc = fiat("verify", bundle, "--trust-root", f, "--json")
        assert proc.returncode == EXIT_INVALID, (name, proc.stderr)
        report = json.loads(proc.stdout)
        assert report["failedStep"] == "trust-root" and report["error"].startswith("malformed trust root"), name
    proc = fiat("verify", bundle, "--trust-root", d / "nested.json")
    assert proc.returncode == EXIT_INVALID
    assert proc.stderr.decode().startswith("error: ") and "malformed trust root" in proc.stderr.decode()


def test_cli_human_report_survives_markup_in_details(real: Real) -> None:
    doc = copy.deepcopy(real.bundle_json)

    def set_kid(b: bytes) -> bytes:
        header = json.loads(b)
        header["kid"] = "[/x]"
        return json.dumps(header).encode()

    doc["permit"]["token"] = _reencode_jws_part(doc["permit"]["token"], 0, set_kid)
    d = real.tmp / "markup"
    d.mkdir(exist_ok=True)
    (d / "b.json").write_text(json.dumps(doc), encoding="utf-8")
    (d / "r.json").write_bytes(real.root_bytes)
    assert check_bundle((d / "b.json").read_bytes(), real.root) == "permit-signature"
    proc = fiat("verify", d / "b.json", "--trust-root", d / "r.json")
    assert "Traceback" not in proc.stderr.decode(), proc.stderr.decode()[-400:]
    assert proc.returncode == EXIT_FAILED
    assert "NOT verified: failed at permit-signature" in proc.stdout.decode()


def test_cli_lone_surrogate_in_tlog_proof_exits_2(real: Real) -> None:
    d = real.tmp / "surrogate"
    d.mkdir(exist_ok=True)
    (d / "b.json").write_text(
        json.dumps(replaced(real.bundle_json, ("statements", 0, "tlogProof"), "\ud800")), encoding="utf-8"
    )
    (d / "r.json").write_bytes(real.root_bytes)
    proc = fiat("verify", d / "b.json", "--trust-root", d / "r.json", "--json")
    assert proc.returncode == EXIT_INVALID, proc.stderr.decode()[-400:]
