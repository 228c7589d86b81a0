"""Fixtures of the log side's witnessing tests: witnesses over real HTTP (support.witness_double)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from support.witness_double import TestWitness


@pytest.fixture
def black_hole() -> Iterator[str]:
    """The URL of a witness that accepts connections and never answers (the kernel completes the
    handshake; nobody reads): a submission can only end by its timeout."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture
def witnesses() -> Iterator[list[TestWitness]]:
    """Collects the test witnesses a test starts and stops them afterwards."""
    started: list[TestWitness] = []
    yield started
    for w in started:
        w.stop()
