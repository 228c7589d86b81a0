"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles): tile geometry, paths and bundles.

Pure code, no I/O. A tile at level ``L``, index ``N`` holds up to 256
consecutive Merkle tree hashes at tree height ``8 * L``; the hash ``i`` of that
tile is ``MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L])``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from fiat.errors import EntryTooLargeError, MalformedError
from fiat.tlog.merkle import HASH_SIZE, root_of_hashes

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes, 8,192 bytes when full
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF  # entries are big-endian uint16 length-prefixed


@dataclass(frozen=True, order=True)
class Tile:
    """A tile coordinate. ``level == -1`` denotes an entry bundle (``tile/entries/...``)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    ENTRIES = -1

    @property
    def is_entries(self) -> bool:
        return self.level == Tile.ENTRIES

    @property
    def is_full(self) -> bool:
        return self.width == TILE_WIDTH

    def path(self) -> str:
        """The URL path under ``<prefix>/`` — tlog-tiles §Merkle Tree, §Log entries."""
        lvl = "entries" if self.is_entries else str(self.level)
        suffix = "" if self.is_full else f".p/{self.width}"
        return f"tile/{lvl}/{encode_index(self.index)}{suffix}"

    def full(self) -> Tile:
        return Tile(self.level, self.index, TILE_WIDTH)


def encode_index(n: int) -> str:
    """Zero-padded 3-digit path elements, all but the last prefixed with ``x``.

    tlog-tiles §Merkle Tree: index 1234067 is ``x001/x234/067``.
    """
    if n < 0:
        raise ValueError("tile index must be non-negative")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def _parse_decimal(s: str, what: str, lo: int, hi: int) -> int:
    if not s or not s.isascii() or not s.isdigit() or (len(s) > 1 and s[0] == "0"):
        raise MalformedError("tile path", f"{what} {s[:20]!r} is not a decimal with no leading zeroes")
    value = int(s)
    if not lo <= value <= hi:
        raise MalformedError("tile path", f"{what} {value} is outside {lo}..{hi}")
    return value


def parse_path(path: str) -> Tile:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` (no prefix, no leading slash)."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise MalformedError("tile path", f"{path[:80]!r} is not tile/<L>/<N>[.p/<W>]")
    level = Tile.ENTRIES if parts[1] == "entries" else _parse_decimal(parts[1], "level", 0, MAX_LEVEL)
    rest = parts[2:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        width = _parse_decimal(rest[-1], "width", 1, TILE_WIDTH - 1)
        rest = [*rest[:-2], rest[-2][:-2]]
    if not rest or len(rest) > 7:
        raise MalformedError("tile path", f"{path[:80]!r} has an invalid index")
    index = 0
    for i, elem in enumerate(rest):
        last = i == len(rest) - 1
        digits = elem if last else (elem[1:] if elem.startswith("x") else "")
        if len(digits) != 3 or not digits.isascii() or not digits.isdigit():
            raise MalformedError("tile path", f"index element {elem[:10]!r} is not {'NNN' if last else 'xNNN'}")
        index = index * 1000 + int(digits)
    if len(rest) > 1 and rest[0] == "x000":
        raise MalformedError("tile path", "index has a leading x000 element")
    return Tile(level, index, width)


def tile_width_at(level: int, index: int, tree_size: int) -> int:
    """How many hashes tile ``level/index`` holds in a tree of ``tree_size`` (0: absent).

    tlog-tiles §Partial Tiles: level ``l`` has ``floor(s / 256**l)`` hashes in total.
    For entry bundles pass ``level=0``.
    """
    total = tree_size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, total - index * TILE_WIDTH))


def tiles_for_size(tree_size: int) -> Iterator[Tile]:
    """Every hash tile of a tree of ``tree_size``, level by level, left to right."""
    level = 0
    while True:
        total = tree_size >> (TILE_HEIGHT * level)
        if total == 0:
            return
        full, partial = divmod(total, TILE_WIDTH)
        for n in range(full):
            yield Tile(level, n)
        if partial:
            yield Tile(level, full, partial)
        level += 1


def entry_bundles_for_size(tree_size: int) -> Iterator[Tile]:
    full, partial = divmod(tree_size, TILE_WIDTH)
    for n in range(full):
        yield Tile(Tile.ENTRIES, n)
    if partial:
        yield Tile(Tile.ENTRIES, full, partial)


def split_hashes(data: bytes, width: int | None = None) -> list[bytes]:
    """Split a hash tile into its 32-byte hashes, checking its length."""
    if len(data) % HASH_SIZE or not 0 < len(data) <= TILE_WIDTH * HASH_SIZE:
        raise MalformedError("tile", f"{len(data)} bytes is not 1..256 hashes of {HASH_SIZE} bytes")
    if width is not None and len(data) != width * HASH_SIZE:
        raise MalformedError("tile", f"expected {width} hashes, got {len(data) // HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """Big-endian uint16 length-prefixed entries — tlog-tiles §Log entries."""
    out = bytearray()
    for e in entries:
        check_entry(e)
        out += struct.pack(">H", len(e))
        out += e
    return bytes(out)


def check_entry(entry: bytes) -> None:
    if len(entry) > MAX_ENTRY_SIZE:
        raise EntryTooLargeError(
            f"a log entry is {len(entry):,} bytes; the limit is {MAX_ENTRY_SIZE:,} bytes "
            "(C2SP tlog-tiles uint16 length prefix). Log a digest of large content instead."
        )


def parse_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """Decode an entry bundle, rejecting truncation, trailing bytes and over-full bundles."""
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(entries) == TILE_WIDTH:
            raise MalformedError("entry bundle", "more than 256 entries")
        if pos + 2 > len(data):
            raise MalformedError("entry bundle", "truncated length prefix")
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + n > len(data):
            raise MalformedError("entry bundle", f"entry {len(entries)} is truncated")
        entries.append(data[pos : pos + n])
        pos += n
    if width is not None and len(entries) != width:
        raise MalformedError("entry bundle", f"expected {width} entries, got {len(entries)}")
    return entries


class TileHashSource:
    """A :class:`fiat.tlog.merkle.HashSource` that reads perfect-subtree hashes from tiles.

    ``read_tile(level, index, width)`` must return the first ``width`` hashes of
    that tile (concatenated). Tiles are cached; a wider tile satisfies a
    narrower request because tiles only ever grow to the right.
    """

    def __init__(self, read_tile: Callable[[int, int, int], bytes], tree_size: int) -> None:
        self._read = read_tile
        self.tree_size = tree_size
        self._cache: dict[tuple[int, int], bytes] = {}

    def tile(self, level: int, index: int) -> bytes:
        width = tile_width_at(level, index, self.tree_size)
        if width == 0:
            raise ValueError(f"tile {level}/{index} is beyond the tree of size {self.tree_size}")
        cached = self._cache.get((level, index))
        if cached is not None and len(cached) >= width * HASH_SIZE:
            return cached
        data = self._read(level, index, width)
        if len(data) < width * HASH_SIZE:
            raise MalformedError("tile", f"tile {level}/{index} has {len(data) // HASH_SIZE} hashes, need {width}")
        self._cache[(level, index)] = data
        return data

    def subtree_hash(self, height: int, index: int) -> bytes:
        level, r = divmod(height, TILE_HEIGHT)
        first = index << r  # first hash at ``level`` covered by this subtree
        count = 1 << r
        tile_index, offset = divmod(first, TILE_WIDTH)
        data = self.tile(level, tile_index)
        hashes = [data[(offset + i) * HASH_SIZE : (offset + i + 1) * HASH_SIZE] for i in range(count)]
        if any(len(h) != HASH_SIZE for h in hashes):
            raise MalformedError("tile", f"tile {level}/{tile_index} is too short for subtree {height}/{index}")
        return root_of_hashes(hashes)
