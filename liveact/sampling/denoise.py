"""Denoising one chunk: the few-step loop against the per-step ConvKV caches.

For each step i the model sees the chunk's noisy latent and step i's cache (Neighbor Forcing at
inference: the previous chunk wrote its step-i noisy K/V there). With the "clean" sampler context
(the sample-level ablation) every step drafts into one shared cache and a last forward at t = 0 of
the generated latent commits its clean K/V. Audio cross-attention is skipped
at ``skip_audio_steps``; with audio CFG a second forward uses null-audio tokens and the null caches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from liveact.config import LiveActConfig
from liveact.memory.cache import Draft, KVCache
from liveact.memory.convkv import ConvKVMemory
from liveact.model.dit import LiveActDiT
from liveact.sampling.chunking import ChunkPlan
from liveact.sampling.noise import NoiseSource
from liveact.sampling.schedule import sampler_update, step_coefficients


@dataclass
class Conditioning:
    """Per-session conditioning, computed once."""

    y: torch.Tensor  # (B, 4+Cz, window_latent_frames, H, W): mask + image latent
    context: torch.Tensor  # (B, clip_tokens + text_len, C) from LiveActDiT.encode_context
    null_audio: torch.Tensor | None = None  # (B, window_latent_frames, N_a, C_a), for audio CFG


@dataclass
class StepRecord:
    x: torch.Tensor  # latent fed to the model
    t: float
    v: torch.Tensor  # velocity used by the sampler (after CFG)
    fresh: torch.Tensor | None  # the draw used after the step
    v_cond: torch.Tensor | None = None
    v_null: torch.Tensor | None = None


@dataclass
class ChunkResult:
    plan: ChunkPlan
    latent: torch.Tensor  # (B, Cz, F, H, W) clean latent
    steps: list[StepRecord] = field(default_factory=list)


@torch.no_grad()
def denoise_chunk(
    model: LiveActDiT,
    memory: ConvKVMemory,
    cond: Conditioning,
    audio_tokens: torch.Tensor,
    plan: ChunkPlan,
    noise: NoiseSource,
    record: bool = False,
) -> ChunkResult:
    """Generate one chunk. audio_tokens (B, window_latent_frames, N_a, C_a) from ``project_audio``."""
    config: LiveActConfig = model.config
    sc = config.sampler
    a, b = plan.latent_slice
    y = cond.y[:, :, a:b]
    batch, _, _, h, w = cond.y.shape
    audio = audio_tokens[:, a:b]
    null_audio = None if cond.null_audio is None else cond.null_audio[:, a:b]
    cfg_steps = sc.cfg_steps()
    if cfg_steps and null_audio is None:
        raise ValueError("audio CFG is on but the conditioning has no null-audio tokens")

    clean = sc.context == "clean"
    x = noise.draw((batch, config.model.latent_channels, plan.latent_frames, h, w))
    result = ChunkResult(plan=plan, latent=x)
    for c in step_coefficients(sc):
        t = torch.full((batch,), c.t, dtype=torch.float32, device=x.device)
        use_audio = c.step not in sc.skip_audio_steps
        caches = memory.layers(c.step)
        kv: list[KVCache] = [Draft(layer) for layer in caches] if clean else list(caches)  # the clean pass commits
        v = model(x, y, t, cond.context, audio if use_audio else None, kv, plan.is_first)
        v_cond = v_null = None
        if c.step in cfg_steps:
            v_cond = v
            v_null = model(x, y, t, cond.context, null_audio, memory.layers(c.step, null=True), plan.is_first)
            v = v_null + sc.audio_cfg * (v_cond - v_null)
        fresh = noise.draw(tuple(x.shape)) if sc.kind == "x0_renoise" else None
        if record:
            result.steps.append(StepRecord(x=x, t=c.t, v=v, fresh=fresh, v_cond=v_cond, v_null=v_null))
        x = sampler_update(sc.kind, x, v, c, fresh)
    if clean:  # sample-level context: the generated chunk's clean K/V, at t = 0, is what later chunks see
        t0 = torch.zeros(batch, dtype=torch.float32, device=x.device)
        model(x, y, t0, cond.context, audio, memory.layers(0), plan.is_first)
    result.latent = x
    return result
