"""How a rank's tensors become byte streams: what a checkpoint cuts into content-addressed parts.

A liveact-18b checkpoint holds about 480 tensors per rank (the k and v of every ConvKV cache, per layer
and denoising step). Cut one by one, they made about 2,200 Redis keys per rank and version, and every
key is a command per write, refresh, touch and delete: Python that holds the GIL while the DiT thread
waits for it (in the rehearsal the loop thread waited 21-27 ms per chunk while a write was in flight;
1-3 ms once the same bytes came as a few streams). So a capture keeps its tensors in one buffer per
``schema.layout_group`` (``liveact.sampling.capture``), each tensor at an ``ALIGN``-ed offset
(``layout``), and the store keeps each buffer as one stream: about 140 parts of 64 MiB per rank at
full size.

``streams`` finds the streams in any tensors: tensors that lie one after the other in one storage
(gaps shorter than ``ALIGN``: padding, kept) form one stream, whose bytes are read from the storage as
they are (no copy); any other tensor is a stream of its own (its raw bytes; copied only where it is
not contiguous). ``unpack`` turns a stream's bytes back into its tensors (views, no copy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from liveact.state import codec
from liveact.state.schema import StreamRef, TensorRef

__all__ = ["ALIGN", "Stream", "layout", "streams", "unpack"]

ALIGN = 64  # bytes: a laid-out tensor starts at a multiple of this (every stored dtype's element size divides it)


@dataclass(frozen=True)
class Stream:
    """A run of tensors and the bytes they lie in (``tensors``' offsets count from the first byte of ``data``)."""

    tensors: tuple[TensorRef, ...]
    data: memoryview  # a view of the tensors' own storage where they share one; else their raw bytes


def layout(sizes: Sequence[int]) -> tuple[list[int], int]:
    """(offsets, bytes) of a buffer holding tensors of these byte sizes one after the other at ``ALIGN``-ed offsets."""
    offsets, at = [], 0
    for n in sizes:
        at = -(-at // ALIGN) * ALIGN
        offsets.append(at)
        at += n
    return offsets, at


def streams(tensors: Mapping[str, torch.Tensor]) -> list[Stream]:
    """``tensors`` (CPU, dense) as streams, ordered by their first tensor's name (see the module docstring)."""
    runs: dict[int, list[tuple[int, str, torch.Tensor]]] = {}  # storage -> (byte offset, name, tensor)
    out: list[Stream] = []
    for name, t in tensors.items():
        _check(name, t)
        if t.is_contiguous() and t.numel():
            at = int(t.storage_offset()) * t.element_size()
            runs.setdefault(t.untyped_storage().data_ptr(), []).append((at, name, t))
        else:
            out.append(Stream((_ref(name, t, 0),), codec.raw_bytes(t)))
    for members in runs.values():
        members.sort(key=lambda m: m[0])
        run: list[tuple[int, str, torch.Tensor]] = []
        for member in members:
            if run and not 0 <= member[0] - _end(run[-1]) < ALIGN:  # overlapping, or a gap that is not padding
                out.append(_stream(run))
                run = []
            run.append(member)
        out.append(_stream(run))
    return sorted(out, key=lambda s: s.tensors[0].name)


def unpack(ref: StreamRef, data: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tensors of stream ``ref`` from its bytes ``data`` (uint8, 1-D): views of ``data``."""
    out = {}
    for t in ref.tensors:
        dtype = codec.DTYPES_BY_NAME[t.dtype]
        out[t.name] = data[t.offset : t.end].view(dtype).reshape(t.shape)
    return out


def _check(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise codec.CodecError(f"{name!r} is a {type(t).__name__}, not a torch.Tensor")
    if not isinstance(name, str) or not name:
        raise codec.CodecError(f"tensor name {name!r} must be a non-empty string")
    if t.device.type != "cpu" or t.layout != torch.strided:
        raise codec.CodecError(f"{name!r} must be a dense CPU tensor, got {t.layout} on {t.device}")
    if t.dtype not in codec.SUPPORTED_DTYPES:
        raise codec.CodecError(f"{name!r} has dtype {t.dtype}, which a checkpoint cannot store; use one of "
                               f"{sorted(codec.DTYPES_BY_NAME)}")  # fmt: skip


def _ref(name: str, t: torch.Tensor, offset: int) -> TensorRef:
    return TensorRef(name, codec.dtype_name(t.dtype), tuple(t.shape), offset)


def _end(member: tuple[int, str, torch.Tensor]) -> int:
    return member[0] + member[2].nbytes


def _stream(run: list[tuple[int, str, torch.Tensor]]) -> Stream:
    start, end = run[0][0], _end(run[-1])
    storage = run[0][2].untyped_storage()
    # the run's bytes, in place (the stubs lack set_'s untyped-storage form)
    flat = torch.empty(0, dtype=torch.uint8).set_(storage, start, (end - start,))  # type: ignore[call-overload]
    data = memoryview(flat.numpy().data)  # ndarray.data: the storage itself (the view keeps it alive)
    return Stream(tuple(_ref(name, t, at - start) for at, name, t in run), data)
