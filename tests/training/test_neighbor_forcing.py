"""Neighbor Forcing training rollouts: the differentiable cache equals the serving cache, the loss is
causal across chunks, each chunk sees its predecessor at the same noise level, and the compressors learn."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from liveact.memory.cache import Draft, LayerKV
from liveact.memory.rollout import RolloutLayerKV
from liveact.sampling.audio_window import gather_window
from liveact.sampling.chunking import plan_chunk, total_video_frames
from liveact.testing import fresh_model, micro_config
from liveact.training.neighbor_forcing import (
    RolloutBatch,
    chunk_latent_range,
    neighbor_forcing_loss,
    shifted_levels,
)

LATENT = 8  # 8x8 latent grid: 4x4 = 16 tokens per latent frame
CHUNKS = 5


def _kv(cfg, chunk, fl, heads=2, head_dim=16, seed=0):
    g = torch.Generator().manual_seed(seed + chunk)
    frames = cfg.chunk_latent_frames(chunk)
    shape = (1, frames * fl, heads, head_dim)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("compressor", ["conv", "mean", "none"])
def test_rollout_cache_attends_to_what_the_serving_cache_does(compressor):
    cfg = dataclasses.replace(micro_config().memory, compressor=compressor)
    fl, heads, head_dim = 16, 2, 16
    g = torch.Generator().manual_seed(7)
    wk, wv = torch.randn(heads * head_dim, 1, 5, generator=g), torch.randn(heads * head_dim, 1, 5, generator=g)
    serving = LayerKV(cfg, 1, fl, heads, head_dim, torch.float32)
    rollout = RolloutLayerKV(cfg, fl)
    for chunk in range(6):
        k, v = _kv(cfg, chunk, fl, heads, head_dim)
        a, b = serving.append(k, v, wk, wv), rollout.append(k, v, wk, wv)
        assert (a.key_frames, a.query_t0, a.bounded, a.skip) == (b.key_frames, b.query_t0, b.bounded, b.skip)
        kept = torch.ones(a.key_frames * fl, dtype=torch.bool)
        if a.skip is not None:  # the sliding window: what sits in the skipped slots is never attended
            kept[a.skip[0] * fl : a.skip[1] * fl] = False
        torch.testing.assert_close(a.k[:, kept], b.k[:, kept], rtol=0, atol=1e-6)
        torch.testing.assert_close(a.v[:, kept], b.v[:, kept], rtol=0, atol=1e-6)


def test_rollout_cache_is_differentiable_into_compressor_and_old_chunks():
    cfg = micro_config().memory
    fl, heads, head_dim = 16, 2, 16
    wk = torch.full((heads * head_dim, 1, 5), 0.2, requires_grad=True)
    wv = torch.full((heads * head_dim, 1, 5), 0.2, requires_grad=True)
    rollout = RolloutLayerKV(cfg, fl)
    first = None
    for chunk in range(3):
        k, v = _kv(cfg, chunk, fl, heads, head_dim)
        k.requires_grad_(True)
        first = first if first is not None else k
        view = rollout.append(k, v, wk, wv)
    view.k.sum().backward()
    # upstream quirk kept: V is compressed with memory_proj_k, so only wk gets a gradient
    assert wk.grad is not None and wk.grad.abs().sum() > 0
    assert wv.grad is None
    assert first.grad is not None and first.grad.abs().sum() > 0  # chunk 0 reached chunk 2 via sink + C


def _batch(model, seed=0, batch=2):
    cfg = model.config
    m = cfg.model
    g = torch.Generator().manual_seed(seed)
    frames = chunk_latent_range(model, CHUNKS - 1)[1]
    return RolloutBatch(
        latents=torch.randn(batch, m.latent_channels, frames, LATENT, LATENT, generator=g),
        y=torch.randn(batch, m.cond_channels, cfg.memory.window_latent_frames, LATENT, LATENT, generator=g),
        clip=torch.randn(batch, m.clip_tokens, m.clip_dim, generator=g),
        audio=torch.randn(batch, total_video_frames(cfg, CHUNKS), m.audio_layers, m.audio_channels, generator=g),
    )


def _text(model, batch=2):
    return [torch.zeros(0, model.config.model.text_dim)] * batch


def _losses(model, batch, sigma, seed=3, chunks=CHUNKS):
    with torch.no_grad():
        _, per_chunk = neighbor_forcing_loss(
            model, batch, _text(model), sigma, chunks, torch.Generator().manual_seed(seed)
        )
    return torch.stack(per_chunk)


def test_loss_is_causal_across_chunks():
    model = fresh_model(micro_config())
    batch = _batch(model)
    sigma = torch.tensor([0.9, 0.6])
    base = _losses(model, batch, sigma)
    a, b = chunk_latent_range(model, 2)
    batch.latents[:, :, a:b] += 1.0  # change chunk 2 only
    changed = _losses(model, batch, sigma)
    torch.testing.assert_close(changed[:2], base[:2], rtol=0, atol=0)  # chunks 0 and 1 never see chunk 2
    assert (changed[2:] - base[2:]).abs().min() > 0  # chunk 2 itself and every later one (through the memory)


@pytest.mark.parametrize("context", ["neighbor", "clean"])
def test_each_chunk_sees_what_the_serving_sampler_would_show_it(context):
    """neighbor: chunk n's rollout forward equals a serving-cache forward whose cache holds chunk n-1's
    same-level input. clean (the teacher-forcing ablation): the chunk drafts into the cache, and the
    clean latent at t = 0 commits, exactly as the "clean" sampler context does."""
    model = fresh_model(micro_config())
    cfg = model.config
    batch = _batch(model, batch=1)
    sigma = torch.tensor([0.75])
    gen = torch.Generator().manual_seed(11)
    # replay the rollout's noise draws to rebuild each chunk's noisy input
    xs = []
    for k in range(CHUNKS):
        a, b = chunk_latent_range(model, k)
        x0 = batch.latents[:, :, a:b]
        eps = torch.randn(x0.shape, generator=gen)
        xs.append(((1 - sigma) * x0 + sigma * eps, eps - x0, x0))
    with torch.no_grad():
        _, per_chunk = neighbor_forcing_loss(
            model, batch, _text(model, 1), sigma, CHUNKS, torch.Generator().manual_seed(11), context=context
        )
        ctx = model.encode_context(_text(model, 1), batch.clip)
        kv = [
            LayerKV(cfg.memory, 1, 16, cfg.model.num_heads, cfg.model.head_dim, torch.float32)
            for _ in range(cfg.model.num_layers)
        ]
        for k, (x, target, x0) in enumerate(xs):
            plan = plan_chunk(cfg, k)
            a, b = plan.latent_slice
            tokens = model.project_audio(gather_window(cfg, batch.audio[0], k))[:, a:b]
            step_kv = kv if context == "neighbor" else [Draft(layer) for layer in kv]
            v = model(x, batch.y[:, :, a:b], sigma * 1000, ctx, tokens, step_kv, plan.is_first)
            torch.testing.assert_close(((v - target) ** 2).mean(), per_chunk[k], rtol=1e-5, atol=1e-6)
            if context == "clean":
                model(x0, batch.y[:, :, a:b], torch.zeros(1), ctx, tokens, kv, plan.is_first)
        assert kv[0].chunks_written == CHUNKS  # drafts never advanced the cache


def test_sample_level_contexts_differ_from_neighbor_forcing_and_train():
    model = fresh_model(micro_config())
    batch = _batch(model)
    sigma = torch.tensor([0.9, 0.6])
    losses = {}
    for context in ("neighbor", "clean", "self"):
        model.zero_grad(set_to_none=True)
        loss, per_chunk = neighbor_forcing_loss(
            model, batch, _text(model), sigma, 3, torch.Generator().manual_seed(3), context=context
        )
        loss.backward()
        assert model.blocks[0].self_attn.q.weight.grad.abs().sum() > 0
        losses[context] = torch.stack(per_chunk).detach()
    for context in ("clean", "self"):
        torch.testing.assert_close(losses[context][0], losses["neighbor"][0])  # chunk 0 has no context yet
        assert (losses[context][1:] - losses["neighbor"][1:]).abs().min() > 0
    with pytest.raises(ValueError, match="context must be one of"):
        neighbor_forcing_loss(model, batch, _text(model), sigma, 2, torch.Generator(), context="diffusion")


def test_compressors_get_gradients_from_the_third_chunk_on():
    model = fresh_model(micro_config())
    batch = _batch(model)
    sigma = torch.tensor([0.9, 0.9])
    for chunks, expect in ((2, False), (3, True)):
        model.zero_grad(set_to_none=True)
        loss, _ = neighbor_forcing_loss(model, batch, _text(model), sigma, chunks, torch.Generator().manual_seed(0))
        loss.backward()
        grad = model.blocks[0].self_attn.memory_proj_k.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == expect


def test_rollout_refuses_too_few_latent_frames():
    model = fresh_model(micro_config())
    batch = _batch(model)
    with pytest.raises(ValueError, match="latent frames"):
        neighbor_forcing_loss(model, batch, _text(model), torch.tensor([0.5, 0.5]), CHUNKS + 1, torch.Generator())


def test_shifted_levels_put_more_mass_near_one():
    u = torch.linspace(0, 0.999, 1000)
    sigma = shifted_levels(u, 5.0)
    assert float(sigma[0]) == 0.0 and 0.99 < float(sigma[-1]) < 1.0
    assert float((sigma > 0.8333).float().mean()) == pytest.approx(0.5, abs=0.01)  # u > 0.5 <=> sigma > 5/6
    torch.testing.assert_close(shifted_levels(u, 1.0), u)


def test_uniform_loss_weights_change_nothing_and_a_mouth_weight_moves_the_loss():
    model = fresh_model(micro_config())
    batch = _batch(model)
    sigma = torch.tensor([0.9, 0.6])
    plain = _losses(model, batch, sigma)
    batch.weight = torch.full((2, 1, 1, LATENT, LATENT), 3.0)
    torch.testing.assert_close(_losses(model, batch, sigma), plain, rtol=1e-6, atol=0)
    batch.weight[:, :, :, 5:7, 3:5] += 4.0  # emphasise a few cells
    assert (_losses(model, batch, sigma) - plain).abs().min() > 0


def test_mouth_region_covers_the_mouth_cells_of_the_latent_grid():
    import numpy as np

    from liveact.data.face import NEUTRAL, FaceRenderer, Identity
    from liveact.data.measure import locate_mouth
    from liveact.training.encoded import mouth_region

    for seed in range(5):
        face = FaceRenderer(Identity.sample(np.random.default_rng(seed)), 64)(NEUTRAL)
        region = mouth_region(face, 8)
        y0, y1, x0, x1 = locate_mouth(face).box
        assert 2 <= int(region.sum()) <= 12  # a few cells of 64, around the mouth
        assert region[(y0 + y1) // 16, (x0 + x1) // 16] == 1.0
        assert region[:3].sum() == 0  # never the eyes or the hair
    assert mouth_region(np.zeros((64, 64, 3), np.uint8), 8).sum() == 0  # no face: no emphasis
