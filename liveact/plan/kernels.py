"""What the GPU's fused kernels allocate, where the meta device would run a composite instead.

``F.scaled_dot_product_attention`` on a CUDA device runs a fused kernel (flash attention for
bf16/fp16, memory-efficient attention for fp32) that never materialises the (S, T) score matrix; on
the meta device torch would pick the math composite, whose score matrices are tens of GiB at
liveact-18b sizes. ``FusedAttention`` (a ``TorchFunctionMode``) sends the call to the fused op the
GPU would pick, whose meta kernel returns exactly the tensors that kernel allocates: the output and
its log-sum-exp rows (flash) or the output alone (memory-efficient attention, which a GPU runs for
fp32 or with a mask/bias; no log-sum-exp at inference).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

FLASH_DTYPES = (torch.bfloat16, torch.float16)


class FusedAttention(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        return fused_attention(*args, **kwargs)


def fused_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: Any = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: float | None = None, **_: Any,
) -> torch.Tensor:  # fmt: skip
    """q (B, H, S, D), k/v (B, H, T, D) -> (B, H, S, D) through the op a GPU's SDPA picks."""
    if q.dtype in FLASH_DTYPES and attn_mask is None:
        out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, False, scale=scale)
    else:
        out = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, attn_mask, False, dropout_p, is_causal, scale=scale
        )
    result: torch.Tensor = out[0]
    return result
