"""The three attentions of a LiveAct block.

Legend: B batch, S query tokens (F latent frames x fl tokens), C = H*D channels, H heads, D head_dim.

* ``SelfAttention``  - over the ConvKV memory: writes the chunk's un-rotated K/V, reads the cache,
  rotates queries and keys by slot index, attends (not causal within the chunk).
* ``ImageTextCrossAttention`` - Wan I2V: one query against CLIP tokens and text tokens separately,
  outputs summed before ``o``.
* ``AudioCrossAttention`` - each latent frame's tokens attend only to that frame's audio tokens.

Module and parameter names equal the public checkpoint's keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from liveact.config import ModelConfig
from liveact.memory.cache import KVCache
from liveact.model.layers import RMSNorm
from liveact.model.rope import Rope3D

Grid = tuple[int, int, int]  # latent frames, token rows, token cols


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked softmax attention. q (B, S, H, D), k/v (B, T, H, D) -> (B, S, H, D)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, compress_group: int) -> None:
        super().__init__()
        c = cfg.dim
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.q = nn.Linear(c, c)
        self.k = nn.Linear(c, c)
        self.v = nn.Linear(c, c)
        self.o = nn.Linear(c, c)
        self.norm_q = RMSNorm(c, cfg.eps) if cfg.qk_norm else nn.Identity()
        self.norm_k = RMSNorm(c, cfg.eps) if cfg.qk_norm else nn.Identity()
        # ConvKV compressors: depthwise, kernel = stride = compress_group, per channel.
        g = compress_group
        self.memory_proj_k = nn.Conv1d(c, c, kernel_size=g, stride=g, groups=c, bias=False)
        self.memory_proj_v = nn.Conv1d(c, c, kernel_size=g, stride=g, groups=c, bias=False)

    def compressor_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.memory_proj_k.weight, self.memory_proj_v.weight

    def forward(self, x: torch.Tensor, grid: Grid, kv: KVCache, rope: Rope3D) -> torch.Tensor:
        b, s, _ = x.shape
        frames, rows, cols = grid
        heads = self.q.out_features // self.head_dim  # a tensor-parallel rank holds a share
        q = self.norm_q(self.q(x)).view(b, s, heads, self.head_dim)
        k = self.norm_k(self.k(x)).view(b, s, heads, self.head_dim)
        v = self.v(x).view(b, s, heads, self.head_dim)
        view = kv.append(k, v, *self.compressor_weights())
        q = rope.apply(q, view.query_t0, frames, rows, cols, view.bounded)
        keys = rope.apply(view.k, 0, view.key_frames, rows, cols, view.bounded)
        values = view.v
        if view.skip is not None:  # slots left out (sliding-window ablation), after RoPE placed the rest
            a, b = (slot * rows * cols for slot in view.skip)
            keys = torch.cat([keys[:, :a], keys[:, b:]], dim=1)
            values = torch.cat([values[:, :a], values[:, b:]], dim=1)
        out = attend(q, keys, values.type_as(q))  # (B, S, H, D)
        projected: torch.Tensor = self.o(out.flatten(2))  # nn.Module calls are untyped (Any) in torch
        return projected


class ImageTextCrossAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.dim
        self.head_dim = cfg.head_dim
        self.clip_tokens = cfg.clip_tokens
        self.q = nn.Linear(c, c)
        self.k = nn.Linear(c, c)
        self.v = nn.Linear(c, c)
        self.o = nn.Linear(c, c)
        self.k_img = nn.Linear(c, c)
        self.v_img = nn.Linear(c, c)
        norm = (lambda: RMSNorm(c, cfg.eps)) if cfg.qk_norm else nn.Identity
        self.norm_q = norm()
        self.norm_k = norm()
        self.norm_k_img = norm()

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x (B, S, C); context (B, clip_tokens + text_len, C): CLIP tokens first."""
        b = x.shape[0]
        d = self.head_dim
        img, txt = context[:, : self.clip_tokens], context[:, self.clip_tokens :]
        q = self.norm_q(self.q(x)).view(b, -1, self.q.out_features // d, d)
        k = self.norm_k(self.k(txt)).view(b, -1, q.shape[2], d)
        v = self.v(txt).view(b, -1, q.shape[2], d)
        k_img = self.norm_k_img(self.k_img(img)).view(b, -1, q.shape[2], d)
        v_img = self.v_img(img).view(b, -1, q.shape[2], d)
        out = attend(q, k, v).flatten(2) + attend(q, k_img, v_img).flatten(2)
        projected: torch.Tensor = self.o(out)
        return projected


class AudioCrossAttention(nn.Module):
    """Per-latent-frame attention to that frame's audio tokens; biases, no qk-norm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.dim
        self.head_dim = cfg.head_dim
        self.q_linear = nn.Linear(c, c)
        self.kv_linear = nn.Linear(cfg.audio_output_dim, 2 * c)  # output is [K | V]
        self.proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor, audio: torch.Tensor, frames: int) -> torch.Tensor:
        """x (B, F*fl, C); audio (B, F, N_a, C_a) tokens of the same F latent frames."""
        b, s, _ = x.shape
        fl = s // frames
        d = self.head_dim
        heads = self.q_linear.out_features // d
        q = self.q_linear(x).view(b * frames, fl, heads, d)  # (B*F, fl, H, D)
        kv = self.kv_linear(audio.flatten(0, 1))  # (B*F, N_a, 2*C)
        kv = kv.view(b * frames, -1, 2, heads, d)
        out = attend(q, kv[:, :, 0], kv[:, :, 1])  # (B*F, fl, H, D)
        projected: torch.Tensor = self.proj(out.reshape(b, s, heads * d))
        return projected
