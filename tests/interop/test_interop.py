"""Interoperability: Fiat's formats checked by independent implementations.

Every artefact Fiat writes is read back here by a library Fiat's verifier does
not use, and the other way round where the format allows it:

* permits (compact JWS, RFC 7515 / RFC 7519 / RFC 8037) — PyJWT;
* the fully-specified ``Ed25519`` JOSE algorithm name (RFC 9864) — tokens made by
  PyJWT under that name, and by hand with ``cryptography``;
* RFC 7638 JWK thumbprints — recomputed from PyJWT's own JWK export;
* DSSE v1 envelopes — securesystemslib's ``dsse.Envelope`` (both directions);
* in-toto Statement v1 — the in-toto attestation framework's Python bindings
  (``in_toto_attestation``) plus the spec's rules they leave unchecked;
* RFC 8785 (JCS) — the ``rfc8785`` package, by property test and the RFC's
  number-serialization examples.

Bundles come from :func:`support.evidence.make_execution`: a real home, real
keys, a real log. Nothing is mocked.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import struct
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import google.protobuf.json_format as pb_json
import jwt
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import STATEMENT_TYPE_URI
from in_toto_attestation.v1.statement import Statement as ItStatement
from jwt.algorithms import OKPAlgorithm
from securesystemslib import dsse as sslib_dsse
from securesystemslib import exceptions as sslib_exceptions
from securesystemslib.signer import CryptoSigner, SSlibKey

from fiat.authorize.permit import PermitRequest, mint_permit
from fiat.errors import MalformedError, VerificationError
from fiat.formats import jws as fjws
from fiat.formats.dsse import IN_TOTO_PAYLOAD_TYPE
from fiat.formats.dsse import Envelope as FiatEnvelope
from fiat.formats.dsse import pae as fiat_pae
from fiat.formats.jcs import canonicalize
from fiat.formats.statement import STATEMENT_TYPE
from fiat.formats.statement import Statement as FiatStatement
from fiat.home import keyring
from fiat.home import trust_root as home_trust_root
from fiat.verify import Bundle, TrustRoot, verify
from fiat.verify.permit import PERMIT_TYP
from support.evidence import POLICY, Execution, make_execution

pytestmark = pytest.mark.interop

REQUIRED_CLAIMS = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def execution(tmp_path_factory: pytest.TempPathFactory) -> Execution:
    """One real execution with an approval, a decision and a receipt (three DSSE envelopes)."""
    return make_execution(tmp_path_factory.mktemp("interop") / "home", approvals=1)


@pytest.fixture(scope="module")
def root(execution: Execution) -> TrustRoot:
    return home_trust_root(execution.cfg)


def authority_key(root: TrustRoot) -> tuple[str, Ed25519PublicKey]:
    (key,) = root.by_role("authority")
    return key.kid, Ed25519PublicKey.from_public_bytes(key.public_key)


def raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    """Build a compact JWS by hand (RFC 7515 §7.1); ``sign`` maps the signing input to a signature."""
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{h}.{p}.{b64url(sign(f'{h}.{p}'.encode('ascii')))}"


def rfc7638_thumbprint(jwk_dict: dict[str, Any]) -> str:
    """RFC 7638 §3 by hand: the required OKP members (RFC 8037 §2: crv, kty, x), sorted, no whitespace."""
    required = {name: jwk_dict[name] for name in ("crv", "kty", "x")}
    text = json.dumps(required, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return b64url(hashlib.sha256(text.encode("utf-8")).digest())


# -- permits: PyJWT ---------------------------------------------------------------------------


def test_permit_verifies_with_pyjwt_given_only_the_trust_root(execution: Execution, root: TrustRoot) -> None:
    _, public = authority_key(root)
    claims = jwt.decode(
        execution.token,
        public,
        algorithms=["EdDSA"],
        audience=root.audience,
        issuer=root.issuer,
        options={"require": REQUIRED_CLAIMS},
    )
    assert claims == execution.bundle.permit.claims
    assert claims["jti"] == execution.jti
    assert claims["sub"] == execution.request["principal"]
    assert claims["nbf"] <= claims["iat"] < claims["exp"]


def test_a_grandchild_permit_reads_as_an_rfc8693_act_chain_in_pyjwt(execution: Execution, root: TrustRoot) -> None:
    """RFC 8693 §4.1: ``sub`` is on whose behalf (the lineage root), the outermost ``act`` the current
    actor, the least recent actor most deeply nested. PyJWT verifies and decodes the grandchild."""
    child = make_execution(execution.home, principal="agent:coder", parent=execution.jti)
    grandchild = make_execution(execution.home, principal="agent:tester", parent=child.jti)
    _, public = authority_key(root)
    claims = jwt.decode(
        grandchild.token,
        public,
        algorithms=["EdDSA"],
        audience=root.audience,
        issuer=root.issuer,
        options={"require": REQUIRED_CLAIMS},
    )
    assert claims["sub"] == execution.request["principal"] == "agent:release-bot"
    assert claims["act"] == {"sub": "agent:tester", "act": {"sub": "agent:coder"}}
    actors, act = [], claims["act"]
    while act is not None:
        actors.append(act["sub"])
        act = act.get("act")
    assert actors == ["agent:tester", "agent:coder"]  # current first, least recent innermost
    assert claims["parent"] == child.jti and claims["delegation"]["depth"] == 2
    assert verify(grandchild.bundle, root).verified


def test_permit_header_alg_typ_and_kid_is_the_rfc7638_thumbprint(execution: Execution, root: TrustRoot) -> None:
    header = jwt.get_unverified_header(execution.token)
    kid, public = authority_key(root)
    assert header["alg"] == "EdDSA"
    assert header["typ"] == PERMIT_TYP == "fiat-permit+jwt"
    assert header["kid"] == kid
    # Independent thumbprint: PyJWT exports the JWK, RFC 7638 §3 is applied by hand.
    exported = OKPAlgorithm.to_jwk(public, as_dict=True)
    assert exported["kty"] == "OKP"
    assert exported["crv"] == "Ed25519"
    assert rfc7638_thumbprint(exported) == header["kid"]
    assert fjws.jwk_thumbprint(raw(public)) == header["kid"]


def test_jwk_thumbprint_matches_rfc8037_appendix_a3() -> None:
    """RFC 8037 Appendix A.3: the thumbprint of the Appendix A.2 Ed25519 public key."""
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    expected = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    public = base64.urlsafe_b64decode(x + "=")
    assert fjws.jwk_thumbprint(public) == expected
    assert rfc7638_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": x}) == expected
    pyjwt_public = OKPAlgorithm.from_jwk({"kty": "OKP", "crv": "Ed25519", "x": x})
    assert rfc7638_thumbprint(OKPAlgorithm.to_jwk(pyjwt_public, as_dict=True)) == expected


def test_jwk_thumbprint_agrees_with_pyjwt_for_fresh_keys() -> None:
    for _ in range(16):
        public = Ed25519PrivateKey.generate().public_key()
        assert fjws.jwk_thumbprint(raw(public)) == rfc7638_thumbprint(OKPAlgorithm.to_jwk(public, as_dict=True))
        # Fiat's JWK and PyJWT's export are the same key.
        assert fjws.jwk(raw(public)) == OKPAlgorithm.to_jwk(public, as_dict=True)


def test_cnf_jwk_loads_with_pyjwt_to_the_runtime_key(execution: Execution, root: TrustRoot) -> None:
    cnf = execution.bundle.permit.claims["cnf"]
    assert set(cnf) == {"jwk"}
    assert "d" not in cnf["jwk"], "the cnf JWK must carry no private key material"
    loaded = OKPAlgorithm.from_jwk(cnf["jwk"])
    assert isinstance(loaded, Ed25519PublicKey)
    (runtime,) = root.by_role("runtime")
    assert raw(loaded) == runtime.public_key
    assert rfc7638_thumbprint(cnf["jwk"]) == runtime.kid


def test_pyjwt_rejects_the_permit_under_a_wrong_key(execution: Execution, root: TrustRoot) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(execution.token, other, algorithms=["EdDSA"], audience=root.audience, issuer=root.issuer)
    # The runtime key is in the trust root too, but it is not the authority.
    (runtime,) = root.by_role("runtime")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            execution.token,
            Ed25519PublicKey.from_public_bytes(runtime.public_key),
            algorithms=["EdDSA"],
            audience=root.audience,
            issuer=root.issuer,
        )


def test_pyjwt_rejects_wrong_audience_issuer_and_algorithm_list(execution: Execution, root: TrustRoot) -> None:
    _, public = authority_key(root)
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(execution.token, public, algorithms=["EdDSA"], audience="someone-else", issuer=root.issuer)
    with pytest.raises(jwt.InvalidIssuerError):
        jwt.decode(execution.token, public, algorithms=["EdDSA"], audience=root.audience, issuer="evil.example")
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(execution.token, public, algorithms=["ES256"], audience=root.audience, issuer=root.issuer)


def test_pyjwt_rejects_an_expired_permit(execution: Execution, root: TrustRoot) -> None:
    rec, key = keyring(execution.cfg).signing_key("authority")
    (runtime,) = root.by_role("runtime")
    past = int(time.time()) - 3600
    spec = PermitRequest(execution.request, runtime.public_key, POLICY, "0" * 64, ttl=60)
    token, claims = mint_permit(spec, key=key, kid=rec.kid, issuer=root.issuer, audience=root.audience, now=past)
    assert claims["exp"] == past + 60
    _, public = authority_key(root)
    kwargs: dict[str, Any] = {"algorithms": ["EdDSA"], "audience": root.audience, "issuer": root.issuer}
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, public, options={"require": REQUIRED_CLAIMS}, **kwargs)
    # Only the clock is wrong: with enough leeway, or with exp unchecked, the signature is good.
    assert jwt.decode(token, public, leeway=7200, **kwargs)["jti"] == claims["jti"]
    assert jwt.decode(token, public, options={"verify_exp": False}, **kwargs)["exp"] == past + 60


def test_pyjwt_rejects_the_live_permit_once_its_lifetime_has_passed(execution: Execution, root: TrustRoot) -> None:
    """The real permit, judged as if the clock were past ``exp``: a negative leeway moves "now" forward
    for the ``exp`` check (``iat``/``nbf`` are left unchecked, since the same shift would make them look future)."""
    _, public = authority_key(root)
    claims = execution.bundle.permit.claims
    lifetime = claims["exp"] - claims["iat"]
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(
            execution.token,
            public,
            algorithms=["EdDSA"],
            audience=root.audience,
            issuer=root.issuer,
            leeway=-(lifetime + 5),
            options={"verify_iat": False, "verify_nbf": False},
        )


# -- RFC 9864: the fully-specified "Ed25519" alg -----------------------------------------------


def pyjws_ed25519() -> jwt.PyJWS:
    """A PyJWS that knows OKP signing under the RFC 9864 name ``Ed25519`` (and nothing else)."""
    signer = jwt.PyJWS(algorithms=[])
    signer.register_algorithm("Ed25519", OKPAlgorithm())
    return signer


def test_rfc9864_ed25519_token_from_pyjwt_is_accepted(execution: Execution) -> None:
    key = Ed25519PrivateKey.generate()
    payload = json.dumps(execution.bundle.permit.claims, separators=(",", ":")).encode()
    token = pyjws_ed25519().encode(payload, key, algorithm="Ed25519", headers={"typ": PERMIT_TYP, "kid": "k"})
    parsed = fjws.parse(token)
    assert parsed.header["alg"] == "Ed25519"
    fjws.verify_signature(parsed, raw(key.public_key()), "permit-signature")
    # ... and PyJWS itself round-trips it under that name.
    assert pyjws_ed25519().decode(token, key.public_key(), algorithms=["Ed25519"]) == payload
    # A different key still fails under the new name.
    with pytest.raises(VerificationError):
        fjws.verify_signature(parsed, raw(Ed25519PrivateKey.generate().public_key()), "permit-signature")


def test_rfc9864_ed25519_token_built_by_hand_is_accepted() -> None:
    key = Ed25519PrivateKey.generate()
    token = compact({"alg": "Ed25519", "typ": PERMIT_TYP}, {"sub": "x"}, key.sign)
    fjws.verify_signature(fjws.parse(token), raw(key.public_key()), "s")


def test_rfc9864_permit_resigned_as_ed25519_passes_the_verifiers_signature_step(
    execution: Execution, root: TrustRoot
) -> None:
    """End to end: the authority re-signs the same claims with alg Ed25519; the verifier's step 1 passes.

    The token's bytes changed, so later steps (the decision names the old token's digest) must fail.
    """
    rec, key = keyring(execution.cfg).signing_key("authority")
    payload = json.dumps(execution.bundle.permit.claims, separators=(",", ":")).encode()
    token = pyjws_ed25519().encode(payload, key, algorithm="Ed25519", headers={"typ": PERMIT_TYP, "kid": rec.kid})
    doc = execution.bundle_json()
    doc["permit"]["token"] = token
    result = verify(Bundle.from_json(doc), root)
    steps = {s.name: s for s in result.steps}
    assert steps["permit-signature"].status == "pass", steps["permit-signature"]
    assert "Ed25519" in steps["permit-signature"].detail
    assert not result.verified


def test_alg_none_is_refused(execution: Execution, root: TrustRoot) -> None:
    token = jwt.encode(execution.bundle.permit.claims, None, algorithm="none", headers={"typ": PERMIT_TYP})
    parsed = fjws.parse(token)
    assert parsed.header["alg"] == "none"
    assert parsed.signature == b""
    _, public = authority_key(root)
    with pytest.raises(VerificationError, match="alg 'none' is not accepted"):
        fjws.verify_signature(parsed, raw(public), "permit-signature")
    # Even with an otherwise valid Ed25519 signature attached.
    rec, key = keyring(execution.cfg).signing_key("authority")
    signed = compact({"alg": "none", "typ": PERMIT_TYP, "kid": rec.kid}, {"sub": "x"}, key.sign)
    with pytest.raises(VerificationError):
        fjws.verify_signature(fjws.parse(signed), raw(public), "permit-signature")


def test_hs256_with_the_public_key_as_secret_is_refused(execution: Execution, root: TrustRoot) -> None:
    """The classic algorithm-confusion attack: HMAC keyed with the (public) verification key."""
    kid, public = authority_key(root)
    claims = execution.bundle.permit.claims
    headers = {"typ": PERMIT_TYP, "kid": kid}
    # PyJWT makes the HMAC token keyed with the raw public key; it refuses JWK- or PEM-looking
    # secrets itself, so those variants are built by hand.
    tokens = [jwt.encode(claims, raw(public), algorithm="HS256", headers=headers)]
    for secret in (b64url(raw(public)).encode(), json.dumps(fjws.jwk(raw(public))).encode()):
        tokens.append(
            compact({"alg": "HS256", **headers}, claims, lambda m, k=secret: hmac.new(k, m, "sha256").digest())
        )
    for token in tokens:
        parsed = fjws.parse(token)
        assert parsed.header["alg"] == "HS256"
        assert len(parsed.signature) == 32
        with pytest.raises(VerificationError, match="alg 'HS256' is not accepted"):
            fjws.verify_signature(parsed, raw(public), "permit-signature")
        # The full verifier refuses it at step 1 as well.
        doc = execution.bundle_json()
        doc["permit"]["token"] = token
        result = verify(Bundle.from_json(doc), root)
        assert result.failed is not None
        assert result.failed.name == "permit-signature"
    # PyJWT, told to expect EdDSA, refuses it too.
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(tokens[0], public, algorithms=["EdDSA"], audience=root.audience, issuer=root.issuer)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"typ": PERMIT_TYP}, id="missing-alg"),
        pytest.param({"alg": None, "typ": PERMIT_TYP}, id="null-alg"),
        pytest.param({"alg": "", "typ": PERMIT_TYP}, id="empty-alg"),
        pytest.param({"alg": "eddsa", "typ": PERMIT_TYP}, id="lower-case-eddsa"),
        pytest.param({"alg": "ED25519", "typ": PERMIT_TYP}, id="upper-case-ed25519"),
        pytest.param({"alg": "Ed448", "typ": PERMIT_TYP}, id="ed448"),
        pytest.param({"alg": ["EdDSA"], "typ": PERMIT_TYP}, id="alg-list"),
        pytest.param({"alg": {"EdDSA": 1}, "typ": PERMIT_TYP}, id="alg-object"),
    ],
)
def test_missing_or_unknown_alg_is_refused(header: dict[str, Any]) -> None:
    key = Ed25519PrivateKey.generate()
    token = compact(header, {"sub": "x"}, key.sign)  # a valid Ed25519 signature over the input
    with pytest.raises(VerificationError) as info:
        fjws.verify_signature(fjws.parse(token), raw(key.public_key()), "permit-signature")
    assert info.value.step == "permit-signature"


@pytest.mark.parametrize("alg", ["EdDSA", "Ed25519"])
@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["urn:example:unknown"], []])
def test_crit_header_is_refused(alg: str, crit: list[str]) -> None:
    key = Ed25519PrivateKey.generate()
    header: dict[str, Any] = {"alg": alg, "typ": PERMIT_TYP, "crit": crit}
    if crit:
        header[crit[0]] = False
    token = compact(header, {"sub": "x"}, key.sign)
    with pytest.raises(VerificationError, match="critical"):
        fjws.verify_signature(fjws.parse(token), raw(key.public_key()), "permit-signature")
    # Without crit the same construction verifies, so crit is what was refused.
    fine = compact({"alg": alg, "typ": PERMIT_TYP}, {"sub": "x"}, key.sign)
    fjws.verify_signature(fjws.parse(fine), raw(key.public_key()), "permit-signature")


def test_pyjwt_eddsa_token_accepted_by_fiat_and_fiat_rejects_tampered_payload() -> None:
    key = Ed25519PrivateKey.generate()
    token = jwt.encode({"sub": "x", "n": 1}, key, algorithm="EdDSA", headers={"typ": PERMIT_TYP})
    fjws.verify_signature(fjws.parse(token), raw(key.public_key()), "s")
    h, _, s = token.split(".")
    forged = f"{h}.{b64url(json.dumps({'sub': 'x', 'n': 2}).encode())}.{s}"
    with pytest.raises(VerificationError, match="does not verify"):
        fjws.verify_signature(fjws.parse(forged), raw(key.public_key()), "s")


# -- DSSE: securesystemslib -------------------------------------------------------------------


def sslib_key(keyid: str, public: bytes) -> SSlibKey:
    return SSlibKey(keyid, "ed25519", "ed25519", {"public": public.hex()})


def tamper_payload(envelope: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(envelope)
    payload = bytearray(base64.b64decode(out["payload"]))
    payload[len(payload) // 2] ^= 0x01
    out["payload"] = base64.b64encode(bytes(payload)).decode("ascii")
    return out


def test_bundle_envelopes_verify_with_securesystemslib(execution: Execution, root: TrustRoot) -> None:
    statements = execution.bundle_json()["statements"]
    assert len(statements) == 3  # approval, decision, receipt
    for s in statements:
        envelope = s["envelope"]
        (sig,) = envelope["signatures"]
        trusted = root.find(sig["keyid"])
        assert trusted is not None, f"keyid {sig['keyid']} is not in the trust root"
        key = sslib_key(sig["keyid"], trusted.public_key)
        # from_dict mutates the signature dicts it is given: hand it a copy.
        theirs = sslib_dsse.Envelope.from_dict(copy.deepcopy(envelope))
        accepted = theirs.verify(keys=[key], threshold=1)
        assert set(accepted) == {sig["keyid"]}
        ours = FiatEnvelope.from_json(envelope)
        assert theirs.pae() == fiat_pae(ours.payload_type, ours.payload)
        assert theirs.payload == ours.payload
        assert theirs.payload_type == ours.payload_type
        assert theirs.to_dict() == ours.to_json()


def test_bundle_envelope_fails_securesystemslib_under_the_wrong_key(execution: Execution) -> None:
    envelope = execution.bundle_json()["statements"][0]["envelope"]
    keyid = envelope["signatures"][0]["keyid"]
    wrong = sslib_key(keyid, raw(Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(sslib_exceptions.VerificationError):
        sslib_dsse.Envelope.from_dict(copy.deepcopy(envelope)).verify(keys=[wrong], threshold=1)


def test_tampered_bundle_envelope_fails_both(execution: Execution, root: TrustRoot) -> None:
    for s in execution.bundle_json()["statements"]:
        envelope = tamper_payload(s["envelope"])
        keyid = envelope["signatures"][0]["keyid"]
        trusted = root.find(keyid)
        assert trusted is not None
        with pytest.raises(sslib_exceptions.VerificationError):
            sslib_dsse.Envelope.from_dict(copy.deepcopy(envelope)).verify(
                keys=[sslib_key(keyid, trusted.public_key)], threshold=1
            )
        assert not FiatEnvelope.from_json(envelope).verify_with(keyid, trusted.public_key)
        # The untampered envelope does verify with Fiat.
        assert FiatEnvelope.from_json(s["envelope"]).verify_with(keyid, trusted.public_key)


def test_securesystemslib_signed_envelope_verifies_with_fiat(execution: Execution) -> None:
    private = Ed25519PrivateKey.generate()
    signer = CryptoSigner(private)
    assert signer.public_key.keytype == "ed25519"
    assert signer.public_key.scheme == "ed25519"
    payload = FiatEnvelope.from_json(execution.bundle_json()["statements"][0]["envelope"]).payload
    theirs = sslib_dsse.Envelope(payload, IN_TOTO_PAYLOAD_TYPE, {})
    theirs.sign(signer)
    doc = theirs.to_dict()
    public = raw(private.public_key())

    ours = FiatEnvelope.from_json(copy.deepcopy(doc))
    assert ours.verify_with(signer.public_key.keyid, public)
    assert not ours.verify_with("some-other-keyid", public)
    assert not ours.verify_with(signer.public_key.keyid, raw(Ed25519PrivateKey.generate().public_key()))
    # Through Fiat's canonical encoding and strict parser, and into an in-toto statement.
    reparsed = FiatEnvelope.parse(ours.encode())
    assert reparsed.verify_with(signer.public_key.keyid, public)
    assert FiatStatement.from_envelope(reparsed).to_json() == json.loads(payload)
    # securesystemslib verifies its own envelope; a tampered copy fails both.
    sslib_dsse.Envelope.from_dict(copy.deepcopy(doc)).verify(keys=[signer.public_key], threshold=1)
    tampered = tamper_payload(doc)
    assert not FiatEnvelope.from_json(tampered).verify_with(signer.public_key.keyid, public)
    with pytest.raises(sslib_exceptions.VerificationError):
        sslib_dsse.Envelope.from_dict(copy.deepcopy(tampered)).verify(keys=[signer.public_key], threshold=1)


def test_pae_matches_securesystemslib_for_unicode_and_empty_payloads() -> None:
    for ptype, payload in [
        ("application/vnd.in-toto+json", b""),
        ("", b"x"),
        ("type/ünïcode", "héllo \u2028 😀".encode()),
        ("a b", b"DSSEv1 1 a 1 b"),
    ]:
        assert fiat_pae(ptype, payload) == sslib_dsse.Envelope(payload, ptype, {}).pae()


# -- in-toto Statement v1 ---------------------------------------------------------------------


HEX = frozenset("0123456789abcdef")


def check_statement_spec(statement: dict[str, Any]) -> None:
    """The Statement v1 rules (in-toto/attestation spec/v1/statement.md, resource_descriptor.md,
    digest_set.md) that the protobuf validators leave to the reader."""
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert set(statement) <= {"_type", "subject", "predicateType", "predicate"}
    subjects = statement["subject"]
    assert isinstance(subjects, list)
    assert subjects
    for s in subjects:
        assert isinstance(s, dict)
        assert isinstance(s.get("digest"), dict)
        assert s["digest"], "a subject needs at least one digest"
        for alg, value in s["digest"].items():
            assert isinstance(alg, str)
            assert alg
            assert isinstance(value, str)
            assert value
            assert set(value) <= HEX, f"{alg} digest must be lower-case hex"
            if alg == "sha256":
                assert len(value) == 64
    ptype = statement["predicateType"]
    assert isinstance(ptype, str)
    parts = urlsplit(ptype)
    assert parts.scheme in ("https", "http")
    assert parts.netloc
    assert isinstance(statement["predicate"], dict)


def test_every_statement_is_in_toto_statement_v1(execution: Execution) -> None:
    assert STATEMENT_TYPE == STATEMENT_TYPE_URI
    for s in execution.bundle_json()["statements"]:
        envelope = s["envelope"]
        assert envelope["payloadType"] == "application/vnd.in-toto+json" == IN_TOTO_PAYLOAD_TYPE
        payload = base64.b64decode(envelope["payload"], validate=True)
        statement = json.loads(payload)
        # The in-toto attestation framework's own bindings: strict JSON mapping (unknown fields
        # rejected), then its validators.
        message = pb_json.Parse(payload.decode("utf-8"), statement_pb2.Statement())
        ItStatement.copy_from_pb(message).validate()
        assert message.type == STATEMENT_TYPE_URI
        assert message.predicate_type == statement["predicateType"]
        assert [dict(sub.digest) for sub in message.subject] == [sub["digest"] for sub in statement["subject"]]
        check_statement_spec(statement)
        # Fiat signs the RFC 8785 form, as an independent canonicalizer writes it.
        assert payload == rfc8785.dumps(statement)


def test_in_toto_validators_reject_what_fiat_rejects() -> None:
    """The library agrees with Fiat's parser on the basic Statement rules."""
    good = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "x", "digest": {"sha256": "a" * 64}}],
        "predicateType": "https://fiat.local/predicate/decision/v1",
        "predicate": {"k": "v"},
    }
    ItStatement.copy_from_pb(pb_json.Parse(json.dumps(good), statement_pb2.Statement())).validate()
    FiatStatement.from_json(good)
    bad = [
        {**good, "_type": "https://in-toto.io/Statement/v0.1"},
        {**good, "subject": []},
        {**good, "subject": [{"name": "x", "digest": {}}]},
    ]
    for statement in bad:
        with pytest.raises(ValueError):
            ItStatement.copy_from_pb(pb_json.Parse(json.dumps(statement), statement_pb2.Statement())).validate()
        with pytest.raises(MalformedError):
            FiatStatement.from_json(statement)


