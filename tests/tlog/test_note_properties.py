"""Property tests for signed notes, checkpoints, tile paths and entry bundles.

* sign/open round-trips for random valid note texts, key names and keys;
* every single-bit change of a signed note or signed checkpoint is rejected with
  MalformedError or NoteVerificationError — never accepted, never another exception;
* the parsers (note.parse, Checkpoint.parse_text, tiles.parse_path,
  tiles.parse_bundle, tiles.split_hashes, and the key parsers) raise nothing but
  MalformedError on arbitrary input, and whatever they accept is canonical
  (re-encoding gives back the exact input);
* entry bundles round-trip, and the 65,535-byte entry limit is exact.
"""

from __future__ import annotations

import base64
import contextlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fiat.errors import EntryTooLargeError, MalformedError, NoteVerificationError
from fiat.tlog import note, tiles
from fiat.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from fiat.tlog.tiles import Tile

REJECTED = (MalformedError, NoteVerificationError)

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ----------------------------------------------------------------

# Anything but ASCII control characters (signed-note §Format allows all the rest, DEL included).
note_char = st.characters(blacklist_categories=("Cs",), blacklist_characters=[chr(c) for c in range(0x20)])
note_line = st.text(note_char, max_size=30)
note_texts = st.lists(note_line, min_size=1, max_size=6).map(lambda lines: "\n".join(lines) + "\n")

# Key names: non-empty, no Unicode space, no '+', no control character (signed-note §Format).
key_name_char = st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters=["+"]).filter(
    lambda c: not c.isspace()
)
key_names = st.one_of(
    st.from_regex(r"[a-z0-9-]{1,12}(\.[a-z]{2,5})?(/[A-Za-z0-9_.-]{1,12})?", fullmatch=True),
    st.text(key_name_char, min_size=1, max_size=20),
)
seeds = st.binary(min_size=32, max_size=32)


@st.composite
def signers(draw: st.DrawFn, min_size: int = 1, max_size: int = 1) -> list[note.Signer]:
    count = draw(st.integers(min_size, max_size))
    out: list[note.Signer] = []
    for _ in range(count):
        s = note.Signer(draw(key_names), Ed25519PrivateKey.from_private_bytes(draw(seeds)))
        assume(all((s.name, s.key_id) != (o.name, o.key_id) for o in out))
        out.append(s)
    return out


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def bits_to_flip(data: bytes, text_len: int, draw_sample: list[int]) -> list[int]:
    """Every bit of the signature block; every bit of the text when short, else a sample."""
    sig_bits = range(text_len * 8, len(data) * 8)
    text_bits = range(text_len * 8) if text_len <= 96 else draw_sample
    return [*text_bits, *sig_bits]


# -- signed notes ----------------------------------------------------------------


@SETTINGS
@given(text=note_texts, ss=signers(1, 3))
def test_sign_open_round_trip(text: str, ss: list[note.Signer]) -> None:
    """sign() then open_note() gives back the text and one verified signature per signer;
    parse() then encode() is the identity; any non-empty subset of the keys verifies it."""
    data = note.sign(text, ss)
    n, verified = note.open_note(data, [s.verifier for s in ss])
    assert n.text == text
    assert [(v.name, v.key_id) for v in verified] == [(s.name, s.key_id) for s in ss]
    assert note.parse(data).encode() == data
    _, verified = note.open_note(data, [ss[-1].verifier])
    assert [(v.name, v.key_id) for v in verified] == [(ss[-1].name, ss[-1].key_id)]
    # Re-signing: the existing signatures are kept and the new one appended.
    extra = note.Signer("re-signer.example", Ed25519PrivateKey.from_private_bytes(b"\x42" * 32))
    data2 = note.sign(text, [extra], existing=n.signatures)
    _, verified = note.open_note(data2, [extra.verifier, *(s.verifier for s in ss)])
    assert len(verified) == len(ss) + 1


