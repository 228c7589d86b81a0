"""Property tests for fiat.tlog.merkle and the tile-backed hash source.

The reference model here is a naive, memoised transcription of the recursive
definitions in RFC 9162 §2.1.1 (MTH), §2.1.3.1 (PATH) and §2.1.4.1 (PROOF /
SUBPROOF), working on slices of leaf hashes. It shares no code with fiat.

Tampering: RFC 9162's verifiers authenticate the *hashes*; the leaf index and
tree sizes only select the order in which hashes are combined. A verifier run
with another (index, size) therefore accepts a genuine proof exactly when that
other (index, size) combines the same proof hashes in the same way — the
proof's *shape* (e.g. index 0 in a tree of 5 and of 7: sibling hashes on the
right at every level). That is not a flaw: the size is bound by the signed
checkpoint that carries the root. The tests below compute the shape from the
RFC recursion and require: rejected with ProofError if and only if the shape
differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fiat.errors import ProofError
from fiat.tlog import merkle, tiles
from fiat.tlog.merkle import verify_consistency, verify_inclusion
from support.reference_merkle import MemoryTree

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- the reference model: RFC 9162 §2.1, naively -------------------------------


def _k(n: int) -> int:
    """The largest power of two strictly smaller than n (n > 1), by counting."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class RefTree:
    """MTH, PATH and PROOF exactly as RFC 9162 §2.1 defines them, over D = entries."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.leaves = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return self.leaves[lo]
        k = _k(n)
        return hashlib.sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)).digest()

    def root(self, n: int) -> bytes:
        return self.mth(0, n)

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[lo:hi]) — RFC 9162 §2.1.3.1."""
        n = hi - lo
        if n == 1:
            return []
        k = _k(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:hi], b) — RFC 9162 §2.1.4.1."""
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = _k(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[n]) = SUBPROOF(m, D[n], true); empty for m == 0 or m == n (fiat's convention)."""
        if m in (0, n):
            return []
        return self.subproof(m, 0, n, True)


