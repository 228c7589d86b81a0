"""The trust root: the keys and parameters a relying party trusts, as one JSON document.

Media type ``application/vnd.fiat.trust-root.v1+json`` (docs/formats.md). It
names the permit issuer and audience, every key by role with its validity
period, the log origin, the witness quorum and the deepest lineage the relying
party accepts (``maxLineageDepth``). It holds public keys only.

An approver key also names who holds it and what it may approve (docs/formats.md,
"Approvals"): ``identity``, the principal the approver is (``user:alice``; absent in trust
roots from before: ``user:<name>``), and ``groups``, the approver groups it belongs to
(``@approval("ops")`` needs a key of group ``ops``; absent: none). A request of the
``default`` group (``@approval`` naming none) may be decided by any approver key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fiat.errors import MalformedError
from fiat.formats.action import entity_uid
from fiat.formats.encoding import b64url, b64url_decode, loads_strict, parse_time, rfc3339
from fiat.formats.jws import jwk_thumbprint
from fiat.tlog import note

MEDIA_TYPE = "application/vnd.fiat.trust-root.v1+json"
ROLES = ("authority", "log", "runtime", "approver", "witness")
#: The most ancestors an execution may have: what the authority assembles into a bundle
#: (``EvidenceRecorder.bundle``) and what a bundle may carry (``fiat.verify.bundle``). A
#: trust root's ``maxLineageDepth`` defaults to it and may only lower it.
MAX_LINEAGE_DEPTH = 32
#: The group of a policy annotated ``@approval`` without a group name: any approver key decides it.
DEFAULT_APPROVAL_GROUP = "default"
#: An approver group's name (the string of ``@approval("…")``, when an approver key may join it).
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def check_witness_url(url: Any, what: str = "witness URL") -> str:
    """A witness key's ``url``: its C2SP tlog-witness submission (and monitoring) prefix, an absolute
    ``http(s)://host[:port][/path]`` URL without query, fragment or credentials (tlog-witness §HTTP Interface)."""
    if not isinstance(url, str) or len(url) > 2048:
        raise MalformedError(what, "a witness URL is a string of at most 2048 characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise MalformedError(what, f"{url[:80]!r} is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MalformedError(what, f"{url[:80]!r} is not an http:// or https:// URL with a host")
    if "?" in url or "#" in url or parts.username is not None or parts.password is not None:
        raise MalformedError(what, f"{url[:80]!r} must not carry a query, a fragment or credentials")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise MalformedError(what, "a witness URL must not contain spaces or control characters")
    return url


def check_witness_name(name: str, log_origin: str, what: str = "witness name") -> None:
    """A witness is never named like the log it witnesses: its cosignature lines would pose as the
    log's own signature (signed-note: a line is known by its key name and key ID)."""
    if name == log_origin:
        raise MalformedError(what, "a witness key is named like the log: its cosignatures would pose as the log's")


def check_groups(groups: Any, what: str) -> tuple[str, ...]:
    """Approver groups as a key lists them: distinct names of :data:`GROUP_NAME`, at most 32."""
    if not isinstance(groups, list | tuple) or len(groups) > 32:
        raise MalformedError(what, "groups must be a list of at most 32 group names")
    for g in groups:
        if not isinstance(g, str) or not GROUP_NAME.match(g):
            raise MalformedError(what, f"group {g!r} is not a group name (letters, digits, . _ -; at most 64)")
    if len(set(groups)) != len(groups):
        raise MalformedError(what, "a group is listed twice")
    return tuple(groups)


@dataclass(frozen=True)
class TrustedKey:
    kid: str
    role: str
    name: str
    public_key: bytes
    valid_from: float
    valid_until: float | None = None
    #: For a retired log key: the largest tree it ever signed. Checkpoints carry no time, so a
    #: retired log key is trusted only for trees up to the size at which it was retired.
    max_tree_size: int | None = None
    #: For an approver key: the approver groups it belongs to (set at enrolment).
    groups: tuple[str, ...] = ()
    #: For an approver key: the principal who holds it (``user:alice``); None: ``user:<name>``.
    identity: str | None = None
    #: For a witness key: its C2SP tlog-witness URL prefix (``<url>/add-checkpoint``,
    #: ``<url>/<origin hash>/checkpoint``), where the log submits and guards gossip.
    url: str | None = None

    def valid_at(self, t: float) -> bool:
        return self.valid_from <= t and (self.valid_until is None or t < self.valid_until)

    def period(self) -> str:
        until = "open" if self.valid_until is None else rfc3339(self.valid_until)
        return f"{rfc3339(self.valid_from)} .. {until}"

    @property
    def principal(self) -> str:
        """Who holds an approver key, in the principal's one spelling (``User::"alice"``)."""
        return entity_uid(self.identity or f"user:{self.name}", "approver identity")

    def approves_group(self, group: str) -> bool:
        """Whether this approver key may decide a request of ``group``: it is of that group, or the
        request names none (:data:`DEFAULT_APPROVAL_GROUP`)."""
        return self.role == "approver" and (group == DEFAULT_APPROVAL_GROUP or group in self.groups)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kid": self.kid,
            "role": self.role,
            "name": self.name,
            "alg": "Ed25519",
            "publicKey": b64url(self.public_key),
            "validFrom": rfc3339(self.valid_from),
        }
        if self.valid_until is not None:
            out["validUntil"] = rfc3339(self.valid_until)
        if self.role == "log":
            out["vkey"] = note.Verifier.from_public_key(self.name, self.public_key).encode()
            if self.max_tree_size is not None:
                out["maxTreeSize"] = self.max_tree_size
        if self.role == "witness":
            out["vkey"] = cosigner_vkey(self.name, self.public_key)
            if self.url is not None:
                out["url"] = self.url
        if self.groups:
            out["groups"] = list(self.groups)
        if self.identity is not None:
            out["identity"] = self.identity
        return out

    @classmethod
    def from_json(cls, v: Any) -> TrustedKey:
        what = "trust root key"
        if not isinstance(v, dict):
            raise MalformedError(what, "expected an object")
        role, name, kid = v.get("role"), v.get("name"), v.get("kid")
        if role not in ROLES:
            raise MalformedError(what, f"role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(name, str) or not name or not isinstance(kid, str):
            raise MalformedError(what, "each key needs a kid and a non-empty name")
        if v.get("alg", "Ed25519") != "Ed25519":
            raise MalformedError(what, "only Ed25519 keys are supported")
        public = b64url_decode(v.get("publicKey", ""), what)
        if len(public) != 32:
            raise MalformedError(what, "an Ed25519 public key is 32 bytes")
        if jwk_thumbprint(public) != kid:
            raise MalformedError(what, f"kid {kid!r} is not the RFC 7638 thumbprint of its public key")
        until = v.get("validUntil")
        max_size = v.get("maxTreeSize")
        if max_size is not None and (not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 0):
            raise MalformedError(what, "maxTreeSize must be a non-negative integer")
        groups, identity = check_groups(v.get("groups", []), what), v.get("identity")
        if role != "approver" and (groups or identity is not None):
            raise MalformedError(what, f"only approver keys have groups and an identity, not a {role} key")
        if identity is not None:
            if not isinstance(identity, str):
                raise MalformedError(what, "identity must be a principal, e.g. user:alice")
            entity_uid(identity, f"{what} identity")
        url = v.get("url")
        if url is not None:
            if role != "witness":
                raise MalformedError(what, f"only witness keys have a url, not a {role} key")
            check_witness_url(url, f"{what} url")
        return cls(
            kid,
            role,
            name,
            public,
            parse_time(v.get("validFrom"), what),
            None if until is None else parse_time(until, what),
            max_size,
            groups,
            identity,
            url,
        )


def cosigner_vkey(name: str, public_key: bytes) -> str:
    """A C2SP tlog-cosignature Ed25519 vkey (signature type 0x04)."""
    kid = note.key_id(name, note.ALG_COSIGNATURE_V1, public_key)
    return f"{name}+{kid:08x}+{note.b64(bytes([note.ALG_COSIGNATURE_V1]) + public_key)}"


def parse_cosigner_vkey(vkey: str) -> tuple[str, bytes]:
    """The (name, Ed25519 public key) of a C2SP tlog-cosignature vkey ``<name>+<hex8 key ID>+<base64(0x04 || key)>``
    (signed-note §Verifier keys; tlog-cosignature §Ed25519: signature type 0x04)."""
    what = "witness vkey"
    parts = vkey.strip().split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3:
        raise MalformedError(what, "expected <name>+<hex key ID>+<base64 key> (`fiat witness vkey` prints it)")
    name, hex_id, key_b64 = parts
    note.check_key_name(name)
    if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
        raise MalformedError(what, f"key ID {hex_id!r} is not 8 lowercase hex digits")
    material = note.b64decode_strict(key_b64, what)
    if len(material) != 33 or material[0] != note.ALG_COSIGNATURE_V1:
        raise MalformedError(
            what,
            "not a cosignature/v1 Ed25519 key (type 0x04, 32 bytes); `fiat witness vkey` prints a witness's vkey",
        )
    public = material[1:]
    if note.key_id(name, note.ALG_COSIGNATURE_V1, public) != int(hex_id, 16):
        raise MalformedError(what, "the key ID does not match the key name and public key")
    return name, public


@dataclass(frozen=True)
class TrustRoot:
    issuer: str
    audience: str
    log_origin: str
    keys: tuple[TrustedKey, ...] = field(default_factory=tuple)
    witness_quorum: int = 0
    #: The deepest lineage (number of ancestors) the verifier's ``lineage`` step accepts.
    max_lineage_depth: int = MAX_LINEAGE_DEPTH

    def find(self, kid: str, role: str | None = None) -> TrustedKey | None:
        for k in self.keys:
            if k.kid == kid and (role is None or k.role == role):
                return k
        return None

    def by_role(self, role: str) -> list[TrustedKey]:
        return [k for k in self.keys if k.role == role]

    def log_verifiers(self, tree_size: int | None = None) -> list[note.Verifier]:
        """The log's verifier keys; with ``tree_size``, only keys trusted for a tree that large."""
        return [
            note.Verifier.from_public_key(self.log_origin, k.public_key)
            for k in self.by_role("log")
            if tree_size is None or k.max_tree_size is None or tree_size <= k.max_tree_size
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "mediaType": MEDIA_TYPE,
            "issuer": self.issuer,
            "audience": self.audience,
            "log": {"origin": self.log_origin},
            "witnesses": {"quorum": self.witness_quorum},
            "maxLineageDepth": self.max_lineage_depth,
            "keys": [k.to_json() for k in self.keys],
        }

    @classmethod
    def from_json(cls, v: Any) -> TrustRoot:
        what = "trust root"
        if not isinstance(v, dict):
            raise MalformedError(what, "expected a JSON object")
        if v.get("mediaType") != MEDIA_TYPE:
            raise MalformedError(what, f"mediaType must be {MEDIA_TYPE}")
        issuer, audience = v.get("issuer"), v.get("audience")
        log = v.get("log")
        witnesses = v.get("witnesses", {"quorum": 0})
        keys = v.get("keys")
        if not isinstance(issuer, str) or not isinstance(audience, str):
            raise MalformedError(what, "issuer and audience must be strings")
        if not isinstance(log, dict) or not isinstance(log.get("origin"), str):
            raise MalformedError(what, "log.origin must be a string")
        if not isinstance(keys, list) or len(keys) > 10_000:
            raise MalformedError(what, "keys must be a list")
        quorum = witnesses.get("quorum") if isinstance(witnesses, dict) else None
        if not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 0:
            raise MalformedError(what, "witnesses.quorum must be a non-negative integer")
        depth = v.get("maxLineageDepth", MAX_LINEAGE_DEPTH)
        if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_LINEAGE_DEPTH:
            raise MalformedError(
                what,
                f"maxLineageDepth must be an integer from 0 to {MAX_LINEAGE_DEPTH} (a bundle carries at most "
                f"{MAX_LINEAGE_DEPTH} ancestors); omit it for {MAX_LINEAGE_DEPTH}",
            )
        parsed = tuple(TrustedKey.from_json(k) for k in keys)
        witness_kids = [k.kid for k in parsed if k.role == "witness"]
        if len(set(witness_kids)) != len(witness_kids):
            # An Ed25519 cosignature does not commit to the cosigner's name (tlog-cosignature §Ed25519
            # signed message), so one key under two names would count as two witnesses.
            raise MalformedError(what, "one witness key is listed twice: each witness needs its own key")
        for k in parsed:
            if k.role == "witness":
                check_witness_name(k.name, log["origin"], what)
        if quorum > len([k for k in parsed if k.role == "witness"]):
            raise MalformedError(what, f"a witness quorum of {quorum} exceeds the number of witness keys")
        return cls(issuer, audience, log["origin"], parsed, quorum, depth)

    @classmethod
    def parse(cls, data: bytes) -> TrustRoot:
        return cls.from_json(loads_strict(data, "trust root", max_size=4 << 20))
