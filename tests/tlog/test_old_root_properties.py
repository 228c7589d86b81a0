"""Property tests for fiat.tlog.merkle.old_root_from_consistency against the reference tree.

RFC 9162 §2.1.4.2 computes both roots from a consistency path; the old root is an output
exactly when the old size is not a power of 2 (else step 2 prepends it as an input). The
function is how a witness exports a split-view proof from a refused submission: the other
history's root at the old size, from the proof the log sent. So, over random trees
(``support.reference_merkle.MemoryTree``):

* for a genuine proof and a non-power-of-2 old size it returns the tree's root at that size;
* it returns None for power-of-2 and zero sizes, equal sizes and an empty path;
* whatever it returns for any path, that root and the path verify (``verify_consistency``), and
  a path that does not lead to the new root gives None — it never vouches for a root the path
  does not prove.
"""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fiat.tlog import merkle
from support.reference_merkle import MemoryTree

SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def tree(n: int, salt: str = "") -> MemoryTree:
    return MemoryTree([f"{salt}{i}".encode() for i in range(n)])


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@SETTINGS
@given(new=st.integers(2, 300), old=st.integers(1, 299))
def test_a_genuine_proof_gives_the_old_root(new: int, old: int) -> None:
    assume(old < new)
    t = tree(new)
    proof = t.consistency_proof(old, new)
    got = merkle.old_root_from_consistency(old, new, t.root(), proof)
    if is_pow2(old):
        assert got is None
    else:
        assert got == t.root(old)
        merkle.verify_consistency(old, new, got, t.root(), proof)


@SETTINGS
@given(prefix=st.integers(0, 100), a=st.integers(1, 60), b=st.integers(1, 120))
def test_a_fork_is_exposed(prefix: int, a: int, b: int) -> None:
    """A proof from the larger fork yields its root at the smaller size: not the other fork's."""
    common = [f"c{i}".encode() for i in range(prefix)]
    small = MemoryTree([*common, *(f"a{i}".encode() for i in range(a))])
    large = MemoryTree([*common, *(f"b{i}".encode() for i in range(b))])
    assume(small.size < large.size and not is_pow2(small.size))
    got = merkle.old_root_from_consistency(small.size, large.size, large.root(), large.consistency_proof(small.size))
    assert got == large.root(small.size) != small.root()


@SETTINGS
@given(new=st.integers(1, 200), old=st.integers(0, 200))
def test_no_root_where_the_proof_determines_none(new: int, old: int) -> None:
    t = tree(max(new, old))
    assert merkle.old_root_from_consistency(old, old, t.root(old), [t.root(old)]) is None
    if old == 0 or is_pow2(old) or old >= new:
        proof = t.consistency_proof(old, new) if 0 < old < new else []
        assert merkle.old_root_from_consistency(old, new, t.root(new), proof) is None
    else:
        assert merkle.old_root_from_consistency(old, new, t.root(new), []) is None


@SETTINGS
@given(new=st.integers(3, 200), old=st.integers(3, 199), data=st.data())
def test_a_tampered_path_or_another_new_root_gives_none(new: int, old: int, data: st.DataObject) -> None:
    assume(old < new and not is_pow2(old))
    t = tree(new)
    proof = t.consistency_proof(old, new)
    i = data.draw(st.integers(0, len(proof) - 1))
    pos = data.draw(st.integers(0, 31))
    bad = list(proof)
    bad[i] = bytes(x ^ (0x80 if j == pos else 0) for j, x in enumerate(bad[i]))
    got = merkle.old_root_from_consistency(old, new, t.root(), bad)
    # Every path hash feeds the new root's computation (RFC 9162 §2.1.4.2: sr), so a flip breaks it.
    assert got is None
    # Another tree's root: the path leads elsewhere.
    assert merkle.old_root_from_consistency(old, new, tree(new, "x").root(), proof) is None


@SETTINGS
@given(
    old=st.integers(1, 1 << 40),
    new=st.integers(2, 1 << 41),
    path=st.lists(st.binary(min_size=32, max_size=32), max_size=50),
    root=st.binary(min_size=32, max_size=32),
)
def test_random_paths_never_vouch_for_an_unproven_root(old: int, new: int, path: list[bytes], root: bytes) -> None:
    got = merkle.old_root_from_consistency(old, new, root, path)
    if got is not None:
        merkle.verify_consistency(old, new, got, root, path)
