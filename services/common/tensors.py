"""``liveact.v1.Tensor`` <-> torch: little-endian, C order; bfloat16 travels as its raw 16 bits."""

from __future__ import annotations

import math

import torch

from liveact.v1 import common_pb2

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "uint8": torch.uint8,
    "int64": torch.int64,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def to_proto(t: torch.Tensor) -> common_pb2.Tensor:
    t = t.detach().contiguous().cpu()
    if t.dtype not in _NAMES:
        raise ValueError(f"tensor dtype {t.dtype} cannot travel; use one of {sorted(_DTYPES)}")
    raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
    return common_pb2.Tensor(dtype=_NAMES[t.dtype], shape=list(t.shape), data=raw.numpy().tobytes())


def from_proto(msg: common_pb2.Tensor, max_elements: int | None = None) -> torch.Tensor:
    """Decode, refusing an unknown dtype or a byte count that does not match the shape."""
    if msg.dtype not in _DTYPES:
        raise ValueError(f"tensor dtype {msg.dtype!r} is not one of {sorted(_DTYPES)}")
    shape = tuple(int(s) for s in msg.shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"tensor shape {shape} has a negative size")
    numel = math.prod(shape)  # Python ints: a huge shape cannot wrap around to a small count
    if max_elements is not None and numel > max_elements:
        raise ValueError(f"tensor of {numel} elements exceeds the limit of {max_elements}")
    dtype = _DTYPES[msg.dtype]
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if len(msg.data) != numel * itemsize:
        need = numel * itemsize
        raise ValueError(f"tensor data has {len(msg.data)} bytes; shape {shape} of {msg.dtype} needs {need}")
    if numel == 0:  # torch.frombuffer refuses an empty buffer
        return torch.empty(shape, dtype=dtype)
    if dtype == torch.bfloat16:
        return torch.frombuffer(bytearray(msg.data), dtype=torch.int16).view(torch.bfloat16).reshape(shape)
    return torch.frombuffer(bytearray(msg.data), dtype=dtype).reshape(shape)