def test_empty_predicate_type_is_refused_by_fiat_as_by_in_toto() -> None:
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "x", "digest": {"sha256": "a" * 64}}],
        "predicateType": "",
        "predicate": {"k": "v"},
    }
    with pytest.raises(ValueError, match="Predicate type required"):
        ItStatement.copy_from_pb(pb_json.Parse(json.dumps(statement), statement_pb2.Statement())).validate()
    with pytest.raises(MalformedError):
        FiatStatement.from_json(statement)


# -- RFC 8785: rfc8785 --------------------------------------------------------------------------

SPECIAL_CHARS = st.sampled_from(
    ["\u2028", "\u2029", "\x00", "\x1f", "\x7f", "\b", "\f", "\n", "\r", "\t", '"', "\\", "/", "€", "😀", "\U0010ffff"]
)
TEXT = st.text(alphabet=st.one_of(st.characters(codec="utf-8"), st.characters(max_codepoint=0x1F), SPECIAL_CHARS))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(TEXT, children, max_size=6)),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_canonicalize_matches_rfc8785_package(value: Any) -> None:
    ours = canonicalize(value)
    assert ours == rfc8785.dumps(value)
    # The canonical form is JSON that parses back to the same value (numbers read as doubles:
    # JSON has one number type, and 2**53 written as a float reads back as a too-large int otherwise).
    assert canonicalize(json.loads(ours, parse_int=float)) == ours


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_serialization_matches_rfc8785_package(x: float) -> None:
    assert canonicalize(x) == rfc8785.dumps(x)
    assert float(canonicalize(x)) == x


