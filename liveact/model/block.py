"""One LiveAct transformer block (Wan2.1 I2V block + audio cross-attention).

Order: adaLN self-attention over the ConvKV memory (gated) -> image+text cross-attention on the
affine-normed input (ungated) -> audio cross-attention on ``norm_x(x)`` (ungated; skipped at the
steps the sampler says) -> adaLN FFN (gated). Modulation rows: shift, scale, gate (attention),
shift, scale, gate (FFN); applied as norm(x) * (1 + scale) + shift in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from liveact.config import ModelConfig
from liveact.memory.cache import KVCache
from liveact.model.attention import (
    AudioCrossAttention,
    Grid,
    ImageTextCrossAttention,
    SelfAttention,
)
from liveact.model.layers import FP32LayerNorm
from liveact.model.rope import Rope3D


@dataclass
class BlockInputs:
    """Per-forward inputs shared by every block."""

    e0: torch.Tensor  # (B, 6, C) float32 time modulation
    grid: Grid
    context: torch.Tensor  # (B, clip_tokens + text_len, C)
    audio: torch.Tensor | None  # (B, F, N_a, C_a) or None to skip audio cross-attention
    mute_first_frame: bool  # the chunk's latent frame 0 is the reference slot: no audio for it
    rope: Rope3D


class LiveActBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, compress_group: int) -> None:
        super().__init__()
        c = cfg.dim
        self.norm1 = FP32LayerNorm(c, cfg.eps)
        self.self_attn = SelfAttention(cfg, compress_group)
        self.norm3 = FP32LayerNorm(c, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = ImageTextCrossAttention(cfg)
        self.norm2 = FP32LayerNorm(c, cfg.eps)
        self.ffn = nn.Sequential(nn.Linear(c, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, c))
        self.modulation = nn.Parameter(torch.zeros(1, 6, c))
        self.audio_cross_attn = AudioCrossAttention(cfg)
        self.norm_x = FP32LayerNorm(c, cfg.eps, elementwise_affine=True) if cfg.norm_input_visual else nn.Identity()

    def forward(self, x: torch.Tensor, inp: BlockInputs, kv: KVCache) -> torch.Tensor:
        dtype = x.dtype
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = (self.modulation.float() + inp.e0).chunk(6, dim=1)

        # 1. self-attention over the ConvKV memory
        h = (self.norm1(x).float() * (1 + scale_a) + shift_a).to(dtype)
        x = (x + self.self_attn(h, inp.grid, kv, inp.rope) * gate_a).to(dtype)

        # 2. image + text cross-attention
        x = x + self.cross_attn(self.norm3(x), inp.context)

        # 3. audio cross-attention, frame by frame
        if inp.audio is not None:
            xa = self.audio_cross_attn(self.norm_x(x), inp.audio, inp.grid[0])
            if inp.mute_first_frame:
                fl = inp.grid[1] * inp.grid[2]
                xa = torch.cat([torch.zeros_like(xa[:, :fl]), xa[:, fl:]], dim=1)
            x = x + xa

        # 4. feed-forward
        h = (self.norm2(x).float() * (1 + scale_f) + shift_f).to(dtype)
        ffn: torch.Tensor = self.ffn(h)  # nn.Module calls are untyped (Any) in torch
        return (x + ffn * gate_f).to(dtype)
