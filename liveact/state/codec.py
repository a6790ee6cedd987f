"""Tensors <-> bytes for checkpoints: safetensors only, split into bounded parts, sha256 digests.

A checkpoint read back from Redis must not be able to run code, so the only decoder is
``safetensors.torch.load`` (a JSON header plus raw little-endian buffers): never pickle, never
``torch.load``. Bytes that are not a safetensors file (a pickle, garbage, a truncated blob) raise
``CodecError``.

``pack`` moves every tensor to the CPU and makes it contiguous (a private copy where it is a view
sharing storage with another entry), so callers may pass views, GPU tensors or strided slices.
``views_of`` cuts bytes into consecutive zero-copy parts of given sizes (Redis caps a value at 512 MB;
``liveact.state.redis_memory.part_sizes`` chooses them).

A checkpoint stores tensors' raw bytes instead (``raw_bytes``: little-endian, C order; the dtype by name
from ``SUPPORTED_DTYPES``, ``itemsize`` its element size), laid out in streams by
``liveact.state.streams``, which also reads them back (views of the stream, checked against the manifest),
so parts can be addressed by their content and shared between versions (``liveact.state.parts``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

__all__ = [
    "SUPPORTED_DTYPES",
    "CodecError",
    "digest",
    "dtype_name",
    "itemsize",
    "pack",
    "raw_bytes",
    "unpack",
    "views_of",
]

# What safetensors stores (torch dtypes that exist in this torch build); anything else is refused
# up front with a message, instead of failing inside the serializer.
_DTYPE_NAMES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "float8_e4m3fn",
    "float8_e4m3fnuz",
    "float8_e5m2",
    "float8_e5m2fnuz",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint64",
    "uint32",
    "uint16",
    "uint8",
    "bool",
    "complex64",
)
DTYPES_BY_NAME = {n: getattr(torch, n) for n in _DTYPE_NAMES if hasattr(torch, n)}
SUPPORTED_DTYPES = frozenset(DTYPES_BY_NAME.values())
_NAMES_BY_DTYPE = {d: n for n, d in DTYPES_BY_NAME.items()}
_ITEMSIZES: dict[str, int] = {n: int(d.itemsize) for n, d in DTYPES_BY_NAME.items()}
RESERVED_NAME = "__metadata__"  # safetensors' header key for string metadata


class CodecError(ValueError):
    """Tensors that cannot be encoded, or bytes that are not a valid safetensors blob."""


def pack(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """One safetensors blob holding ``tensors`` (names kept, dtypes and shapes exact)."""
    flat: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for name, t in tensors.items():
        if not isinstance(name, str) or not name or name == RESERVED_NAME:
            raise CodecError(f"tensor name {name!r} must be a non-empty string other than {RESERVED_NAME!r}")
        if not isinstance(t, torch.Tensor):
            raise CodecError(f"{name!r} is a {type(t).__name__}, not a torch.Tensor")
        if t.dtype not in SUPPORTED_DTYPES:
            raise CodecError(
                f"{name!r} has dtype {t.dtype}, which safetensors cannot store; "
                f"convert it to one of {sorted(str(d) for d in SUPPORTED_DTYPES)}"
            )
        if t.is_sparse or t.layout != torch.strided:
            raise CodecError(f"{name!r} has layout {t.layout}; store a dense (strided) tensor")
        t = t.detach().to("cpu").contiguous()
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen_storage:
                t = t.clone()  # a view of a tensor already in the blob: give it its own buffer
            seen_storage.add(t.untyped_storage().data_ptr())
        flat[name] = t
    try:
        return st_save(flat)
    except Exception as exc:  # the serializer's own refusal, with our context
        raise CodecError(f"cannot encode tensors with safetensors: {exc}") from exc


def unpack(data: bytes | bytearray | memoryview) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors blob (CPU, writable); ``CodecError`` if it is not one."""
    try:
        return st_load(bytes(data))
    except Exception as exc:  # SafetensorError, a bad header, a truncated buffer
        raise CodecError(f"not a valid safetensors blob ({len(data)} bytes): {exc}") from exc


def views_of(data: bytes | memoryview, sizes: list[int]) -> list[memoryview]:
    """Zero-copy consecutive parts of ``data`` of the given ``sizes`` (they must add up to its length)."""
    view = memoryview(data)
    if sum(sizes) != len(view):
        raise ValueError(f"part sizes add up to {sum(sizes)}, not the {len(view)} bytes")
    out, at = [], 0
    for n in sizes:
        out.append(view[at : at + n])
        at += n
    return out


def digest(data: bytes | memoryview) -> str:
    """sha256 of ``data`` as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()


def dtype_name(dtype: torch.dtype) -> str:
    """The stored name of ``dtype`` ("bfloat16", "float8_e4m3fn", ...); ``CodecError`` if not storable."""
    if dtype not in _NAMES_BY_DTYPE:
        raise CodecError(f"dtype {dtype} cannot be stored; use one of {sorted(DTYPES_BY_NAME)}")
    return _NAMES_BY_DTYPE[dtype]


def itemsize(name: str) -> int:
    """Bytes per element of the stored dtype ``name``; ``CodecError`` if unknown."""
    if name not in DTYPES_BY_NAME:
        raise CodecError(f"unknown dtype {name!r}")
    return _ITEMSIZES[name]


def raw_bytes(t: torch.Tensor) -> memoryview:
    """A CPU tensor's bytes in C order, zero-copy where it is contiguous (the view keeps it alive)."""
    if t.device.type != "cpu":
        raise CodecError(f"raw_bytes takes a CPU tensor, got one on {t.device}")
    if t.layout != torch.strided:
        raise CodecError(f"a tensor with layout {t.layout} has no raw bytes; store a dense (strided) tensor")
    flat = t.detach().contiguous().reshape(-1)
    if not flat.numel():
        return memoryview(b"")
    return memoryview(flat.view(torch.uint8).numpy().data)  # ndarray.data: the buffer itself
