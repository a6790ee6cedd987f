"""What a checkpoint costs Redis in memory: each part's value in its allocator size class, plus its key.

Redis (jemalloc) stores a string value in a size class: above 128 bytes four classes per doubling,
so a value just over a class boundary costs up to a quarter more than its bytes (a part of exactly
64 MiB costs 80 MiB). ``part_sizes`` therefore cuts a tensor into parts that each fill their class
exactly (``fill_size``: the class less the string's header; a 64 MiB - 10 B part costs 64 MiB), the
tail of a tensor too, down to ``TAIL_BYTES``. ``part_memory`` is what ``MEMORY USAGE`` reports for a
part key, checked against Redis 7.0 in the tests: the value's object and its string in its size class
(one allocation for short values), plus the key's string and its hash-table entry. ``tensor_memory``
sums the parts ``part_sizes`` cuts a tensor of that many bytes into. The per-key expiry entry (tens of
bytes) and the session's small keys (record, lease, history, audio log) are not counted.
"""

from __future__ import annotations

__all__ = ["PART_KEY_CHARS", "fill_size", "key_memory", "part_memory", "part_sizes", "size_class", "tensor_memory"]

QUANTUM = 16  # jemalloc's smallest spacing (x86-64)
SMALL_LIMIT = 128  # up to here classes are QUANTUM apart
CLASSES_PER_DOUBLING_LG = 2  # four size classes between consecutive powers of two
# Redis' string header (sds: len, alloc, flags) and final NUL, by the largest length it holds
STRING_HEADERS = ((255, 4), (65_535, 6), (2**32 - 1, 10))
EMBEDDED_MAX = 44  # values up to this long share one allocation with their object ("embstr")
BIG_ARG = 32 * 1024  # PROTO_MBULK_BIG_ARG: values from here on are read into the query buffer, which becomes them
OBJECT_BYTES = 16  # a value's object (robj)
ENTRY_BYTES = 24  # the key's hash-table entry
PART_KEY_CHARS = len("liveact:part:") + 32 + 1 + 64  # "liveact:part:<uuid4 hex>:<sha256 hex>", a generator's
TAIL_BYTES = BIG_ARG  # a tensor's last bytes below this go in one part as they are (copied: an exact cost)


def size_class(n: int) -> int:
    """The jemalloc size class an allocation of ``n`` bytes is served from."""
    if n <= SMALL_LIMIT:
        return max(QUANTUM, -(-n // QUANTUM) * QUANTUM)
    spacing = 1 << ((n - 1).bit_length() - 1 - CLASSES_PER_DOUBLING_LG)
    return -(-n // spacing) * spacing


def string_memory(n: int) -> int:
    """A string of ``n`` bytes with its header, in its size class.

    Exact outside ``[BIG_ARG, 65535]``. A value in that range is read straight into the connection's query
    buffer, which may keep a 32-bit header or the room for its CRLF from earlier commands: it can cost a
    class more, depending on what the connection sent before. ``part_sizes`` never cuts a part there."""
    return size_class(n + _header(n))


def key_memory(key_chars: int = PART_KEY_CHARS) -> int:
    """What a key of ``key_chars`` characters adds besides its value (its string and its table entry)."""
    return string_memory(key_chars) + ENTRY_BYTES


def part_memory(n: int, key_chars: int = PART_KEY_CHARS) -> int:
    """Redis memory (MEMORY USAGE) of one part of ``n`` bytes."""
    if n <= EMBEDDED_MAX:  # object and string in one allocation
        value = size_class(OBJECT_BYTES + n + STRING_HEADERS[0][1])
    else:
        value = OBJECT_BYTES + string_memory(n)
    return value + key_memory(key_chars)


def _header(n: int) -> int:
    return next(h for limit, h in STRING_HEADERS if n <= limit)


def _class_below(c: int) -> int:
    """The size class just below class ``c`` (``c`` > SMALL_LIMIT)."""
    return c - (1 << ((c - 2).bit_length() - 1 - CLASSES_PER_DOUBLING_LG))


def _history_dependent(n: int) -> bool:
    return BIG_ARG <= n <= STRING_HEADERS[1][0]


def fill_size(limit: int) -> int:
    """The longest value of at most ``limit`` bytes whose string fills its size class exactly (``limit`` itself
    for small limits, where none is longer than half of it)."""
    c = size_class(limit + _header(limit))
    while c > SMALL_LIMIT:
        n = c - _header(c - 1)  # the header goes by the value's length, which is below c
        if n <= limit and string_memory(n) == c and not _history_dependent(n):
            return n if n * 2 > limit else limit
        c = _class_below(c)
    return limit


def part_sizes(nbytes: int, max_part: int) -> list[int]:
    """How a tensor of ``nbytes`` is cut: parts of ``fill_size(max_part)``, then the rest in parts that each fill
    their size class, largest first, until under ``TAIL_BYTES`` (one part as it is). One empty part for 0 bytes."""
    if max_part < 1:
        raise ValueError(f"max_part must be >= 1, got {max_part}")
    full = fill_size(max_part)
    whole, rest = divmod(nbytes, full)
    sizes = [full] * whole
    while rest >= TAIL_BYTES:
        piece = fill_size(rest)
        sizes.append(piece)
        rest -= piece
    if rest or not sizes:
        sizes.append(rest)
    return sizes


def tensor_memory(nbytes: int, cut_bytes: int, key_chars: int = PART_KEY_CHARS) -> int:
    """Redis memory of a tensor of ``nbytes`` cut by ``part_sizes`` with parts of at most ``cut_bytes``."""
    return sum(part_memory(n, key_chars) for n in part_sizes(nbytes, cut_bytes))
