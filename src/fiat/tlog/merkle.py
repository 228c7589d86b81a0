"""RFC 6962 / RFC 9162 Merkle tree hashing, proof generation and verification.

Pure functions, no I/O. Proof *generation* reads node hashes through a
:class:`HashSource` (perfect-subtree hashes addressed by height and index), so
the same code builds proofs from the database, from tiles fetched over HTTP or
from an in-memory list of leaves.

Spec references:

* RFC 6962 §2.1 / RFC 9162 §2.1.1 — Merkle Tree Hash (MTH), leaf and node hashes.
* RFC 9162 §2.1.3.1 — generating an inclusion proof (``PATH(m, D[n])``).
* RFC 9162 §2.1.3.2 — verifying an inclusion proof.
* RFC 9162 §2.1.4.1 — generating a consistency proof (``PROOF(m, D[n])``).
* RFC 9162 §2.1.4.2 — verifying a consistency proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from fiat.errors import ProofError

HASH_SIZE = 32

#: MTH({}) = SHA-256() — RFC 9162 §2.1.1: "The hash of an empty list is the hash of an empty string".
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d(0)}) = SHA-256(0x00 || d(0)) — RFC 9162 §2.1.1."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || MTH(left) || MTH(right)) — RFC 9162 §2.1.1."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``) — RFC 9162 §2.1.1 ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_perfect(start: int, end: int) -> bool:
    size = end - start
    return size > 0 and size & (size - 1) == 0 and start % size == 0


def root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of already-hashed leaves (the RFC 6962 shape, any length)."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    # Iterative bottom-up reduction; for a non power of two the right-most
    # odd node is carried up unchanged, which yields exactly MTH's split at k.
    level = list(hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


class HashSource(Protocol):
    """Where proof generation reads stored hashes from.

    ``subtree_hash(height, index)`` is the MTH of the perfect subtree covering
    leaves ``[index * 2**height, (index + 1) * 2**height)``; callers only ask
    for subtrees that lie wholly inside the tree being proven.
    """

    def subtree_hash(self, height: int, index: int) -> bytes: ...


def range_hash(source: HashSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range that RFC 6962's recursion can produce."""
    if end <= start:
        return EMPTY_ROOT
    if _is_perfect(start, end):
        size = end - start
        height = size.bit_length() - 1
        return source.subtree_hash(height, start >> height)
    k = split_point(end - start)
    return node_hash(range_hash(source, start, start + k), range_hash(source, start + k, end))


def tree_root(source: HashSource, size: int) -> bytes:
    """MTH(D[0:size]); the empty tree's root is SHA-256 of the empty string."""
    return range_hash(source, 0, size)


def inclusion_proof(source: HashSource, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) — RFC 9162 §2.1.3.1."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    proof: list[bytes] = []

    def path(m: int, start: int, end: int) -> None:
        n = end - start
        if n == 1:
            return
        k = split_point(n)
        if m < k:
            path(m, start, start + k)
            proof.append(range_hash(source, start + k, end))
        else:
            path(m - k, start + k, end)
            proof.append(range_hash(source, start, start + k))

    path(index, 0, size)
    return proof


