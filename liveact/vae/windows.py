"""Chunk-window encoding: the encode that ``StreamingDecoder.decode_with_context`` inverts.

Legend: B batch, Cz latent channels, F latent frames in all, n a chunk's latent frames,
c = ``VaeConfig.decode_context_latents`` (3), Tv video frames, H x W pixels.

``decode_with_context`` decodes each chunk from a fresh causal cache, as [the previous chunk's last c
latents + the chunk's n latents], and drops the 1 + 4(c - 1) frames of the context. So the VAE never
runs longer than c + n latents from a fresh start, and neither should the encoder that makes training
targets: ``encode_chunk_windows`` encodes chunk 0 (video frames [0, 1 + 4(n0 - 1))) on its own and every
later chunk starting at latent s from a fresh cache over the frames its decode window covers,
[4(s - c), 1 + 4(s + n - 1)) (the window's single-frame latent 0 is the last frame of global latent
s - c), keeping the window's last n latents. A VAE trained on windows of 1 + 4(c + n - 1) frames is
then only ever used inside what it was trained on, whatever the length of the session.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import AutoencoderKLWan

from liveact.vae.config import VaeConfig
from liveact.vae.latents import normalize

__all__ = ["chunk_windows", "encode_chunk_windows"]


def chunk_windows(cfg: VaeConfig, chunk_latents: Sequence[int]) -> list[tuple[int, int, int]]:
    """Per chunk: (first video frame, end video frame, latents kept from the window's end)."""
    stride, c = cfg.temporal_stride, cfg.decode_context_latents
    out, s = [], 0
    for n in chunk_latents:
        if n < 1:
            raise ValueError(f"chunk latent counts must be >= 1, got {list(chunk_latents)}")
        if s == 0:
            out.append((0, 1 + stride * (n - 1), n))
        else:
            ctx = min(c, s)
            out.append((stride * (s - ctx), 1 + stride * (s + n - 1), n))
        s += n
    return out


@torch.no_grad()
def encode_chunk_windows(
    vae: AutoencoderKLWan, cfg: VaeConfig, video: torch.Tensor, chunk_latents: Sequence[int]
) -> torch.Tensor:
    """video (B, 3, Tv, H, W) in [-1, 1] -> normalised posterior means (B, Cz, F, h, w), F = sum(chunk_latents)."""
    windows = chunk_windows(cfg, chunk_latents)
    need = windows[-1][1]
    if video.shape[2] < need:
        raise ValueError(f"{video.shape[2]} video frames cannot cover chunks of {list(chunk_latents)} latents ({need})")
    parts = []
    for start, end, keep in windows:
        mu = vae.encode(video[:, :, start:end].to(vae.dtype)).latent_dist.mode()  # (B, Cz, window, h, w)
        parts.append(mu[:, :, -keep:])
    return normalize(torch.cat(parts, dim=2), cfg)
