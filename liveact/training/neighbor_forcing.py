"""Neighbor Forcing: where a training rollout's chunks are noised, denoised and scored.

Legend: B batch, Cz latent channels, F latent frames of the rollout, h x w latent grid, Tv video
frames, L x Ca audio feature rows, Fv video frames of an audio window, W taps.

A rollout is ``chunks`` consecutive chunks of a clip (chunk 0: the first ``first_chunk_frames``
latents with the reference slot, then ``chunk_frames`` each). Every chunk is noised to the *same*
level sigma with its own noise, ``x_sigma = (1 - sigma) x0 + sigma eps``, and the DiT predicts the
velocity ``eps - x0`` of each chunk in order, each forward writing its K/V into one
``RolloutLayerKV`` per layer. So chunk n attends to chunk n-1's latents at the same diffusion level:
exactly what the serving sampler's per-step ConvKV caches hold at step i. Attention runs causally
across chunks (a chunk never sees a later one); from the third chunk on, the ConvKV update rule folds
older chunks into the compressed slots, differentiably, so the compressors learn.

The ablations of the paper's comparison (``context``) condition on *sample-level* context instead,
matching the "clean" sampler context at inference: each chunk's noisy forward only drafts into the
cache, and what later chunks see is the K/V of a forward at t = 0 of either the clean ground truth
(``"clean"``: teacher forcing) or the model's own few-step sample of the chunk (``"self"``: self
forcing, the sample drawn without gradients).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from liveact.memory.cache import Draft
from liveact.memory.rollout import RolloutLayerKV
from liveact.model.dit import LiveActDiT
from liveact.sampling.audio_window import window_index
from liveact.sampling.chunking import plan_chunk
from liveact.sampling.schedule import sampler_update, step_coefficients

__all__ = ["CONTEXTS", "RolloutBatch", "chunk_latent_range", "neighbor_forcing_loss", "shifted_levels"]

CONTEXTS = ("neighbor", "clean", "self")


@dataclass
class RolloutBatch:
    latents: torch.Tensor  # (B, Cz, F, h, w) clean, normalised
    y: torch.Tensor  # (B, 4+Cz, window, h, w)
    clip: torch.Tensor  # (B, P, Cp)
    audio: torch.Tensor  # (B, Tv, L, Ca) feature rows
    weight: torch.Tensor | None = None  # (B, 1, 1, h, w) per-cell loss weight (None: uniform)


def chunk_latent_range(model: LiveActDiT, index: int) -> tuple[int, int]:
    """Latent frames [start, end) of chunk ``index`` within a clip's latent sequence."""
    mem = model.config.memory
    if index == 0:
        return 0, mem.first_chunk_frames
    start = mem.first_chunk_frames + (index - 1) * mem.chunk_frames
    return start, start + mem.chunk_frames


def shifted_levels(u: torch.Tensor, shift: float) -> torch.Tensor:
    """u in [0, 1) -> sigma = shift*u / (1 + (shift-1)*u): the flow-matching time shift (more mass near 1)."""
    return shift * u / (1.0 + (shift - 1.0) * u)


def neighbor_forcing_loss(
    model: LiveActDiT,
    batch: RolloutBatch,
    text: Sequence[torch.Tensor],
    sigma: torch.Tensor,
    chunks: int,
    generator: torch.Generator,
    use_audio: bool = True,
    context: str = "neighbor",
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mean velocity MSE over a rollout of ``chunks`` chunks at levels ``sigma`` (B,); also per chunk.

    ``text``: B unpadded text-feature tensors (the prompt the sessions would use); ``use_audio=False``
    runs without audio cross-attention, as the sampler's step 0 does. ``context``: one of ``CONTEXTS``.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    cfg = model.config
    b, _, frames, h, w = batch.latents.shape
    need = chunk_latent_range(model, chunks - 1)[1]
    if frames < need:
        raise ValueError(f"a {chunks}-chunk rollout needs {need} latent frames, the batch has {frames}")
    _, ph, pw = cfg.model.patch_size
    caches = [RolloutLayerKV(cfg.memory, (h // ph) * (w // pw)) for _ in range(cfg.model.num_layers)]
    ctx = model.encode_context(text, batch.clip)  # (B, P + text_len, C)
    t = sigma * cfg.sampler.num_train_timesteps  # (B,)
    s = sigma.view(b, 1, 1, 1, 1)
    losses = []
    for k in range(chunks):
        plan = plan_chunk(cfg, k)
        a, e = plan.latent_slice
        l0, l1 = chunk_latent_range(model, k)
        x0 = batch.latents[:, :, l0:l1]  # (B, Cz, f, h, w)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        x = (1.0 - s) * x0 + s * eps
        idx = window_index(cfg, k, batch.audio.shape[1])  # (Fv, W)
        tokens = model.project_audio(batch.audio[:, idx])[:, a:e]  # (B, f, N_a, C_a)
        y = batch.y[:, :, a:e]
        kv = caches if context == "neighbor" else [Draft(c) for c in caches]
        v = model(x, y, t, ctx, tokens if use_audio else None, kv, plan.is_first)
        sq = (v.float() - (eps - x0).float()) ** 2  # (B, Cz, f, h, w)
        if batch.weight is None:
            losses.append(sq.mean())
        else:  # weighted mean: the same scale as the plain MSE when the weights are uniform
            weight = batch.weight.expand_as(sq)
            losses.append((weight * sq).sum() / weight.sum())
        if context != "neighbor" and k + 1 < chunks:  # commit the sample-level context: a forward at t = 0
            seen = x0 if context == "clean" else _sample(model, caches, y, ctx, tokens, plan.is_first, generator)
            model(seen, y, torch.zeros_like(t), ctx, tokens, caches, plan.is_first)
    return torch.stack(losses).mean(), losses


@torch.no_grad()
def _sample(
    model: LiveActDiT,
    caches: list[RolloutLayerKV],
    y: torch.Tensor,
    ctx: torch.Tensor,
    tokens: torch.Tensor,
    first: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """The model's own few-step sample of a chunk (the sampler's schedule, drafting into ``caches``)."""
    sc = model.config.sampler
    b, _, f, h, w = y.shape
    x = torch.randn((b, model.config.model.latent_channels, f, h, w), generator=generator)
    drafts = [Draft(c) for c in caches]
    for c in step_coefficients(sc):
        t = torch.full((b,), c.t)
        v = model(x, y, t, ctx, None if c.step in sc.skip_audio_steps else tokens, drafts, first)
        fresh = torch.randn(x.shape, generator=generator) if sc.kind == "x0_renoise" else None
        x = sampler_update(sc.kind, x, v, c, fresh)
    return x
