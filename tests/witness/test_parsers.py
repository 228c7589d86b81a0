"""The request parser (hypothesis properties) and the logs file parser (tlog-policy style)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fiat.errors import ConfigError, MalformedError
from fiat.persist.sqlite.witness import SQLiteWitnessStore
from fiat.tlog import note
from fiat.tlog.witness import MAX_PROOF_LINES, AddCheckpointRequest, parse_size
from fiat.witness.core import Witness
from fiat.witness.logs import parse_logs

KEY = note.Signer("log.test/a", Ed25519PrivateKey.from_private_bytes(bytes(32)))
VKEY = KEY.verifier.encode()
OTHER = note.Signer("log.test/b", Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)).verifier.encode()

hashes = st.binary(min_size=32, max_size=32)
checkpoints = st.builds(
    lambda size, root: note.sign(f"log.test/a\n{size}\n{note.b64(root)}\n", [KEY]), st.integers(0, 2**63 - 1), hashes
)


@given(old=st.integers(0, 2**63 - 1), proof=st.lists(hashes, max_size=MAX_PROOF_LINES), cp=checkpoints)
def test_encode_then_parse_is_the_identity(old: int, proof: list[bytes], cp: bytes) -> None:
    req = AddCheckpointRequest(old, tuple(proof), cp)
    body = req.encode()
    assert AddCheckpointRequest.parse(body) == req
    assert AddCheckpointRequest.parse(body).encode() == body


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_parser(body: bytes) -> None:
    with contextlib.suppress(MalformedError):
        AddCheckpointRequest.parse(body)


@settings(max_examples=300)
@given(old=st.integers(0, 2**63 - 1), proof=st.lists(hashes, max_size=4), cp=checkpoints, data=st.data())
def test_mutated_requests_parse_or_are_malformed(old: int, proof: list[bytes], cp: bytes, data: st.DataObject) -> None:
    body = bytearray(AddCheckpointRequest(old, tuple(proof), cp).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(MalformedError):
        AddCheckpointRequest.parse(bytes(body))


@given(st.binary(max_size=40))
def test_size_bodies_parse_or_are_malformed(body: bytes) -> None:
    with contextlib.suppress(MalformedError):
        assert parse_size(body) >= 0


def test_more_than_63_proof_lines_cannot_be_sent() -> None:
    with pytest.raises(ValueError):
        AddCheckpointRequest(1, (bytes(32),) * 64, b"x").encode()


# -- the logs file -------------------------------------------------------------------------


def test_log_lines_comments_blank_lines_and_whitespace() -> None:
    text = f"# logs\n\n   \t\nlog {VKEY}\n  \tlog\t{OTHER}   https://b.example/log  \n   # indented comment\n"
    logs = parse_logs(text, "logs.txt")
    assert [(x.origin, x.url, x.line) for x in logs] == [
        ("log.test/a", None, 4),
        ("log.test/b", "https://b.example/log", 5),
    ]
    assert logs[1].render() == f"log {OTHER} https://b.example/log"
    assert parse_logs("") == [] and parse_logs("# nothing\n") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"witness w1 {VKEY}\n", r"logs.txt:1: 'witness' lines do not belong"),
        ("log\n", r"logs.txt:1: expected `log <vkey> \[<url>\]`, got 0"),
        (f"# c\nlog {VKEY} http://a.example/ extra\n", r"logs.txt:2: expected `log <vkey> \[<url>\]`, got 3"),
        ("log not-a-vkey\n", r"logs.txt:1: .*`fiat log vkey`"),
        (f"log {VKEY[:-2]}xx\n", r"logs.txt:1: "),
        (f"log {VKEY} ftp://a.example/\n", r"logs.txt:1: 'ftp://a.example/' is not an http"),
        (f"log {VKEY}\n\nlog {VKEY}\n", r"logs.txt:3: the same log key as line 1"),
        (f"LOG {VKEY}\n", r"logs.txt:1: 'LOG' lines"),
    ],
)
def test_bad_lines_are_errors_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_logs(text, "logs.txt")


def test_a_rotated_log_key_is_a_second_line_for_the_same_origin() -> None:
    rotated = note.Signer("log.test/a", Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32)).verifier.encode()
    logs = parse_logs(f"log {VKEY}\nlog {rotated}\n")
    assert [x.origin for x in logs] == ["log.test/a", "log.test/a"]


@given(st.text(max_size=300))
def test_random_text_is_parsed_or_a_config_error(text: str) -> None:
    try:
        parse_logs(text)
    except ConfigError as exc:
        assert str(exc).startswith("witness logs:")


# -- the state machine never fails on hostile input ----------------------------------------


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Witness]:
    store = SQLiteWitnessStore(tmp_path_factory.mktemp("machine") / "witness.db")
    keys = {KEY.name: [KEY.verifier]}
    yield Witness("w.test/m", Ed25519PrivateKey.generate(), None, lambda: keys, store)
    store.close()


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=st.integers(0, 50), proof=st.lists(hashes, max_size=3), cp=checkpoints, data=st.data())
def test_hostile_requests_get_a_status_never_an_exception(
    machine: Witness, old: int, proof: list[bytes], cp: bytes, data: st.DataObject
) -> None:
    body = bytearray(AddCheckpointRequest(old, tuple(proof), cp).encode())
    for _ in range(data.draw(st.integers(0, 3))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    out = machine.add_checkpoint(bytes(body))
    assert out.status in (200, 400, 403, 404, 409, 422), out
    assert out.body.endswith(b"\n")
