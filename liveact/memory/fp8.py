"""Float8 (e4m3) storage for K/V with one float32 scale per (token, head).

scale = amax over head_dim / 448 (clamped away from 0); q = x / scale cast to e4m3.
Round trip error per element is at most half an e4m3 step at the element's magnitude:
|x - dq(q(x))| <= 2^-4 * |x| + scale * 2^-9 (relative 1/16 from the 3-bit mantissa, plus the subnormal
floor), so |err| <= amax/16 + amax/(448*512) per (token, head).
"""

from __future__ import annotations

import torch

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448.0
_MIN_SCALE = 1e-12


def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., D) -> (q (..., D) float8_e4m3fn, scale (..., 1) float32)."""
    scale = (x.detach().abs().amax(dim=-1, keepdim=True).float() / FP8_MAX).clamp(min=_MIN_SCALE)
    q = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """q (..., D) e4m3, scale (..., 1) float32 -> (..., D) in ``dtype``, made in ``dtype`` directly.

    e4m3 values are exact in bf16, and the in-place product computes in float32 and rounds once to
    ``dtype``: bit for bit ``(q.float() * scale).to(dtype)``, without that float32 copy of the cache.
    """
    return q.to(dtype).mul_(scale)


def roundtrip_bound(x: torch.Tensor) -> torch.Tensor:
    """The per-element error bound stated in the module docstring, for tests."""
    amax = x.abs().amax(dim=-1, keepdim=True).float()
    return amax / 16.0 + amax / (FP8_MAX * 512.0) + 1e-12
