"""A Merkle tree over leaves held in memory: the tests' reference model of RFC 9162 §2.1."""

from __future__ import annotations

from collections.abc import Sequence

from fiat.tlog.merkle import consistency_proof, inclusion_proof, leaf_hash, root_of_hashes, tree_root


class MemoryTree:
    """A Merkle tree over leaves held in memory (a :class:`fiat.tlog.merkle.HashSource`)."""

    def __init__(self, entries: Sequence[bytes] = ()) -> None:
        self._leaves: list[bytes] = [leaf_hash(e) for e in entries]

    def append(self, entry: bytes) -> int:
        self._leaves.append(leaf_hash(entry))
        return len(self._leaves) - 1

    @property
    def size(self) -> int:
        return len(self._leaves)

    def subtree_hash(self, height: int, index: int) -> bytes:
        start = index << height
        end = start + (1 << height)
        if end > len(self._leaves):
            raise ValueError(f"subtree {height}/{index} is beyond the tree of size {len(self._leaves)}")
        return root_of_hashes(self._leaves[start:end])

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self, self.size if size is None else size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(self, index, self.size if size is None else size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(self, old_size, self.size if new_size is None else new_size)
