"""What a checkpoint costs Redis in memory: each part's value in its allocator size class, plus its key.

Redis (jemalloc) stores a string value in a size class: above 128 bytes four classes per doubling,
so a value just over a class boundary costs up to a quarter more than its bytes (a part of exactly
64 MiB costs 80 MiB; ``StoreSettings.cut_bytes`` cuts parts short of it). ``part_memory`` is what
``MEMORY USAGE`` reports for a part key, checked against Redis 7.0 in the tests: the value's object
and its string in its size class (one allocation for short values), plus the key's string and its
hash-table entry. ``tensor_memory``
sums the parts a tensor of that many bytes is cut into. The per-key expiry entry (tens of bytes) and
the session's small keys (record, lease, history, audio log) are not counted.
"""

from __future__ import annotations

__all__ = ["PART_KEY_CHARS", "key_memory", "part_memory", "size_class", "tensor_memory"]

QUANTUM = 16  # jemalloc's smallest spacing (x86-64)
SMALL_LIMIT = 128  # up to here classes are QUANTUM apart
CLASSES_PER_DOUBLING_LG = 2  # four size classes between consecutive powers of two
# Redis' string header (sds: len, alloc, flags) and final NUL, by the largest length it holds
STRING_HEADERS = ((255, 4), (65_535, 6), (2**32 - 1, 10))
EMBEDDED_MAX = 44  # values up to this long share one allocation with their object ("embstr")
OBJECT_BYTES = 16  # a value's object (robj)
ENTRY_BYTES = 24  # the key's hash-table entry
PART_KEY_CHARS = len("liveact:part:") + 32 + 1 + 64  # "liveact:part:<uuid4 hex>:<sha256 hex>", a generator's


def size_class(n: int) -> int:
    """The jemalloc size class an allocation of ``n`` bytes is served from."""
    if n <= SMALL_LIMIT:
        return max(QUANTUM, -(-n // QUANTUM) * QUANTUM)
    spacing = 1 << ((n - 1).bit_length() - 1 - CLASSES_PER_DOUBLING_LG)
    return -(-n // spacing) * spacing


def string_memory(n: int) -> int:
    """A string of ``n`` bytes with its header, in its size class."""
    header = next(h for limit, h in STRING_HEADERS if n <= limit)
    return size_class(n + header)


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


def tensor_memory(nbytes: int, cut_bytes: int, key_chars: int = PART_KEY_CHARS) -> int:
    """Redis memory of a tensor of ``nbytes`` cut into parts of at most ``cut_bytes``."""
    whole, rest = divmod(nbytes, cut_bytes)
    return whole * part_memory(cut_bytes, key_chars) + (part_memory(rest, key_chars) if rest or not whole else 0)