# RFC 8785 §3.2.2.3 / Appendix B: IEEE 754 value → ECMAScript (JCS) serialization.
RFC8785_NUMBERS = [
    (0.0, "0"),
    (-0.0, "0"),
    (5e-324, "5e-324"),
    (-5e-324, "-5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (-1.7976931348623157e308, "-1.7976931348623157e+308"),
    (9007199254740992.0, "9007199254740992"),
    (-9007199254740992.0, "-9007199254740992"),
    (295147905179352830000.0, "295147905179352830000"),
    (1e21, "1e+21"),
    (1e20, "100000000000000000000"),
    (9.999999999999997e22, "9.999999999999997e+22"),
    (1e23, "1e+23"),
    (1e-7, "1e-7"),
    (1e-6, "0.000001"),
    (2e-3, "0.002"),
    (333333333.3333333, "333333333.3333333"),
    (4.5, "4.5"),
    (1.0, "1"),
    (-1.0, "-1"),
    (0.1, "0.1"),
    (100.0, "100"),
    (1e300, "1e+300"),
    (1.5e-9, "1.5e-9"),
    (2.2250738585072014e-308, "2.2250738585072014e-308"),
    (123456789012345680000.0, "123456789012345680000"),
]


@pytest.mark.parametrize(("value", "expected"), RFC8785_NUMBERS, ids=[e for _, e in RFC8785_NUMBERS])
def test_rfc8785_number_examples(value: float, expected: str) -> None:
    assert canonicalize(value) == expected.encode()
    assert rfc8785.dumps(value) == expected.encode()


def test_rfc8785_section_3_2_2_example() -> None:
    """RFC 8785 §3.2.2 example input (the literal numbers, string escapes and literals) and its output."""
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert canonicalize(value) == expected
    assert rfc8785.dumps(value) == expected


def test_rfc8785_section_3_2_3_sorting_example() -> None:
    """RFC 8785 §3.2.3: members sorted by UTF-16 code units (the spec's own example and output)."""
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode("utf-8")
    assert canonicalize(value) == expected
    assert rfc8785.dumps(value) == expected


def from_bits(bits: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(bits))[0])


