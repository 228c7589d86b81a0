"""DSSE envelopes (https://github.com/secure-systems-lab/dsse, protocol v1) with Ed25519.

Signing is over PAE(payloadType, payload)::

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with LEN the ASCII decimal byte length. The envelope's JSON form is
``{"payload": b64, "payloadType": str, "signatures": [{"keyid": str, "sig": b64}]}``;
Fiat logs its RFC 8785 canonical bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fiat.errors import MalformedError
from fiat.formats.encoding import b64std, b64std_decode, loads_strict
from fiat.formats.jcs import canonicalize

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_ENVELOPE = 60 * 1024  # must fit one log entry (65,535 bytes)


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class DsseSignature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[DsseSignature, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": b64std(self.payload),
            "payloadType": self.payload_type,
            "signatures": [{"keyid": s.keyid, "sig": b64std(s.sig)} for s in self.signatures],
        }

    def encode(self) -> bytes:
        """The canonical (RFC 8785) bytes: what is logged and hashed.

        Written directly: base64 needs no escaping and the member order is fixed
        (``keyid`` < ``sig``; ``payload`` < ``payloadType`` < ``signatures``).
        """
        try:
            sigs = ",".join(
                '{"keyid":' + json.dumps(s.keyid, ensure_ascii=False) + ',"sig":"' + b64std(s.sig) + '"}'
                for s in self.signatures
            )
            text = (
                '{"payload":"'
                + b64std(self.payload)
                + '","payloadType":'
                + json.dumps(self.payload_type, ensure_ascii=False)
                + ',"signatures":['
                + sigs
                + "]}"
            )
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return canonicalize(self.to_json())  # reports the lone surrogate

    def verify_signature(self, sig: DsseSignature, public_key: bytes) -> bool:
        """True if this one signature verifies under ``public_key``."""
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(sig.sig, pae(self.payload_type, self.payload))
        except (InvalidSignature, ValueError):
            return False
        return True

    def verify_with(self, keyid: str, public_key: bytes) -> bool:
        """True if a signature with ``keyid`` verifies under ``public_key``."""
        message = pae(self.payload_type, self.payload)
        key = Ed25519PublicKey.from_public_bytes(public_key)
        for s in self.signatures:
            if s.keyid != keyid:
                continue
            try:
                key.verify(s.sig, message)
                return True
            except InvalidSignature:
                continue
        return False

    @classmethod
    def from_json(cls, value: Any) -> Envelope:
        what = "DSSE envelope"
        if not isinstance(value, dict):
            raise MalformedError(what, "expected a JSON object")
        unknown = set(value) - {"payload", "payloadType", "signatures"}
        if unknown:
            raise MalformedError(what, f"unknown members {sorted(unknown)}")
        ptype, payload, sigs = value.get("payloadType"), value.get("payload"), value.get("signatures")
        if not isinstance(ptype, str) or not isinstance(payload, str) or not isinstance(sigs, list) or not sigs:
            raise MalformedError(what, "needs payloadType (string), payload (base64) and at least one signature")
        if len(sigs) > 16:
            raise MalformedError(what, "more than 16 signatures")
        parsed = []
        for s in sigs:
            if not isinstance(s, dict) or not isinstance(s.get("sig"), str) or not isinstance(s.get("keyid", ""), str):
                raise MalformedError(what, "each signature needs a base64 'sig' and a string 'keyid'")
            parsed.append(DsseSignature(s.get("keyid", ""), b64std_decode(s["sig"], what)))
        return cls(ptype, b64std_decode(payload, what), tuple(parsed))

    @classmethod
    def parse(cls, data: bytes) -> Envelope:
        if len(data) > MAX_ENVELOPE:
            raise MalformedError("DSSE envelope", f"larger than {MAX_ENVELOPE:,} bytes")
        return cls.from_json(loads_strict(data, "DSSE envelope"))


def sign_envelope(payload_type: str, payload: bytes, signers: list[tuple[str, Ed25519PrivateKey]]) -> Envelope:
    message = pae(payload_type, payload)
    sigs = tuple(DsseSignature(keyid, key.sign(message)) for keyid, key in signers)
    return Envelope(payload_type, payload, sigs)