def consistency_proof(source: HashSource, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) — RFC 9162 §2.1.4.1.

    A proof from size 0, or between equal sizes, is empty.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"cannot prove consistency from size {old_size} to size {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    proof: list[bytes] = []

    def subproof(m: int, start: int, end: int, b: bool) -> None:
        n = end - start
        if m == n:
            if not b:
                proof.append(range_hash(source, start, end))
            return
        k = split_point(n)
        if m <= k:
            subproof(m, start, start + k, b)
            proof.append(range_hash(source, start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            proof.append(range_hash(source, start, start + k))

    subproof(old_size, 0, new_size, True)
    return proof


# -- verification -------------------------------------------------------------


def _check_hash(value: bytes, what: str, step: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(step, f"{what} must be a {HASH_SIZE}-byte SHA-256 hash")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Run RFC 9162 §2.1.3.2 steps 1–5 and return the computed root ``r``."""
    step = "inclusion-proof"
    _check_hash(leaf, "leaf hash", step)
    for p in proof:
        _check_hash(p, "every proof element", step)
    # Step 1: leaf_index must be < tree_size.
    if index < 0 or size < 0 or index >= size:
        raise ProofError(step, f"leaf index {index} is not inside a tree of size {size}")
    # Step 2: fn = leaf_index, sn = tree_size - 1.
    fn, sn = index, size - 1
    # Step 3: r = hash.
    r = leaf
    # Step 4: fold in each element of the path.
    for p in proof:
        # 4a: a path longer than the tree is deep is invalid.
        if sn == 0:
            raise ProofError(step, "the proof has more hashes than the tree is deep")
        # 4b
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # 4c
        fn >>= 1
        sn >>= 1
    # Step 5: sn must be 0 (the path reached the root).
    if sn != 0:
        raise ProofError(step, "the proof has fewer hashes than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Verify an inclusion proof — RFC 9162 §2.1.3.2. Raises :class:`ProofError`."""
    _check_hash(root, "root hash", "inclusion-proof")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(
            "inclusion-proof",
            f"the proof for leaf {index} does not lead to the root hash of the tree of size {size}",
        )


def _consistency_roots(old_size: int, new_size: int, path: Sequence[bytes], step: str) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2 steps 3-7 over ``path`` (the proof, with the old root prepended when
    ``old_size`` is an exact power of 2): the old and new roots it computes, ``(fr, sr)``.
    A path of the wrong length for the sizes is a :class:`ProofError`."""
    # Step 3
    fn, sn = old_size - 1, new_size - 1
    # Step 4: skip the levels where the old tree's last node is a right child.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5
    fr = sr = path[0]
    # Step 6
    for c in path[1:]:
        if sn == 0:  # 6a
            raise ProofError(step, "the proof has more hashes than the tree is deep")
        if fn & 1 or fn == sn:  # 6b
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1  # 6c
        sn >>= 1
    # Step 7
    if sn != 0:
        raise ProofError(step, "the proof has fewer hashes than the tree is deep")
    return fr, sr


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Verify a consistency proof — RFC 9162 §2.1.4.2. Raises :class:`ProofError`.

    Two cases RFC 9162 leaves to the caller are handled explicitly: a tree of
    size 0 is consistent with any tree (the proof must be empty), and a tree is
    consistent with a tree of the same size only if the roots are equal (the
    proof must be empty).
    """
    step = "consistency-proof"
    _check_hash(old_root, "old root hash", step)
    _check_hash(new_root, "new root hash", step)
    for c in proof:
        _check_hash(c, "every proof element", step)
    if old_size < 0 or new_size < 0:
        raise ProofError(step, "tree sizes cannot be negative")
    if old_size > new_size:
        raise ProofError(step, f"the old tree ({old_size}) is larger than the new tree ({new_size})")
    if old_size == 0:
        if proof:
            raise ProofError(step, "a proof from the empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise ProofError(step, "the root of the empty tree must be SHA-256 of the empty string")
        if new_size == 0 and new_root != EMPTY_ROOT:
            raise ProofError(step, "the root of the empty tree must be SHA-256 of the empty string")
        return
    if old_size == new_size:
        if proof:
            raise ProofError(step, "a proof between trees of equal size must be empty")
        if old_root != new_root:
            raise ProofError(step, f"two different roots for the same tree size {old_size}")
        return
    # Step 1: an empty path cannot prove anything between different sizes.
    if not proof:
        raise ProofError(step, "the proof is empty")
    path = list(proof)
    # Step 2: if first is an exact power of 2, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fr, sr = _consistency_roots(old_size, new_size, path, step)
    # Step 7 (the depth check of step 7 is in _consistency_roots)
    if fr != old_root:
        raise ProofError(step, f"the proof does not lead to the root of the old tree (size {old_size})")
    if sr != new_root:
        raise ProofError(step, f"the proof does not lead to the root of the new tree (size {new_size})")


def old_root_from_consistency(old_size: int, new_size: int, new_root: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The old tree's root a consistency proof commits to, when the proof itself determines it.

    RFC 9162 §2.1.4.2 computes both roots from the path; only when ``old_size`` is an exact power
    of 2 is the old root an input (prepended in step 2) rather than an output. For other sizes, if
    the path leads to ``new_root``, the ``fr`` it computes is the root of the first ``old_size``
    leaves of *that* tree: a proof that fails only at the old root (``fr != old_root``) then shows
    which other root the log's history has at ``old_size`` — the evidence of a fork. Returns None
    when the proof does not determine it (a power-of-2 or zero size, equal sizes, a malformed path)
    or does not lead to ``new_root``.
    """
    if not 0 < old_size < new_size or old_size & (old_size - 1) == 0 or not proof:
        return None
    if any(len(c) != HASH_SIZE for c in proof) or len(new_root) != HASH_SIZE:
        return None
    try:
        fr, sr = _consistency_roots(old_size, new_size, proof, "consistency-proof")
    except ProofError:
        return None
    return fr if sr == new_root else None
