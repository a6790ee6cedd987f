"""``RolloutLayerKV``: the ConvKV cache of one layer for training rollouts, differentiable end to end.

Same slot layout, update rule (``update_moves``) and ``append`` contract as the serving ``LayerKV``,
but functional: every chunk builds new tensors instead of writing in place, so autograd can go back
through the attention of later chunks into the K/V of earlier ones *and* into the compressor
kernels (``memory_proj_k`` / ``memory_proj_v``): that is how the ConvKV training stage learns C.

Legend: B batch, fl tokens per latent frame, H heads, D head_dim.
"""

from __future__ import annotations

import torch

from liveact.config import MemoryConfig
from liveact.memory.cache import AttendView, chunk_frames, select_weights, update_moves
from liveact.memory.compress import compress_tokens


class RolloutLayerKV:
    """One layer's K/V over a training rollout of consecutive chunks (one denoising level)."""

    def __init__(self, cfg: MemoryConfig, frame_tokens: int) -> None:
        self.cfg = cfg
        self.fl = frame_tokens
        self.k: torch.Tensor | None = None  # (B, slots*fl, H, D): what the last chunk attended to
        self.v: torch.Tensor | None = None
        self.chunks_written = 0

    def _slots(self, x: torch.Tensor, s0: int, s1: int) -> torch.Tensor:
        return x[:, s0 * self.fl : s1 * self.fl]

    def _fold(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """(B, total_slots*fl, H, D) after a later chunk -> the persistent part (B, persistent*fl, H, D)."""
        cfg = self.cfg
        parts = [self._slots(x, 0, cfg.sink_slots)]
        for move in update_moves(cfg):
            src = self._slots(x, move.src0, move.src1)
            if not move.compress:
                parts.append(src)
            elif cfg.compressor == "none":  # a placeholder keeps slot positions; the chunk never attends it
                parts.append(torch.zeros_like(src[:, : self.fl]))
            else:
                parts.append(compress_tokens(src, weight, cfg.compress_group))
        return torch.cat(parts, dim=1)

    def append(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        weight_k: torch.Tensor | None,
        weight_v: torch.Tensor | None,
        commit: bool = True,
    ) -> AttendView:
        """Add one chunk's un-rotated K/V (B, frames*fl, H, D); returns what it attends to.

        ``commit=False``: a draft, attended to but not kept (the sample-level context ablation's
        noisy forwards; the chunk's clean forward then commits).
        """
        cfg = self.cfg
        chunk = self.chunks_written
        frames = chunk_frames(cfg, chunk, self.fl, k)
        if chunk == 0:
            past_k = past_v = k[:, :0]
        elif chunk == 1:  # chunk 0 sits in the persistent slots as written
            assert self.k is not None and self.v is not None
            past_k, past_v = self.k, self.v
        else:
            assert self.k is not None and self.v is not None
            wk, wv = select_weights(cfg, weight_k, weight_v)
            past_k, past_v = self._fold(self.k, wk), self._fold(self.v, wv)
        k_all, v_all = torch.cat([past_k, k], dim=1), torch.cat([past_v, v], dim=1)
        if commit:
            self.k, self.v = k_all, v_all
            self.chunks_written += 1
        key_frames = k_all.shape[1] // self.fl
        skip = cfg.unattended_slots(chunk)
        return AttendView(k_all, v_all, key_frames, key_frames - frames, bounded=True, skip=skip)
