"""Rotate a key: its successor becomes active now, and the rotation is logged.

The rotation is a key-rotation statement (in-toto in DSSE) signed by the retiring key
(authorising its successor) and by the new key (proving possession); a rotation of any
key but the authority's is countersigned by the authority. The retiring key keeps
verifying what it signed before: its validity period closes at the instant the new
one's opens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fiat.keys.keyring import KeyRecord, KeyRing
from fiat.prove.evidence import EvidenceRecorder, key_rotation_statement, sign_statement


@dataclass(frozen=True)
class Rotation:
    old: KeyRecord  # the retired key, its period closed
    new: KeyRecord
    log_index: int  # where the key-rotation statement was logged


def rotate_key(ring: KeyRing, recorder: EvidenceRecorder, role: str, name: str | None = None) -> Rotation:
    """Rotate the active ``role`` key of ``ring``, log the rotation statement, save the ring.

    ``recorder`` must have been opened before the ring is saved, so that the checkpoint
    covering the rotation is still signed by the retiring log key when ``role`` is ``log``.
    """
    old, old_key = ring.signing_key(role, name)
    old_rec, new_rec, new_key = ring.rotate(role, name)
    statement = key_rotation_statement(
        role=role,
        name=new_rec.name,
        old_kid=old.kid,
        new_kid=new_rec.kid,
        new_public_key=new_rec.public_key,
        at=new_rec.valid_from,
    )
    signers = [(old.kid, old_key), (new_rec.kid, new_key)]
    if role != "authority":
        auth, auth_key = ring.signing_key("authority")
        signers.append((auth.kid, auth_key))
    result = recorder.record_statement(sign_statement(statement, signers))
    if role == "log":
        # Checkpoints carry no time: the retired log key is trusted only up to the tree it signed
        # last, which is the one that logs its own retirement.
        old_rec = dataclasses.replace(old_rec, max_tree_size=result.checkpoint.size)
        ring.records = [old_rec if r.kid == old_rec.kid else r for r in ring.records]
    ring.save()
    return Rotation(old_rec, new_rec, result.index)
