"""The home's keys by role, with validity periods: ``<home>/keys/keyring.json`` + PEM files.

Roles: ``authority`` (signs permits and decisions), ``log`` (signs checkpoints),
``runtime`` (each runtime node signs its receipts), ``approver`` (each human
approver: with the approver groups it belongs to and the principal who holds it, both
set at enrolment), ``witness`` (cosigns checkpoints).

Each key has a stable ID, the RFC 7638 JWK thumbprint of its public key, and a
validity period. Rotation closes the old key's period and opens the new one's
at the same instant, so the old key still verifies what it signed before.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.errors import ConfigError, KeyFileError, MalformedError
from fiat.formats.action import entity_uid
from fiat.formats.encoding import b64url, b64url_decode, parse_time, rfc3339
from fiat.formats.jws import jwk_thumbprint
from fiat.keys.pem import load_private_key, write_private_key
from fiat.tlog.note import Signer, Verifier
from fiat.verify.trust_root import ROLES, TrustedKey, TrustRoot, check_groups, check_witness_url

KEYRING_NAME = "keyring.json"


@dataclass(frozen=True)
class KeyRecord(TrustedKey):
    """A trusted key as this home's keyring holds it (its validity is :meth:`TrustedKey.valid_at`).

    Beyond what a trust root says of a key, the keyring knows where its private key
    file is, when this home holds it. ``to_json`` is the keyring file's record.
    """

    file: str | None = None  # private key file in the keys directory, when this home holds it

    def trusted(self) -> TrustedKey:
        """The key as a trust root lists it (no file)."""
        return TrustedKey(
            self.kid,
            self.role,
            self.name,
            self.public_key,
            self.valid_from,
            self.valid_until,
            self.max_tree_size,
            self.groups,
            self.identity,
            self.url,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kid": self.kid,
            "role": self.role,
            "name": self.name,
            "publicKey": b64url(self.public_key),
            "validFrom": rfc3339(self.valid_from),
        }
        if self.valid_until is not None:
            out["validUntil"] = rfc3339(self.valid_until)
        if self.file is not None:
            out["file"] = self.file
        if self.max_tree_size is not None:
            out["maxTreeSize"] = self.max_tree_size
        if self.groups:
            out["groups"] = list(self.groups)
        if self.identity is not None:
            out["identity"] = self.identity
        if self.url is not None:
            out["url"] = self.url
        return out

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> KeyRecord:
        until = v.get("validUntil")
        url = v.get("url")
        return cls(
            v["kid"],
            v["role"],
            v["name"],
            b64url_decode(v["publicKey"], "keyring"),
            parse_time(v["validFrom"], "keyring"),
            None if until is None else parse_time(until, "keyring"),
            v.get("maxTreeSize"),
            check_groups(v.get("groups", []), "keyring"),
            _identity(v.get("identity")),
            None if url is None else check_witness_url(url, "keyring url"),
            file=v.get("file"),
        )


#: An approver key's ``(groups, identity)`` (docs/formats.md, "Approvals").
Approver = tuple[tuple[str, ...], str | None]


def check_approver(role: str, approver: Approver | None) -> Approver:
    """Groups and identity belong to approver keys only; each well-formed, or a :class:`KeyFileError`."""
    if approver is None or approver == ((), None):
        return (), None
    if role != "approver":
        raise KeyFileError(f"only approver keys have groups and an identity, not a {role} key")
    groups, identity = approver
    try:
        checked = check_groups(list(groups), "approver key")
        if identity is not None:
            entity_uid(identity, "approver identity")
    except MalformedError as exc:
        raise KeyFileError(str(exc)) from exc
    return checked, identity


def _identity(value: Any) -> str | None:
    """A keyring record's approver identity: absent, or a principal (``user:alice``)."""
    if value is not None:
        entity_uid(value, "keyring identity")  # a damaged keyring fails on load, not at an approval
    return value if value is None else str(value)


def now_second() -> float:
    # Times are recorded to the second (RFC 3339 without fractions).
    return float(int(time.time()))


