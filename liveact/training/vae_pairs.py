"""Chunk-pair VAE training: the reconstruction a context-mode session actually decodes.

Legend: B batch, Cz latent channels, n latent frames, Tv video frames, H x W pixels, c the decode
context (``VaeConfig.decode_context_latents``).

A session's chunk k is encoded in its own window (``liveact.vae.encode_chunk_windows``) but decoded
after the *previous* window's last c latents (``StreamingDecoder.decode_with_context``). Those context
latents were encoded at the end of a window, as groups of 4 frames, while a window's own first c latents
start from a fresh cache (its latent 0 is one frame). A VAE trained only on whole windows decodes its own
latents well (L1 0.11 per chunk, measured) and the session's mixed ones badly (0.27): the decoder has
never seen end-of-window latents at the start of its input. ``chunk_pair_reconstruction`` builds exactly
the mixed input from two consecutive chunk windows and reconstructs the second chunk's frames through it,
so the encoder and decoder learn the path sessions take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKLWan

from liveact.vae import VaeConfig, chunk_windows

__all__ = ["ChunkPair", "chunk_pair_reconstruction", "chunk_pairs"]


@dataclass(frozen=True)
class ChunkPair:
    """Chunk k's and chunk k-1's windows, as frame ranges relative to the start of the previous window."""

    prev: tuple[int, int]  # [start, end) of the previous chunk's window
    cur: tuple[int, int]  # [start, end) of chunk k's window
    prev_keep: int  # latents the previous window contributes to the session (its last prev_keep)
    cur_keep: int  # latents chunk k's window contributes (its last cur_keep)
    first: bool  # the previous chunk is chunk 0 (its own decode is also a session's path)

    @property
    def frames(self) -> int:
        return self.cur[1]


def chunk_pairs(cfg: VaeConfig, chunk_latents: Sequence[int]) -> list[ChunkPair]:
    """Every (k-1, k) pair of a session's chunk layout, k >= 1."""
    windows = chunk_windows(cfg, chunk_latents)
    pairs = []
    for k in range(1, len(windows)):
        (ps, pe, pk), (cs, ce, ck) = windows[k - 1], windows[k]
        pairs.append(ChunkPair((0, pe - ps), (cs - ps, ce - ps), pk, ck, k == 1))
    return pairs


@dataclass
class PairReconstruction:
    recon: list[torch.Tensor]  # (B, 3, Tv, H, W) each: chunk k's frames (and chunk 0's own, when first)
    target: list[torch.Tensor]  # the frames they reconstruct
    mean: torch.Tensor  # (B, Cz, n, h, w): posterior means of both windows, concatenated
    logvar: torch.Tensor


def _posterior(vae: AutoencoderKLWan, x: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, ...]:
    """x (B, 3, Tv, H, W) -> (z, mean, logvar), each (B, Cz, n, h, w); a fresh causal cache.

    z is a posterior sample drawn with ``gen``, or the mean when ``gen`` is None (as sessions encode).
    """
    dist = vae.encode(x).latent_dist
    return (dist.mean if gen is None else dist.sample(generator=gen)), dist.mean, dist.logvar


def chunk_pair_reconstruction(
    vae: AutoencoderKLWan, cfg: VaeConfig, x: torch.Tensor, pair: ChunkPair, gen: torch.Generator | None
) -> PairReconstruction:
    """x (B, 3, pair.frames, H, W): the frames from the previous window's start to chunk k's window end.

    ``gen``: posterior samples for training; None decodes the posterior means, which is bit for bit what
    ``encode_chunk_windows`` + ``decode_with_context`` give a session for chunk k (tested).
    """
    prev, cur = x[:, :, pair.prev[0] : pair.prev[1]], x[:, :, pair.cur[0] : pair.cur[1]]
    zp, mp, lp = _posterior(vae, prev, gen)  # (B, Cz, np, h, w)
    zc, mc, lc = _posterior(vae, cur, gen)  # (B, Cz, nc, h, w)
    c = min(cfg.decode_context_latents, pair.prev_keep)
    z = torch.cat([zp[:, :, -c:], zc[:, :, -pair.cur_keep :]], dim=2)  # (B, Cz, c + nc_keep, h, w)
    out = vae.decode(z).sample[:, :, cfg.video_frames(c) :]  # drop the context's 1 + 4(c - 1) frames
    recon, target = [out], [cur[:, :, -out.shape[2] :]]
    if pair.first:  # chunk 0 is decoded on its own: keep that path trained too
        recon.append(vae.decode(zp).sample)
        target.append(prev)
    return PairReconstruction(recon, target, torch.cat([mp, mc], dim=2), torch.cat([lp, lc], dim=2))
