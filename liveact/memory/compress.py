"""The ConvKV compression op C: ``group`` slots of tokens -> one slot.

C runs over the flattened raster token sequence (slot, row, col) and maps each run of ``group``
consecutive tokens to one output token, per channel (a depthwise Conv1d, kernel = stride = group,
no bias). The groups straddle row ends and slot boundaries; this is the public implementation's
behaviour, which its trained weights expect.

Legend: B batch, N = group*fl input tokens, H heads, D head_dim, C = H*D channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def compress_tokens(x: torch.Tensor, weight: torch.Tensor | None, group: int) -> torch.Tensor:
    """x (B, N, H, D) -> (B, N/group, H, D).

    weight (C, 1, group) is the depthwise kernel (``memory_proj_k``/``_v``); None means the plain
    mean of each group (equal to the conv at its 1/group initialisation).
    """
    b, n, h, d = x.shape
    if n % group:
        raise ValueError(f"cannot compress {n} tokens in groups of {group}")
    m = n // group
    if weight is None:
        return x.view(b, m, group, h, d).mean(dim=2)
    seq = x.reshape(b, n, h * d).transpose(1, 2)  # (B, C, N)
    out = F.conv1d(seq, weight.to(seq.dtype), stride=group, groups=h * d)  # (B, C, M)
    return out.view(b, h, d, m).permute(0, 3, 1, 2)  # (B, M, H, D)