@SETTINGS
@given(name=key_names, seed=seeds)
def test_key_encodings_round_trip(name: str, seed: bytes) -> None:
    """Verifier and signer keys round-trip through encode/parse, whatever their base64 holds
    (about half of all keys have a '+' in their base64, which must not confuse the parser)."""
    signer = note.Signer(name, Ed25519PrivateKey.from_private_bytes(seed))
    vkey = signer.verifier.encode()
    assert note.Verifier.parse(vkey) == signer.verifier
    skey = signer.encode()
    again = note.Signer.parse(skey)
    assert again.encode() == skey
    assert again.verifier == signer.verifier


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=note_texts, ss=signers(1, 1), data=st.data())
def test_every_bit_flip_of_signed_note_rejected(text: str, ss: list[note.Signer], data: st.DataObject) -> None:
    """With one (known) signer, any single-bit change anywhere in the encoded note — text,
    separator, em dash, key name, key ID, signature, padding, newlines — is rejected with
    MalformedError or NoteVerificationError. (A flip in the key name or ID makes the signature
    unknown, so the note has no known signature left and is rejected.)"""
    encoded = note.sign(text, ss)
    verifiers = [ss[0].verifier]
    text_len = len(text.encode())
    sample = data.draw(st.lists(st.integers(0, text_len * 8 - 1), max_size=256), label="text bits")
    for bit in bits_to_flip(encoded, text_len, sample):
        with pytest.raises(REJECTED):
            note.open_note(flip(encoded, bit), verifiers)


@settings(max_examples=10, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=note_texts, ss=signers(2, 3), data=st.data())
def test_bit_flips_with_several_signers(text: str, ss: list[note.Signer], data: st.DataObject) -> None:
    """With several known signers a flip in one signature line's key name or ID turns that
    signature into an unknown one, which the spec says to ignore. So a flipped note is either
    rejected (MalformedError / NoteVerificationError) or accepted with the *same text* and
    strictly fewer verified signatures — never with a changed text."""
    encoded = note.sign(text, ss)
    verifiers = [s.verifier for s in ss]
    text_len = len(text.encode())
    sample = data.draw(st.lists(st.integers(0, len(encoded) * 8 - 1), min_size=1, max_size=400), label="bits")
    for bit in sample:
        try:
            n, verified = note.open_note(flip(encoded, bit), verifiers)
        except REJECTED:
            continue
        assert bit >= text_len * 8
        assert n.text == text
        assert len(verified) < len(ss)
        assert {(v.name, v.key_id) for v in verified} < {(s.name, s.key_id) for s in ss}


@SETTINGS
@given(text=note_texts, ss=signers(1, 2))
def test_unknown_and_wrong_keys_rejected(text: str, ss: list[note.Signer]) -> None:
    """No known key: rejected. A verifier with the signer's name and key ID but another public
    key: its signature fails, so the whole note is rejected (signed-note §Signatures)."""
    data = note.sign(text, ss)
    with pytest.raises(NoteVerificationError):
        note.open_note(data, [])
    stranger = note.Signer("stranger.example", Ed25519PrivateKey.from_private_bytes(b"\x01" * 32))
    with pytest.raises(NoteVerificationError):
        note.open_note(data, [stranger.verifier])
    other_pub = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32).public_key().public_bytes_raw()
    impostor = note.Verifier(ss[0].name, ss[0].key_id, other_pub)
    with pytest.raises(NoteVerificationError):
        note.open_note(data, [impostor, *(s.verifier for s in ss[1:])])


@SETTINGS
@given(text=note_texts)
def test_sign_rejects_bad_text(text: str) -> None:
    """sign() refuses a text without a final newline or with an ASCII control character."""
    signer = note.Signer("k", Ed25519PrivateKey.from_private_bytes(b"\x03" * 32))
    with pytest.raises(MalformedError):
        note.sign(text + "x", [signer])
    with pytest.raises(MalformedError):
        note.sign(text[:-1] + "\r\n", [signer])
    with pytest.raises(MalformedError):
        note.sign("\t" + text, [signer])


# -- checkpoints -----------------------------------------------------------------

