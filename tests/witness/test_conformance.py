"""Conformance with the C2SP specs' own examples (tlog-cosignature, tlog-witness) and formulas."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

from fiat.errors import MalformedError
from fiat.tlog import cosignature, note, witness
from fiat.tlog.checkpoint import Checkpoint

# tlog-cosignature §Ed25519 signed message, and the example checkpoint of tlog-cosignature and tlog-witness.
EXAMPLE_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
EXAMPLE_MESSAGE = (
    "cosignature/v1\n"
    "time 1679315147\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
# tlog-cosignature §(introduction): the example checkpoint with a cosignature.
EXAMPLE_NOTE = (
    EXAMPLE_TEXT
    + "\n"
    + "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"  # noqa: E501 - the spec's example, verbatim
    + "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"  # noqa: E501 - the spec's example, verbatim
)
# tlog-witness §add-checkpoint: the example request body.
EXAMPLE_REQUEST = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    + EXAMPLE_TEXT
    + "\n"
    + "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"  # noqa: E501 - the spec's example, verbatim
    + "\u2014 example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"  # noqa: E501 - the spec's example, verbatim
)


def test_the_cosignature_v1_message_of_the_spec_example() -> None:
    assert cosignature.message(EXAMPLE_TEXT, 1679315147) == EXAMPLE_MESSAGE.encode()


def test_the_example_cosignature_line_decodes_to_a_key_id_and_timestamp() -> None:
    parsed = note.parse(EXAMPLE_NOTE.encode())
    assert parsed.text == EXAMPLE_TEXT
    sig = parsed.signatures[1]
    assert sig.name == "witness.example.com/w1"
    raw = base64.b64decode(
        "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
    )
    assert len(raw) == 4 + 8 + 64  # key ID || timestamped_signature (u64 || Ed25519 signature)
    assert sig.key_id == struct.unpack(">I", raw[:4])[0] == 0x8D66CF3F
    (timestamp,) = struct.unpack(">Q", sig.signature[:8])
    assert timestamp == 1679315147  # the time of the spec's example message
    assert len(sig.signature) == 72


def test_the_example_request_body_parses() -> None:
    req = witness.AddCheckpointRequest.parse(EXAMPLE_REQUEST.encode())
    assert req.old_size == 20852014 and len(req.proof) == 4
    assert Checkpoint.parse_text(note.parse(req.checkpoint).text).size == 20852163
    assert req.encode() == EXAMPLE_REQUEST.encode()


def test_the_example_response_body_parses() -> None:
    body = (
        "\u2014 witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n"  # noqa: E501 - the spec's example, verbatim
        "\u2014 witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==\n"  # noqa: E501 - the spec's example, verbatim
        "\u2014 witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n"  # noqa: E501 - the spec's example, verbatim
    )
    sigs = witness.parse_signatures(body.encode())
    assert [s.name for s in sigs] == ["witness.example/w1", "witness.example/w1", "witness.example/w2"]
    assert witness.encode_signatures(sigs) == body.encode()


def test_key_ids_by_the_specs_formulas() -> None:
    """tlog-cosignature §Format: SHA-256(<name> || "\\n" || 0x04 or 0x06 || public key)[:4], by hand."""
    name = "witness.example/w1"
    ed = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    ml = MLDSA44PrivateKey.generate().public_key().public_bytes_raw()
    assert len(ed) == 32 and len(ml) == 1312
    by_hand_ed = int.from_bytes(hashlib.sha256(name.encode() + b"\n" + b"\x04" + ed).digest()[:4], "big")
    by_hand_ml = int.from_bytes(hashlib.sha256(name.encode() + b"\n" + b"\x06" + ml).digest()[:4], "big")
    assert cosignature.ed25519_key_id(name, ed) == by_hand_ed
    assert cosignature.mldsa_key_id(name, ml) == by_hand_ml
    # The vkeys (signed-note §Verifier keys): name+hex(key ID)+base64(type || key).
    ed_b64, ml_b64 = base64.b64encode(b"\x04" + ed).decode(), base64.b64encode(b"\x06" + ml).decode()
    assert cosignature.vkey(name, 0x04, ed) == f"{name}+{by_hand_ed:08x}+{ed_b64}"
    assert cosignature.vkey(name, 0x06, ml) == f"{name}+{by_hand_ml:08x}+{ml_b64}"
    assert cosignature.parse_vkey(cosignature.vkey(name, 0x06, ml)) == (name, 0x06, ml)
    assert cosignature.parse_vkey(cosignature.vkey(name, 0x04, ed)) == (name, 0x04, ed)


def test_a_cosigner_vkey_with_a_wrong_key_id_or_type_is_refused() -> None:
    name = "w.test/1"
    ed = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    good = cosignature.vkey(name, 0x04, ed)
    n, kid, key = good.split("+", 2)
    with pytest.raises(MalformedError, match="key ID does not match"):
        cosignature.parse_vkey(f"{n}+{int(kid, 16) ^ 1:08x}+{key}")
    with pytest.raises(MalformedError, match="Ed25519"):
        log_key = base64.b64encode(b"\x01" + ed).decode()
        cosignature.parse_vkey(f"{n}+{kid}+{log_key}")  # a log key (0x01)


def test_ed25519_cosignature_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    sig = cosignature.ed25519_signature(EXAMPLE_TEXT, "w.test/1", key, 1679315147)
    parsed = note.Note(EXAMPLE_TEXT, (sig,))
    pub = key.public_key().public_bytes_raw()
    assert cosignature.verified_cosigners(parsed, [("w.test/1", pub)]) == [("w.test/1", 1679315147)]
    key.public_key().verify(sig.signature[8:], EXAMPLE_MESSAGE.encode())  # exactly the spec's message
    assert cosignature.verified_cosigners(parsed, [("w.test/2", pub)]) == []  # the name is in the key ID


def test_the_mldsa_cosigned_message_struct_layout() -> None:
    """tlog-cosignature §ML-DSA-44 signed message: label[12], name<1..255>, u64, origin<1..255>, u64, u64, hash[32]."""
    root = bytes(range(32))
    msg = cosignature.mldsa_message("witness.example/w1", 1679315147, "example.com/behind-the-sofa", 0, 20852163, root)
    name, origin = b"witness.example/w1", b"example.com/behind-the-sofa"
    expected = (
        b"subtree/v1\n\x00"
        + bytes([len(name)])
        + name
        + (1679315147).to_bytes(8, "big")
        + bytes([len(origin)])
        + origin
        + (0).to_bytes(8, "big")
        + (20852163).to_bytes(8, "big")
        + root
    )
    assert msg == expected
    assert len(msg) == 12 + 1 + len(name) + 8 + 1 + len(origin) + 8 + 8 + 32
    assert msg[:12] == b"subtree/v1\n\x00" and len(b"subtree/v1\n\x00") == 12
    with pytest.raises(ValueError, match="1 to 255"):
        cosignature.mldsa_message("", 1, "o", 0, 1, root)
    with pytest.raises(ValueError, match="1 to 255"):
        cosignature.mldsa_message("n", 1, "o" * 256, 0, 1, root)
    with pytest.raises(ValueError, match="zero timestamp"):
        cosignature.mldsa_message("n", 1, "o", 1, 2, root)  # "If start is not zero, these values MUST be zero"
    with pytest.raises(ValueError):
        cosignature.mldsa_message("n", 2**63, "o", 0, 1, root)


def test_mldsa_cosignature_round_trip() -> None:
    key = MLDSA44PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    cp = Checkpoint(
        "example.com/behind-the-sofa", 20852163, base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    )
    sig = cosignature.mldsa_signature("w.test/1", key, 1679315147, cp.origin, cp.size, cp.root)
    assert sig.key_id == cosignature.mldsa_key_id("w.test/1", pub)
    assert len(sig.signature) == 8 + 2420 and sig.signature[:8] == (1679315147).to_bytes(8, "big")
    # The signature is over the struct (pure ML-DSA-44, empty context).
    key.public_key().verify(
        sig.signature[8:], cosignature.mldsa_message("w.test/1", 1679315147, cp.origin, 0, cp.size, cp.root)
    )
    with pytest.raises(InvalidSignature):
        key.public_key().verify(sig.signature[8:], cosignature.message(cp.text(), 1679315147))
    parsed = note.parse(note.Note(cp.text(), (sig,)).encode())
    assert cosignature.verified_mldsa_cosigners(parsed, cp.origin, cp.size, cp.root, [("w.test/1", pub)]) == [
        ("w.test/1", 1679315147)
    ]
    # Another size, root, origin or name: nothing verifies.
    assert cosignature.verified_mldsa_cosigners(parsed, cp.origin, cp.size + 1, cp.root, [("w.test/1", pub)]) == []
    assert cosignature.verified_mldsa_cosigners(parsed, cp.origin, cp.size, bytes(32), [("w.test/1", pub)]) == []
    assert cosignature.verified_mldsa_cosigners(parsed, "x.test/o", cp.size, cp.root, [("w.test/1", pub)]) == []
    # An Ed25519 verifier ignores the ML-DSA line (another key ID and length), as clients must.
    ed = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert cosignature.verified_cosigners(parsed, [("w.test/1", ed)]) == []


def test_origin_hash_and_monitoring_path() -> None:
    h = hashlib.sha256(b"example.com/behind-the-sofa").hexdigest()
    assert witness.origin_hash("example.com/behind-the-sofa") == h
    assert witness.checkpoint_path("example.com/behind-the-sofa") == f"/{h}/checkpoint"