# RFC 8785 Appendix B: IEEE 754 bit patterns and their expected serialization.
RFC8785_APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC8785_APPENDIX_B, ids=[b for b, _ in RFC8785_APPENDIX_B])
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    value = from_bits(bits)
    assert canonicalize(value) == expected.encode()
    assert rfc8785.dumps(value) == expected.encode()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("wrap", ["bare", "list", "dict"])
def test_both_reject_nan_and_infinity(bad: float, wrap: str) -> None:
    value: Any = {"bare": bad, "list": [1, bad], "dict": {"a": bad}}[wrap]
    with pytest.raises(MalformedError):
        canonicalize(value)
    with pytest.raises(rfc8785.CanonicalizationError):
        rfc8785.dumps(value)


@pytest.mark.parametrize("bad", [2**53, -(2**53), 10**30])
def test_both_reject_integers_outside_the_ieee754_exact_range(bad: int) -> None:
    with pytest.raises(MalformedError):
        canonicalize(bad)
    with pytest.raises(rfc8785.CanonicalizationError):
        rfc8785.dumps(bad)
    assert canonicalize(2**53 - 1) == rfc8785.dumps(2**53 - 1) == b"9007199254740991"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\ud800", id="lone-high"),
        pytest.param("\udfff", id="lone-low"),
        pytest.param("a\udc00b", id="lone-low-inside"),
        pytest.param("\udc00\ud800", id="reversed-pair"),
        pytest.param(["ok", "\ud83d"], id="in-list"),
        pytest.param({"k": "\ud83d"}, id="in-value"),
    ],
)
def test_both_reject_lone_surrogates(value: Any) -> None:
    with pytest.raises(MalformedError):
        canonicalize(value)
    with pytest.raises(rfc8785.CanonicalizationError):
        rfc8785.dumps(value)