checkpoint_line = st.text(note_char, min_size=1, max_size=30)
checkpoints = st.builds(
    Checkpoint,
    origin=checkpoint_line,
    size=st.integers(0, 2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(checkpoint_line, max_size=3).map(tuple),
)


@SETTINGS
@given(cp=checkpoints)
def test_checkpoint_text_round_trip(cp: Checkpoint) -> None:
    """tlog-checkpoint §Note text: Checkpoint.text() parses back to the same checkpoint."""
    text = cp.text()
    assert Checkpoint.parse_text(text) == cp
    assert Checkpoint.parse_text(text).text() == text


@SETTINGS
@given(cp=checkpoints, origin=key_names, seed=seeds)
def test_signed_checkpoint_round_trip(cp: Checkpoint, origin: str, seed: bytes) -> None:
    """A checkpoint signed by the log key whose name is its origin opens to itself; one whose
    origin differs from the key name is refused at checkpoint-origin."""
    signer = note.Signer(origin, Ed25519PrivateKey.from_private_bytes(seed))
    cp = Checkpoint(origin, cp.size, cp.root, cp.extensions)
    signed = sign_checkpoint(cp, signer)
    opened = open_checkpoint(signed.note_bytes, signer.verifier)
    assert opened.checkpoint == cp
    assert opened.note_bytes == signed.note_bytes
    other = sign_checkpoint(Checkpoint(origin + "x", cp.size, cp.root, cp.extensions), signer)
    with pytest.raises(NoteVerificationError) as exc:
        open_checkpoint(other.note_bytes, signer.verifier)
    assert exc.value.step == "checkpoint-origin"


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(cp=checkpoints, origin=key_names, seed=seeds, data=st.data())
def test_every_bit_flip_of_signed_checkpoint_rejected(
    cp: Checkpoint, origin: str, seed: bytes, data: st.DataObject
) -> None:
    """Any single-bit change anywhere in a signed checkpoint is rejected by open_checkpoint with
    MalformedError or NoteVerificationError."""
    signer = note.Signer(origin, Ed25519PrivateKey.from_private_bytes(seed))
    cp = Checkpoint(origin, cp.size, cp.root, cp.extensions)
    encoded = sign_checkpoint(cp, signer).note_bytes
    text_len = len(cp.text().encode())
    sample = data.draw(st.lists(st.integers(0, text_len * 8 - 1), max_size=256), label="text bits")
    for bit in bits_to_flip(encoded, text_len, sample):
        with pytest.raises(REJECTED):
            open_checkpoint(flip(encoded, bit), signer.verifier)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "origin\n",
        "origin\n1\n",
        "\n1\n" + "A" * 43 + "=\n",  # empty origin
        "o\n01\n" + "A" * 43 + "=\n",  # leading zero
        "o\n-1\n" + "A" * 43 + "=\n",
        "o\n+1\n" + "A" * 43 + "=\n",
        "o\n 1\n" + "A" * 43 + "=\n",
        "o\n١\n" + "A" * 43 + "=\n",  # non-ASCII digit
        f"o\n{2**63}\n" + "A" * 43 + "=\n",  # out of range
        "o\n1\n" + "A" * 43 + "=",  # no final newline
        "o\n1\n" + "A" * 42 + "==\n",  # 31 bytes
        "o\n1\n" + "A" * 44 + "\n",  # 33 bytes
        "o\n1\n" + "A" * 42 + "B=\n",  # non-canonical base64 (padding bits set)
        "o\n1\n" + "A" * 43 + "=\n\n",  # empty extension line
        "o\n1\n" + "A" * 43 + "=\next\n\n",
    ],
)
def test_malformed_checkpoint_texts(text: str) -> None:
    """tlog-checkpoint §Note text violations are MalformedError."""
    with pytest.raises(MalformedError):
        Checkpoint.parse_text(text)


def test_checkpoint_size_bounds() -> None:
    """The tree size is a decimal with no leading zeroes; 0 and 2**63 - 1 are fine."""
    root = "A" * 43 + "="
    assert Checkpoint.parse_text(f"o\n0\n{root}\n").size == 0
    assert Checkpoint.parse_text(f"o\n{2**63 - 1}\n{root}\n").size == 2**63 - 1


# -- parsers never crash --------------------------------------------------------


def mostly(valid: st.SearchStrategy, *others: object) -> st.SearchStrategy:
    """Half the time a well-formed piece, otherwise one of the listed near misses."""
    return st.one_of(valid, st.sampled_from(others))


b64_tokens = st.one_of(
    st.binary(min_size=5, max_size=80).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=4).map(lambda b: base64.b64encode(b).decode()),
    st.text(st.sampled_from("ABCDabcd0123+/= "), max_size=20),
)
sig_lines = st.builds(
    lambda dash, name, sep, sig: f"{dash}{name}{sep}{sig}",
    mostly(st.just("— "), "—", "- ", "— — ", "", "—  "),
    st.one_of(key_names, st.text(max_size=5)),
    mostly(st.just(" "), "", "  ", "\t"),
    b64_tokens,
)
good_sig_lines = st.builds(
    lambda name, sig: f"— {name} {base64.b64encode(sig).decode()}",
    key_names,
    st.binary(min_size=5, max_size=72),
)
near_notes = st.builds(
    lambda text, sep, lines, end: (text + sep + "\n".join(lines) + end).encode("utf-8", "surrogatepass"),
    st.one_of(note_texts, st.text(max_size=20)),
    mostly(st.just("\n"), "", "\n\n"),
    st.lists(st.one_of(good_sig_lines, sig_lines), min_size=1, max_size=3),
    mostly(st.just("\n"), "", "\n\n"),
)


