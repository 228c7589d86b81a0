"""in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)
and the predicate types Fiat defines (documented in docs/formats.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fiat.errors import MalformedError
from fiat.formats.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from fiat.formats.encoding import loads_strict

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

_BASE = "https://fiat.local/predicate/"
DECISION = _BASE + "decision/v1"
APPROVAL = _BASE + "approval/v1"
REVOCATION = _BASE + "revocation/v1"
RECEIPT = _BASE + "receipt/v1"
POLICY = _BASE + "policy/v1"
KEY_ROTATION = _BASE + "key-rotation/v1"

PREDICATE_TYPES = (DECISION, APPROVAL, REVOCATION, RECEIPT, POLICY, KEY_ROTATION)
#: Which trust-root role signs each predicate type (a receipt: the permit's ``cnf`` runtime key).
SIGNER_ROLE = {
    DECISION: "authority",
    APPROVAL: "approver",
    REVOCATION: "authority",
    RECEIPT: "runtime",
    POLICY: "authority",
    KEY_ROTATION: "authority",
}

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_sha256_hex(value: Any) -> bool:
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


@dataclass(frozen=True)
class Subject:
    name: str
    sha256: str


@dataclass(frozen=True)
class Statement:
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": s.name, "digest": {"sha256": s.sha256}} for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def subject(self, name: str) -> str | None:
        for s in self.subjects:
            if s.name == name:
                return s.sha256
        return None

    @classmethod
    def from_json(cls, value: Any) -> Statement:
        what = "in-toto statement"
        if not isinstance(value, dict):
            raise MalformedError(what, "expected a JSON object")
        if value.get("_type") != STATEMENT_TYPE:
            raise MalformedError(what, f"_type must be {STATEMENT_TYPE}")
        subjects = value.get("subject")
        if not isinstance(subjects, list) or not subjects or len(subjects) > 64:
            raise MalformedError(what, "subject must be a non-empty list (at most 64)")
        parsed = []
        for s in subjects:
            if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("digest"), dict):
                raise MalformedError(what, "each subject needs a name and a digest set")
            digest = s["digest"].get("sha256")
            if not is_sha256_hex(digest):
                raise MalformedError(what, f"subject {s['name'][:40]!r} has no lower-case hex sha256 digest")
            parsed.append(Subject(s["name"], digest))
        ptype, predicate = value.get("predicateType"), value.get("predicate")
        if not isinstance(ptype, str) or ":" not in ptype or not isinstance(predicate, dict):
            raise MalformedError(what, "predicateType must be a type URI and predicate an object")
        return cls(tuple(parsed), ptype, predicate)

    @classmethod
    def from_envelope(cls, env: Envelope) -> Statement:
        if env.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise MalformedError("DSSE envelope", f"payloadType must be {IN_TOTO_PAYLOAD_TYPE}")
        return cls.from_json(loads_strict(env.payload, "in-toto statement"))