@pytest.mark.parametrize("value", [{"\ud800": 1}, {"a": 1, "\udfff": 2}], ids=["only-key", "second-key"])
def test_lone_surrogate_in_member_name_is_malformed(value: dict[str, Any]) -> None:
    with pytest.raises(MalformedError):
        canonicalize(value)


def test_lone_surrogate_in_member_name_is_refused_somehow() -> None:
    """Whatever the exception type, both implementations refuse it (ValueError family)."""
    with pytest.raises(ValueError):
        rfc8785.dumps({"\ud800": 1})
    with pytest.raises((MalformedError, ValueError)):
        canonicalize({"\ud800": 1})


# -- the action digest --------------------------------------------------------------------------


def test_permit_action_digest_is_sha256_of_independent_jcs(execution: Execution) -> None:
    bundle = execution.bundle_json()
    request = bundle["actionRequest"]
    expected = hashlib.sha256(rfc8785.dumps(request)).hexdigest()
    _, public = authority_key(home_trust_root(execution.cfg))
    claims = jwt.decode(execution.token, public, algorithms=["EdDSA"], options={"verify_aud": False})
    assert claims["action"]["digest"] == {"sha256": expected}
    assert request == execution.request
    # The decision and approval statements name the same digest as their subject.
    for s in bundle["statements"]:
        statement = json.loads(base64.b64decode(s["envelope"]["payload"]))
        if statement["predicateType"].endswith(("/decision/v1", "/approval/v1")):
            assert statement["subject"] == [{"name": "action-request", "digest": {"sha256": expected}}]


def test_action_digest_of_unicode_and_float_context(tmp_path: Path) -> None:
    """A request whose context exercises JCS corners: non-BMP text, U+2028, floats, nested ordering."""
    context = {
        "\U0001f600": "grinning",
        "\u20ac": 1e21,
        "z": [0.1, -0.0, 5e-324, 333333333.3333333],
        "line\u2028sep": {"b": None, "a": True},
        "ctl": "\x00\x1f",
    }
    ex = make_execution(tmp_path / "home", context=context)
    expected = hashlib.sha256(rfc8785.dumps(ex.request)).hexdigest()
    assert ex.bundle.permit.claims["action"]["digest"]["sha256"] == expected
    assert verify(ex.bundle, ex.trust_root()).verified
    # Through a file and back (json escapes U+2028 and controls on the way; the digest must not care).
    reparsed = Bundle.parse(json.dumps(ex.bundle_json()).encode())
    assert hashlib.sha256(rfc8785.dumps(reparsed.action_request)).hexdigest() == expected
    assert verify(reparsed, ex.trust_root()).verified