def _accepts_canonical_note(data: bytes) -> None:
    try:
        n = note.parse(data)
    except MalformedError:
        return
    assert n.encode() == data


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), near_notes))
def test_note_parse_only_raises_malformed(data: bytes) -> None:
    """note.parse on arbitrary bytes raises only MalformedError, and what it accepts re-encodes
    to exactly the input."""
    _accepts_canonical_note(data)


@SETTINGS
@given(data=st.one_of(st.binary(max_size=300), near_notes))
def test_open_note_only_raises_rejections(data: bytes) -> None:
    """open_note and open_checkpoint on arbitrary bytes only ever reject, with the documented errors."""
    v = note.Signer("k", Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)).verifier
    with pytest.raises(REJECTED):
        note.open_note(data, [v])
    with pytest.raises(REJECTED):
        open_checkpoint(data, v)


def test_note_size_limit() -> None:
    """Notes larger than the parser's bound are refused as malformed, not processed."""
    with pytest.raises(MalformedError):
        note.parse(b"a\n\n" + b"x" * note.MAX_NOTE_SIZE)


near_checkpoints = st.builds(
    lambda head, lines, end: "\n".join([*head, *lines]) + end,
    st.one_of(
        st.tuples(
            st.text(note_char, min_size=1, max_size=10),
            st.integers(0, 2**63 - 1).map(str),
            st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode()),
        ),
        st.just(()),
    ),
    st.lists(
        st.one_of(
            st.text(max_size=10),
            st.integers(-5, 2**64).map(str),
            st.sampled_from(["0", "00", "01", "", " "]),
            st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
            st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode()),
        ),
        max_size=6,
    ),
    mostly(st.just("\n"), "", "\n\n"),
)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), near_checkpoints))
def test_checkpoint_parse_only_raises_malformed(text: str) -> None:
    """Checkpoint.parse_text on arbitrary text raises only MalformedError; accepted texts are canonical."""
    try:
        cp = Checkpoint.parse_text(text)
    except MalformedError:
        return
    assert cp.text() == text


@FUZZ
@given(raw=st.binary(max_size=200))
def test_checkpoint_parse_of_decoded_bytes(raw: bytes) -> None:
    """Bytes decoded leniently (lone surrogates included) still only raise MalformedError."""
    for text in (raw.decode("utf-8", "surrogateescape"), raw.decode("latin-1")):
        try:
            cp = Checkpoint.parse_text(text)
        except MalformedError:
            continue
        assert cp.text() == text


near_paths = st.builds(
    lambda head, level, elems, suffix: "/".join([head, level, elems]) + suffix,
    mostly(st.just("tile"), "tiles", "", "TILE", "/tile"),
    st.one_of(
        st.integers(0, 63).map(str),
        st.integers(-2, 70).map(str),
        st.sampled_from(["entries", "data", "00", "01", "", "x0"]),
    ),
    st.one_of(
        st.integers(0, 10**12).map(tiles.encode_index),
        st.lists(
            st.one_of(
                st.integers(0, 1000).map(lambda n: f"{n:03d}"),
                st.integers(0, 1000).map(lambda n: f"x{n:03d}"),
                st.sampled_from(["", "x", "xx001", "0", "00", "0000", "x00", ".p", "001.p", "x001.p"]),
            ),
            max_size=8,
        ).map("/".join),
    ),
    st.one_of(
        st.just(""),
        st.integers(1, 255).map(lambda w: f".p/{w}"),
        st.integers(-1, 300).map(lambda w: f".p/{w}"),
        st.sampled_from([".p/", ".p/01", "/", ".p/1/"]),
    ),
)


@FUZZ
@given(path=st.one_of(st.text(max_size=60), near_paths))
def test_parse_path_only_raises_malformed(path: str) -> None:
    """tiles.parse_path on arbitrary text raises only MalformedError; accepted paths are canonical
    (Tile.path() gives back the exact input) and in range."""
    try:
        t = tiles.parse_path(path)
    except MalformedError:
        return
    assert t.path() == path
    assert -1 <= t.level <= 63
    assert 1 <= t.width <= 256
    assert t.index >= 0


