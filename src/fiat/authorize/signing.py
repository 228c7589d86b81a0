"""The authority's keys: the keyring it trusts, its signing key, and the statements it signs.

Step 1 (``runtime``) of the decision walk looks the runtime key up in :attr:`AuthorityKeys.ring`;
step 7 (``approval``) finds approver keys there; step 8 (``permit``) signs the permit and the
decision statement (in-toto in DSSE) with :attr:`AuthorityKeys.authority`. Key changes made
while the authority runs (rotation, ``fiat keys add``, enrolment) are picked up here, and the
log is re-keyed when its signing key rotated.
"""

from __future__ import annotations

import logging
import threading

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat.config import Config
from fiat.errors import FiatError, MalformedError, MalformedRequestError
from fiat.formats.dsse import Envelope
from fiat.formats.statement import Statement
from fiat.keys.keyring import KeyRecord, KeyRing, now_second
from fiat.prove import evidence as ev
from fiat.prove.log import TransparencyLog
from fiat.verify.trust_root import check_witness_name

log = logging.getLogger("fiat.authority")


class AuthorityKeys:
    """The keyring as the authority sees it; swapped whole on a change (readers take no lock)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._mtime = self._keyring_mtime()
        self.ring = KeyRing(cfg.keys_dir)
        self.authority: tuple[KeyRecord, Ed25519PrivateKey] = self.ring.signing_key("authority")

    def _keyring_mtime(self) -> int:
        try:
            return (self.cfg.keys_dir / "keyring.json").stat().st_mtime_ns
        except OSError:
            return 0

    def reload(self, transparency_log: TransparencyLog) -> bool:
        """Pick up key changes made while running (rotation, `fiat keys add`). Returns True on change."""
        path = self.cfg.keys_dir / "keyring.json"
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return False
        if mtime == self._mtime:
            return False
        ring = KeyRing(self.cfg.keys_dir)
        authority = ring.signing_key("authority")
        with self._lock:
            self.ring, self.authority, self._mtime = ring, authority, mtime
        signer, retired = ring.log_keys(self.cfg.log.origin, self.cfg.log_key_path)
        if signer.verifier != transparency_log.verifier:
            transparency_log.rekey(signer, retired)
            log.info("the log now signs with %s", signer.verifier.encode())
        log.info("keys reloaded")
        return True

    def is_enrolled(self, kid: str, now: float) -> bool:
        """Any active key of this authority's keyring (runtime, approver, witness…)."""
        return self.role_of(kid, now) is not None

    def role_of(self, kid: str, now: float) -> str | None:
        """The role of an active key of this authority's keyring, or None."""
        key = self.ring.find(kid)
        return key.role if key is not None and key.valid_at(now) else None

    def enroll(
        self,
        role: str,
        name: str,
        public_key: bytes,
        groups: tuple[str, ...] = (),
        identity: str | None = None,
        url: str | None = None,
    ) -> KeyRecord:
        """Enrol a public key; an approver key with its approver ``groups`` and ``identity`` (who holds it);
        a witness key with its tlog-witness ``url``, never under the log's own origin."""
        if role not in ("runtime", "approver", "witness"):
            raise MalformedRequestError("enroll a runtime, an approver or a witness")
        if len(public_key) != 32:
            raise MalformedRequestError("an Ed25519 public key is 32 bytes")
        if role == "witness":
            check_witness_name(name, self.cfg.log.origin)
        with self._lock:
            ring = KeyRing(self.cfg.keys_dir)
            rec = ring.add_public(role, name, public_key, now_second(), (groups, identity), url=url)
            ring.save()
            self.ring = ring
            self._mtime = self._keyring_mtime()
        return rec

    def sign(self, statement: Statement, *, decision: bool = False) -> Envelope:
        """A statement in DSSE, signed with the active authority key.

        A decision statement holds only strings (times are RFC 3339), integers, booleans,
        null and Fiat's own member names, so its payload skips the canonicalizer's type walk.
        """
        rec, key = self.authority
        return ev.sign_statement(statement, [(rec.kid, key)], built=decision)

    def record(self, recorder: ev.EvidenceRecorder, statement: Statement, jti: str | None = None) -> int:
        """Sign with the authority key and append to the log; returns the log index."""
        return recorder.record(statements=[(self.sign(statement), jti)])[0].index


def read_statement(envelope: Envelope, predicate_type: str, error: type[FiatError], what: str, kind: str) -> Statement:
    """The in-toto statement another party signed (an approver, a runtime), of the expected type.

    ``what`` names the document in the error (``approval``), ``kind`` its expected type
    (``an approval/v1``); anything else raises ``error``.
    """
    try:
        statement = Statement.from_envelope(envelope)
    except MalformedError as exc:
        raise error(f"the {what} is not an in-toto statement: {exc}") from exc
    if statement.predicate_type != predicate_type:
        raise error(f"the statement is not {kind} statement")
    return statement