def ref_mth_of_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves, recursively (RFC 9162 §2.1.1)."""
    if len(hashes) == 1:
        return hashes[0]
    k = _k(len(hashes))
    return hashlib.sha256(b"\x01" + ref_mth_of_hashes(hashes[:k]) + ref_mth_of_hashes(hashes[k:])).digest()


def inclusion_shape(m: int, n: int) -> tuple[str, ...]:
    """Which side each PATH(m, D[n]) hash sits on: 'R' sibling to the right, 'L' to the left."""
    if n == 1:
        return ()
    k = _k(n)
    if m < k:
        return (*inclusion_shape(m, k), "R")
    return (*inclusion_shape(m - k, n - k), "L")


def consistency_shape(m: int, n: int, b: bool = True) -> tuple[str, ...]:
    """The role of each SUBPROOF(m, D[n], b) hash: 'self' (an old-tree node), 'R' or 'L'."""
    if m == n:
        return () if b else ("self",)
    k = _k(n)
    if m <= k:
        return (*consistency_shape(m, k, b), "R")
    return (*consistency_shape(m - k, n - k, False), "L")


def root_from_shape(leaf: bytes, proof: Sequence[bytes], shape: Sequence[str]) -> bytes:
    """Fold an inclusion proof using its shape: an independent verifier."""
    r = leaf
    for h, side in zip(proof, shape, strict=True):
        r = hashlib.sha256(b"\x01" + (r + h if side == "R" else h + r)).digest()
    return r


# -- helpers -------------------------------------------------------------------


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def entries_for(size: int, salt: bytes) -> list[bytes]:
    return [salt + i.to_bytes(4, "big") for i in range(size)]


def incl_ok(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    try:
        verify_inclusion(index, size, leaf, proof, root)
    except ProofError:
        return False
    return True


def cons_ok(m: int, n: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    try:
        verify_consistency(m, n, old_root, new_root, proof)
    except ProofError:
        return False
    return True


trees = st.tuples(st.integers(1, 300), st.binary(max_size=6))
random_entry_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=64)
# Distinct entries: with two equal leaves, swapping them is (correctly) undetectable.
distinct_entry_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=64, unique=True)
bits64 = st.integers(0, 63)


# -- roots ---------------------------------------------------------------------


@SETTINGS
@given(entries=st.lists(st.binary(max_size=40), max_size=70))
def test_roots_match_reference(entries: list[bytes]) -> None:
    """MemoryTree.root(n) and root_of_hashes equal RFC 9162 MTH(D[0:n]) for every prefix n."""
    ref = RefTree(entries)
    tree = MemoryTree(entries)
    for n in range(len(entries) + 1):
        assert tree.root(n) == ref.root(n)
    assert merkle.root_of_hashes(ref.leaves) == ref.root(len(entries))


@pytest.mark.parametrize("size", [511, 512, 513, 1000, 1023, 1024, 1025, 4097])
def test_roots_match_reference_larger_sizes(size: int) -> None:
    """Same as above for a few larger sizes around powers of two."""
    entries = entries_for(size, b"big")
    ref = RefTree(entries)
    tree = MemoryTree(entries)
    assert tree.root() == ref.root(size)
    for n in (1, size // 3, size // 2, size - 1):
        assert tree.root(n) == ref.root(n)


# -- inclusion -----------------------------------------------------------------


@SETTINGS
@given(tree=trees)
def test_every_inclusion_proof_verifies_and_matches_reference(tree: tuple[int, bytes]) -> None:
    """RFC 9162 §2.1.3.1/§2.1.3.2: for every leaf of a random tree (1..300 leaves), fiat's
    PATH equals the reference PATH, verifies with verify_inclusion, and folds to the root
    under the independent shape-driven verifier."""
    size, salt = tree
    entries = entries_for(size, salt)
    ref = RefTree(entries)
    mt = MemoryTree(entries)
    root = mt.root()
    assert root == ref.root(size)
    for i in range(size):
        proof = mt.inclusion_proof(i)
        assert proof == ref.path(i, 0, size)
        leaf = merkle.leaf_hash(entries[i])
        verify_inclusion(i, size, leaf, proof, root)
        assert merkle.root_from_inclusion_proof(i, size, leaf, proof) == root
        assert root_from_shape(leaf, proof, inclusion_shape(i, size)) == root


def test_every_inclusion_proof_small_trees_exhaustive() -> None:
    """All (index, size) with size <= 64, proofs into every intermediate tree size too."""
    entries = entries_for(64, b"x")
    ref = RefTree(entries)
    mt = MemoryTree(entries)
    for size in range(1, 65):
        root = ref.root(size)
        for i in range(size):
            proof = mt.inclusion_proof(i, size)
            assert proof == ref.path(i, 0, size)
            verify_inclusion(i, size, ref.leaves[i], proof, root)


@pytest.mark.parametrize("size", [1000, 1024, 1025, 4097, 70_000])
def test_inclusion_larger_trees(size: int) -> None:
    """A handful of leaves (edges, middle, around powers of two) of larger trees."""
    entries = entries_for(size, b"L")
    mt = MemoryTree(entries)
    ref = RefTree(entries)
    root = mt.root()
    assert root == ref.root(size)
    for i in sorted({0, 1, 255, 256, size // 2, size - 257, size - 2, size - 1} & set(range(size))):
        proof = mt.inclusion_proof(i)
        assert proof == ref.path(i, 0, size)
        verify_inclusion(i, size, ref.leaves[i], proof, root)


@SETTINGS
@given(entries=distinct_entry_lists, data=st.data())
def test_inclusion_tampering_rejected(entries: list[bytes], data: st.DataObject) -> None:
    """Any single-bit change to a proof hash, the leaf hash, the entry or the root, and removing
    or adding a proof hash, is rejected with ProofError. A bit flip of the index or of the tree
    size is rejected exactly when it changes the proof's shape (see the module docstring)."""
    size = len(entries)
    mt = MemoryTree(entries)
    root = mt.root()
    i = data.draw(st.integers(0, size - 1), label="index")
    leaf = merkle.leaf_hash(entries[i])
    proof = mt.inclusion_proof(i)
    verify_inclusion(i, size, leaf, proof, root)

    # Every bit of every proof hash.
    for j in range(len(proof)):
        for bit in range(256):
            bad = list(proof)
            bad[j] = flip(proof[j], bit)
            with pytest.raises(ProofError):
                verify_inclusion(i, size, leaf, bad, root)
    # Every bit of the leaf hash and of the root.
    for bit in range(256):
        with pytest.raises(ProofError):
            verify_inclusion(i, size, flip(leaf, bit), proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(i, size, leaf, proof, flip(root, bit))
    # Every bit of the entry.
    for bit in range(len(entries[i]) * 8):
        with pytest.raises(ProofError):
            verify_inclusion(i, size, merkle.leaf_hash(flip(entries[i], bit)), proof, root)
    # Removing any one hash; adding one anywhere (a copy of a proof hash, the leaf, or junk).
    for j in range(len(proof)):
        with pytest.raises(ProofError):
            verify_inclusion(i, size, leaf, proof[:j] + proof[j + 1 :], root)
    for j in range(len(proof) + 1):
        for extra in {leaf, root, b"\x00" * 32, *proof}:
            with pytest.raises(ProofError):
                verify_inclusion(i, size, leaf, [*proof[:j], extra, *proof[j:]], root)
    # Hashes of the wrong length.
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(i, size, leaf, [proof[0][:-1], *proof[1:]], root)
        with pytest.raises(ProofError):
            verify_inclusion(i, size, leaf, [proof[0] + b"\x00", *proof[1:]], root)
    with pytest.raises(ProofError):
        verify_inclusion(i, size, leaf, proof, root[:-1])
    with pytest.raises(ProofError):
        verify_inclusion(i, size, leaf[:-1], proof, root)

    # Index and size bit flips: rejected iff the shape changes.
    want = inclusion_shape(i, size)
    for bit in range(64):
        i2 = i ^ (1 << bit)
        same = i2 < size and inclusion_shape(i2, size) == want
        assert incl_ok(i2, size, leaf, proof, root) == same, (i, i2, size)
        n2 = size ^ (1 << bit)
        same = i < n2 and inclusion_shape(i, n2) == want
        assert incl_ok(i, n2, leaf, proof, root) == same, (i, size, n2)
    for i2, n2 in [(-1, size), (i, -1), (i, i), (size, size)]:
        assert not incl_ok(i2, n2, leaf, proof, root)


def test_inclusion_size_is_not_authenticated_by_the_proof() -> None:
    """RFC 9162 §2.1.3.2 illustrated: leaf 0's proof in a tree of 5 has the same shape as in a
    tree of 7 (size 5 with bit 1 flipped), so the algorithm alone cannot tell them apart; the
    root (bound to its size by a signed checkpoint) is what makes the proof meaningful."""
    mt = MemoryTree(entries_for(8, b"s"))
    proof = mt.inclusion_proof(0, 5)
    leaf = mt.subtree_hash(0, 0)
    assert inclusion_shape(0, 5) == inclusion_shape(0, 7) == ("R", "R", "R")
    verify_inclusion(0, 5, leaf, proof, mt.root(5))
    verify_inclusion(0, 7, leaf, proof, mt.root(5))  # accepted, by design of the algorithm
    with pytest.raises(ProofError):
        verify_inclusion(0, 7, leaf, proof, mt.root(7))
    # The same holds for consistency: PROOF(2, D[5]) and PROOF(2, D[7]) have the same shape.
    cproof = mt.consistency_proof(2, 5)
    assert consistency_shape(2, 5) == consistency_shape(2, 7) == ("R", "R")
    verify_consistency(2, 7, mt.root(2), mt.root(5), cproof)
    with pytest.raises(ProofError):
        verify_consistency(2, 7, mt.root(2), mt.root(7), cproof)


# -- consistency ---------------------------------------------------------------


@SETTINGS
@given(tree=trees, data=st.data())
def test_consistency_proofs_verify_and_match_reference(tree: tuple[int, bytes], data: st.DataObject) -> None:
    """RFC 9162 §2.1.4.1/§2.1.4.2: for random 0 <= m <= n <= 300 (m = 0 and m = n included),
    fiat's PROOF equals the reference and verifies."""
    size, salt = tree
    entries = entries_for(size, salt)
    ref = RefTree(entries)
    mt = MemoryTree(entries)
    n = data.draw(st.integers(0, size), label="new size")
    olds = {0, n, *data.draw(st.lists(st.integers(0, n), max_size=12), label="old sizes")}
    for m in sorted(olds):
        proof = mt.consistency_proof(m, n)
        assert proof == ref.proof(m, n)
        verify_consistency(m, n, ref.root(m), ref.root(n), proof)


def test_consistency_proofs_small_trees_exhaustive() -> None:
    """All 0 <= m <= n <= 48."""
    entries = entries_for(48, b"c")
    ref = RefTree(entries)
    mt = MemoryTree(entries)
    for n in range(49):
        for m in range(n + 1):
            proof = mt.consistency_proof(m, n)
            assert proof == ref.proof(m, n)
            verify_consistency(m, n, ref.root(m), ref.root(n), proof)


@pytest.mark.parametrize(
    ("m", "n"), [(1, 4097), (256, 4097), (1000, 1024), (1023, 1025), (4096, 4097), (4097, 4097), (0, 4097)]
)
def test_consistency_larger_trees(m: int, n: int) -> None:
    entries = entries_for(n, b"C")
    ref = RefTree(entries)
    proof = MemoryTree(entries).consistency_proof(m, n)
    assert proof == ref.proof(m, n)
    verify_consistency(m, n, ref.root(m), ref.root(n), proof)


@SETTINGS
@given(tree=st.tuples(st.integers(2, 200), st.binary(max_size=4)), data=st.data())
def test_consistency_tampering_rejected(tree: tuple[int, bytes], data: st.DataObject) -> None:
    """For 0 < m < n: any single-bit change to a proof hash or to either root, and removing or
    adding a proof hash, is rejected with ProofError. A bit flip of either size is rejected
    exactly when it changes the proof's shape (see the module docstring)."""
    size, salt = tree
    entries = entries_for(size, salt)
    mt = MemoryTree(entries)
    n = data.draw(st.integers(2, size), label="new size")
    m = data.draw(st.integers(1, n - 1), label="old size")
    old_root, new_root = mt.root(m), mt.root(n)
    proof = mt.consistency_proof(m, n)
    verify_consistency(m, n, old_root, new_root, proof)

    for j in range(len(proof)):
        for bit in range(0, 256, 3):
            bad = list(proof)
            bad[j] = flip(proof[j], bit)
            with pytest.raises(ProofError):
                verify_consistency(m, n, old_root, new_root, bad)
    for bit in range(256):
        with pytest.raises(ProofError):
            verify_consistency(m, n, flip(old_root, bit), new_root, proof)
        with pytest.raises(ProofError):
            verify_consistency(m, n, old_root, flip(new_root, bit), proof)
    for j in range(len(proof)):
        with pytest.raises(ProofError):
            verify_consistency(m, n, old_root, new_root, proof[:j] + proof[j + 1 :])
    for j in range(len(proof) + 1):
        for extra in {old_root, new_root, b"\x00" * 32, *proof}:
            with pytest.raises(ProofError):
                verify_consistency(m, n, old_root, new_root, [*proof[:j], extra, *proof[j:]])
    with pytest.raises(ProofError):
        verify_consistency(m, n, old_root, new_root, [proof[0][:-1], *proof[1:]])
    with pytest.raises(ProofError):
        verify_consistency(m, n, old_root[:-1], new_root, proof)
    with pytest.raises(ProofError):
        verify_consistency(m, n, old_root, new_root + b"\x00", proof)
    # Swapped roots, swapped sizes.
    assert not cons_ok(m, n, new_root, old_root, proof)
    assert not cons_ok(n, m, old_root, new_root, proof)

    want = consistency_shape(m, n)
    for bit in range(64):
        m2 = m ^ (1 << bit)
        same = 0 < m2 < n and consistency_shape(m2, n) == want
        assert cons_ok(m2, n, old_root, new_root, proof) == same, (m, m2, n)
        n2 = n ^ (1 << bit)
        same = 0 < m < n2 and consistency_shape(m, n2) == want
        assert cons_ok(m, n2, old_root, new_root, proof) == same, (m, n, n2)


@SETTINGS
@given(tree=st.tuples(st.integers(1, 200), st.binary(max_size=4)), data=st.data())
def test_consistency_degenerate_cases(tree: tuple[int, bytes], data: st.DataObject) -> None:
    """From size 0 (proof empty, old root = SHA-256 of the empty string) and between equal sizes
    (proof empty, roots equal): any added hash, wrong root or changed size is rejected. From size
    0 any new root is accepted: the empty tree is a prefix of every tree."""
    size, salt = tree
    mt = MemoryTree(entries_for(size, salt))
    n = data.draw(st.integers(1, size), label="size")
    root = mt.root(n)
    empty = merkle.EMPTY_ROOT
    assert mt.consistency_proof(0, n) == []
    assert mt.consistency_proof(n, n) == []
    verify_consistency(0, n, empty, root, [])
    verify_consistency(0, 0, empty, empty, [])
    verify_consistency(n, n, root, root, [])
    verify_consistency(0, n, empty, flip(root, 7), [])  # the new root is not constrained from size 0
    for bit in range(256):
        assert not cons_ok(0, n, flip(empty, bit), root, [])
        assert not cons_ok(n, n, flip(root, bit), root, [])
        assert not cons_ok(n, n, root, flip(root, bit), [])
    for extra in (root, empty, b"\x00" * 32):
        assert not cons_ok(0, n, empty, root, [extra])
        assert not cons_ok(n, n, root, root, [extra])
    for bit in range(64):
        # Equal sizes made unequal: an empty proof proves nothing.
        n2 = n ^ (1 << bit)
        assert not cons_ok(n, n2, root, root, [])
        assert not cons_ok(n2, n, root, root, [])
        # Size 0 made non-zero.
        assert not cons_ok(1 << bit, n, empty, root, [])
    for m, n2 in [(-1, n), (0, -1), (n + 1, n)]:
        assert not cons_ok(m, n2, empty, root, [])


# -- proofs chain --------------------------------------------------------------


@SETTINGS
@given(entries=random_entry_lists, data=st.data())
def test_growing_tree_proofs_chain(entries: list[bytes], data: st.DataObject) -> None:
    """Appending one entry at a time, each new tree is provably consistent with every earlier
    checkpoint, and every entry is provably included in it."""
    mt = MemoryTree()
    roots = [mt.root()]
    for e in entries:
        mt.append(e)
        roots.append(mt.root())
    n = mt.size
    for m in range(n + 1):
        verify_consistency(m, n, roots[m], roots[n], mt.consistency_proof(m, n))
    i = data.draw(st.integers(0, n - 1))
    for size in range(i + 1, n + 1):
        verify_inclusion(i, size, merkle.leaf_hash(entries[i]), mt.inclusion_proof(i, size), roots[size])


# -- tiles ---------------------------------------------------------------------


def build_tiles(entries: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """Tiles built straight from C2SP tlog-tiles §Merkle Tree, with the reference MTH: level 0
    holds leaf hashes; each hash at level l >= 1 is the MTH of a *full* tile at level l - 1."""
    ref = RefTree(entries)
    levels: list[list[bytes]] = [list(ref.leaves)]
    while len(levels[-1]) >= tiles.TILE_WIDTH:
        below = levels[-1]
        levels.append([ref_mth_of_hashes(below[j * 256 : (j + 1) * 256]) for j in range(len(below) // 256)])
    out: dict[tuple[int, int], bytes] = {}
    for t in tiles.tiles_for_size(len(entries)):
        hashes = levels[t.level][t.index * 256 : t.index * 256 + t.width]
        assert len(hashes) == t.width
        out[(t.level, t.index)] = b"".join(hashes)
    return out


def tile_reader(
    stored: dict[tuple[int, int], bytes], log: list[tuple[int, int, int]]
) -> Callable[[int, int, int], bytes]:
    def read(level: int, index: int, width: int) -> bytes:
        log.append((level, index, width))
        data = stored[(level, index)]
        # The source asks for exactly the width the tree size implies, and it was built that way.
        assert len(data) == width * merkle.HASH_SIZE
        return data

    return read


@settings(max_examples=25, deadline=None, database=None)
@given(size=st.integers(1, 1400), salt=st.binary(max_size=4), data=st.data())
def test_tile_hash_source_matches_memory_tree(size: int, salt: bytes, data: st.DataObject) -> None:
    """fiat.tlog.tiles.TileHashSource over tiles built per the C2SP spec gives the same roots,
    inclusion proofs and consistency proofs as MemoryTree."""
    entries = entries_for(size, salt)
    stored = build_tiles(entries)
    reads: list[tuple[int, int, int]] = []
    src = tiles.TileHashSource(tile_reader(stored, reads), size)
    mt = MemoryTree(entries)
    assert merkle.tree_root(src, size) == mt.root()
    for n in data.draw(st.lists(st.integers(1, size), min_size=1, max_size=5), label="sizes"):
        assert merkle.tree_root(src, n) == mt.root(n)
        for i in data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5), label="indices"):
            proof = merkle.inclusion_proof(src, i, n)
            assert proof == mt.inclusion_proof(i, n)
            verify_inclusion(i, n, merkle.leaf_hash(entries[i]), proof, mt.root(n))
        for m in data.draw(st.lists(st.integers(0, n), min_size=1, max_size=5), label="old sizes"):
            proof = merkle.consistency_proof(src, m, n)
            assert proof == mt.consistency_proof(m, n)
            verify_consistency(m, n, mt.root(m), mt.root(n), proof)
    # Tiles are cached: no tile is read twice.
    assert len(reads) == len(set(reads))


def test_tile_hash_source_70000() -> None:
    """The C2SP tlog-tiles example tree size (70,000: three tile levels, partial at each)."""
    size = 70_000
    entries = entries_for(size, b"t")
    stored = build_tiles(entries)
    assert len(stored) == 273 + 1 + 1 + 1 + 1
    src = tiles.TileHashSource(tile_reader(stored, []), size)
    mt = MemoryTree(entries)
    root = mt.root()
    assert merkle.tree_root(src, size) == root
    for i in (0, 65_535, 65_536, 69_887, 69_888, 69_999):
        proof = merkle.inclusion_proof(src, i, size)
        assert proof == mt.inclusion_proof(i)
        verify_inclusion(i, size, merkle.leaf_hash(entries[i]), proof, root)
    for m in (1, 256, 65_536, 65_537, 69_999):
        proof = merkle.consistency_proof(src, m, size)
        assert proof == mt.consistency_proof(m)
        verify_consistency(m, size, mt.root(m), root, proof)