@FUZZ
@given(level=st.integers(-1, 63), index=st.integers(0, 2**56), width=st.integers(1, 256))
def test_tile_path_round_trip(level: int, index: int, width: int) -> None:
    """tlog-tiles §Merkle Tree: every tile coordinate encodes to a path that parses back to it."""
    t = Tile(level, index, width)
    assert tiles.parse_path(t.path()) == t


near_bundles = st.lists(
    st.one_of(
        st.binary(max_size=60).map(lambda b: struct.pack(">H", len(b)) + b),
        st.tuples(st.integers(0, 70), st.binary(max_size=60)).map(lambda t: struct.pack(">H", t[0]) + t[1][: t[0]]),
    ),
    max_size=8,
).map(b"".join)


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=300), near_bundles),
    width=st.one_of(st.none(), st.integers(0, 300)),
)
def test_parse_bundle_only_raises_malformed(data: bytes, width: int | None) -> None:
    """tiles.parse_bundle on arbitrary bytes raises only MalformedError; what it accepts
    re-encodes to exactly the input and holds at most 256 entries (width entries if given)."""
    try:
        entries = tiles.parse_bundle(data, width)
    except MalformedError:
        return
    assert tiles.encode_bundle(entries) == data
    assert len(entries) <= 256
    if width is not None:
        assert len(entries) == width


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=300), st.integers(0, 257).map(lambda n: b"\x00" * 32 * n)),
    width=st.one_of(st.none(), st.integers(0, 300)),
)
def test_split_hashes_only_raises_malformed(data: bytes, width: int | None) -> None:
    """tiles.split_hashes on arbitrary bytes raises only MalformedError; accepted data is 1..256
    whole 32-byte hashes (width of them if given)."""
    try:
        hashes = tiles.split_hashes(data, width)
    except MalformedError:
        return
    assert b"".join(hashes) == data
    assert 1 <= len(hashes) <= 256
    assert all(len(h) == 32 for h in hashes)
    if width is not None:
        assert len(hashes) == width


@FUZZ
@given(
    key=st.one_of(
        st.text(max_size=100),
        st.builds(
            lambda parts: "+".join(parts),
            st.lists(st.one_of(st.text(max_size=10), b64_tokens, st.sampled_from(["PRIVATE", "KEY"])), max_size=6),
        ),
    )
)
def test_key_parsers_only_raise_malformed(key: str) -> None:
    """Verifier.parse and Signer.parse on arbitrary text raise only MalformedError."""
    for parse in (note.Verifier.parse, note.Signer.parse):
        with contextlib.suppress(MalformedError):
            parse(key)


# -- entry bundles ---------------------------------------------------------------


@SETTINGS
@given(
    entries=st.lists(
        st.one_of(st.binary(max_size=64), st.integers(0, 3000).map(lambda n: bytes([n % 251]) * n)), max_size=256
    )
)
def test_entry_bundle_round_trip(entries: list[bytes]) -> None:
    """tlog-tiles §Log entries: big-endian uint16 length-prefixed entries round-trip."""
    data = tiles.encode_bundle(entries)
    assert len(data) == sum(2 + len(e) for e in entries)
    assert tiles.parse_bundle(data) == entries
    assert tiles.parse_bundle(data, len(entries)) == entries
    with pytest.raises(MalformedError):
        tiles.parse_bundle(data, len(entries) + 1)
    if data:
        with pytest.raises(MalformedError):
            tiles.parse_bundle(data[:-1])  # truncated


def test_entry_bundle_full_and_overfull() -> None:
    """A full bundle holds 256 entries; a 257th is malformed."""
    entries = [bytes([i]) * (i % 7) for i in range(256)]
    data = tiles.encode_bundle(entries)
    assert tiles.parse_bundle(data, 256) == entries
    with pytest.raises(MalformedError):
        tiles.parse_bundle(data + tiles.encode_bundle([b"x"]))


def test_entry_size_limit() -> None:
    """tlog-tiles §Log entries: uint16 length prefix, so 65,535 bytes is the largest entry and
    65,536 bytes raises EntryTooLargeError."""
    biggest = b"\xab" * 65_535
    tiles.check_entry(biggest)
    data = tiles.encode_bundle([biggest, b"", biggest])
    assert data[:2] == b"\xff\xff"
    assert tiles.parse_bundle(data) == [biggest, b"", biggest]
    too_big = b"\xab" * 65_536
    with pytest.raises(EntryTooLargeError):
        tiles.check_entry(too_big)
    with pytest.raises(EntryTooLargeError):
        tiles.encode_bundle([b"ok", too_big])