class KeyRing:
    def __init__(self, keys_dir: Path) -> None:
        self.dir = keys_dir
        self.path = keys_dir / KEYRING_NAME
        self.records: list[KeyRecord] = []
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.records = [KeyRecord.from_json(r) for r in data["keys"]]
            except (ValueError, KeyError, TypeError, MalformedError) as exc:
                raise ConfigError(f"{self.path} is damaged ({exc}); restore it from a backup") from exc

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"version": 1, "keys": [r.to_json() for r in self.records]}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".keyring-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def find(self, kid: str) -> KeyRecord | None:
        return next((r for r in self.records if r.kid == kid), None)

    def active(self, role: str, at: float | None = None) -> list[KeyRecord]:
        t = time.time() if at is None else at
        return [r for r in self.records if r.role == role and r.valid_at(t)]

    def signing_key(self, role: str, name: str | None = None) -> tuple[KeyRecord, Ed25519PrivateKey]:
        """The active key of ``role`` this home can sign with (by ``name`` when several are active)."""
        candidates = [r for r in self.active(role) if r.file is not None and (name is None or r.name == name)]
        if not candidates:
            raise KeyFileError(
                f"this home holds no active {role} key{f' named {name}' if name else ''}; "
                f"`fiat keys add --role {role}` creates one"
            )
        if len(candidates) > 1:
            names = ", ".join(sorted(r.name for r in candidates))
            raise KeyFileError(f"several active {role} keys ({names}); name one")
        rec = candidates[0]
        assert rec.file is not None
        return rec, load_private_key(self.dir / rec.file)

    def register(
        self,
        role: str,
        name: str,
        key: Ed25519PrivateKey,
        file: str,
        valid_from: float,
        approver: Approver | None = None,
    ) -> KeyRecord:
        public = key.public_key().public_bytes_raw()
        groups, identity = approver if approver is not None else ((), None)
        rec = KeyRecord(
            jwk_thumbprint(public), role, name, public, valid_from, groups=groups, identity=identity, file=file
        )
        if self.find(rec.kid) is None:
            self.records.append(rec)
        return self.find(rec.kid) or rec

    def add_public(
        self,
        role: str,
        name: str,
        public_key: bytes,
        valid_from: float,
        approver: Approver | None = None,
        url: str | None = None,
    ) -> KeyRecord:
        """Enroll a key whose private half lives elsewhere (a remote runtime, an approver's laptop, a witness).

        Enrolling the same key again with the same role, groups and identity returns it as it was;
        with other groups or another identity it is refused (membership is set at enrolment). A
        witness key may carry its tlog-witness ``url``; enrolling it again with another URL updates it
        (a witness may move; its key is what is trusted).
        """
        if role not in ROLES:
            raise KeyFileError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if url is not None:
            if role != "witness":
                raise KeyFileError(f"only witness keys have a url, not a {role} key")
            check_witness_url(url)
        groups, identity = check_approver(role, approver)
        kid = jwk_thumbprint(public_key)
        existing = self.find(kid)
        if existing is not None:
            if existing.role != role:
                raise KeyFileError(f"key {kid} is already enrolled as {existing.role}")
            if (existing.groups, existing.identity) != (groups, identity):
                raise KeyFileError(
                    f"key {kid} is already enrolled with groups {list(existing.groups)} and identity "
                    f"{existing.identity!r}; group membership is set at enrolment: enrol a new key instead"
                )
            if url is not None and existing.url != url:
                existing = replace(existing, url=url)
                self.records = [existing if r.kid == kid else r for r in self.records]
            return existing
        rec = KeyRecord(kid, role, name, public_key, valid_from, groups=groups, identity=identity, url=url)
        self.records.append(rec)
        return rec

    def create(
        self, role: str, name: str, valid_from: float | None = None, approver: Approver | None = None
    ) -> tuple[KeyRecord, Ed25519PrivateKey]:
        """A new key of ``role`` held by this home; an approver key with its ``(groups, identity)``."""
        if role not in ROLES:
            raise KeyFileError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        checked = check_approver(role, approver)
        key = Ed25519PrivateKey.generate()
        kid = jwk_thumbprint(key.public_key().public_bytes_raw())
        file = f"{role}-{kid[:12]}.pem"
        write_private_key(self.dir / file, key)
        rec = self.register(role, name, key, file, now_second() if valid_from is None else valid_from, checked)
        return rec, key

    def rotate(
        self, role: str, name: str | None = None, max_tree_size: int | None = None
    ) -> tuple[KeyRecord, KeyRecord, Ed25519PrivateKey]:
        """Close the active key's period now and create its successor. Returns (old, new, new private key).

        ``max_tree_size``: for the log role, the tree size the retiring key signed last.
        """
        old, _ = self.signing_key(role, name)
        now = now_second()
        if now <= old.valid_from:
            # Times are whole seconds and a period ends exclusively: a key rotated in the second
            # it began would keep an empty period, and what it signed would not verify. Start
            # the successor at the next second instead.
            time.sleep(max(0.0, old.valid_from + 1 - time.time()))
            now = old.valid_from + 1
        # An approver's successor keeps its groups and identity: rotation changes the key, not who holds it.
        new, key = self.create(role, old.name, valid_from=now, approver=(old.groups, old.identity))
        retired = replace(old, valid_until=now, max_tree_size=max_tree_size)
        self.records = [retired if r.kid == old.kid else r for r in self.records]
        return retired, new, key

    def log_keys(self, origin: str, default_key: Path) -> tuple[Signer, list[Verifier]]:
        """The active log key (``default_key`` until a rotation names another file) and the retired
        log keys, which still verify the checkpoints they signed."""
        active = [r for r in self.active("log") if r.file is not None]
        path = self.dir / active[-1].file if active and active[-1].file else default_key
        signer = Signer(origin, load_private_key(path))
        current = signer.verifier.public_key
        retired = [
            Verifier.from_public_key(origin, r.public_key)
            for r in self.records
            if r.role == "log" and r.public_key != current
        ]
        return signer, retired

    def trust_root(self, issuer: str, audience: str, log_origin: str, witness_quorum: int = 0) -> TrustRoot:
        return TrustRoot(issuer, audience, log_origin, tuple(r.trusted() for r in self.records), witness_quorum)
