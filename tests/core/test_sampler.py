"""The chunked loop: chunk plan, samplers, noise sources, audio CFG, input checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from liveact.config import ConfigError, SamplerConfig, get_preset
from liveact.sampling.audio_window import gather_window, window_index
from liveact.sampling.chunking import chunks_for_frames, plan_chunk, total_video_frames
from liveact.sampling.noise import RecordedNoise, SeededNoise
from liveact.sampling.schedule import step_coefficients
from liveact.sampling.stream import StreamingSampler
from liveact.testing import fresh_model, micro_config, synthetic_session


def test_chunk_plan_matches_public_loop():
    cfg = get_preset("liveact-18b")
    p0, p1, p2 = (plan_chunk(cfg, i) for i in range(3))
    assert (p0.latent_frames, p0.video_frames, p0.latent_slice, p0.query_slot_start) == (6, (0, 21), (0, 6), 0)
    assert (p1.latent_frames, p1.video_frames, p1.latent_slice, p1.query_slot_start) == (8, (21, 53), (6, 14), 6)
    assert (p1.audio_window_start, p2.audio_window_start, plan_chunk(cfg, 4).audio_window_start) == (0, 32, 96)
    assert chunks_for_frames(cfg, 140) == 5 and total_video_frames(cfg, 5) == 149
    assert total_video_frames(cfg, chunks_for_frames(cfg, 5 * 24)) == 117  # 5 s at 24 fps (public README)


def test_window_clamps_at_both_ends():
    cfg = get_preset("tiny")
    idx = window_index(cfg, 0, 10)
    assert idx.shape == (53, 5)
    assert idx[0].tolist() == [0, 0, 0, 1, 2] and idx[-1].tolist() == [9] * 5


def test_bad_feature_shape_is_refused():
    with pytest.raises(ValueError, match=r"audio features must be \(frames, 4, 32\)"):
        gather_window(get_preset("tiny"), torch.zeros(100, 12, 768), 0)


def test_coefficients_in_float32():
    c = step_coefficients(SamplerConfig())
    assert [x.keep for x in c] == [0.0625, 0.1666666865348816, 1.0]
    assert [x.noise for x in c] == [0.9375, 0.8333333134651184, 0.0]


def test_timesteps_must_decrease():
    with pytest.raises(ConfigError, match="decrease"):
        SamplerConfig(timesteps=(1000.0, 1000.0))


def _with_sampler(**kw):
    cfg = micro_config()
    return dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, **kw))


@pytest.mark.parametrize("kind,draws_per_chunk", [("x0_renoise", 4), ("euler", 1)])
def test_draws_per_chunk(kind, draws_per_chunk):
    cfg = _with_sampler(kind=kind)
    model = fresh_model(cfg)
    cond, feats = synthetic_session(model, chunks=2)
    shapes = [(1, 16, 6, 8, 8)] + [(1, 16, 6, 8, 8)] * (draws_per_chunk - 1)
    noise = RecordedNoise([torch.randn(s) for s in shapes])
    StreamingSampler(model, cond, noise).next_chunk(feats)
    assert noise.remaining() == 0


def test_seeded_noise_is_reproducible_and_seed_sensitive():
    cfg = micro_config()
    model = fresh_model(cfg)
    cond, feats = synthetic_session(model, chunks=2)
    run = lambda seed: StreamingSampler(model, cond, SeededNoise(seed)).next_chunk(feats).latent  # noqa: E731
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_seeded_noise_equals_global_seed_stream():
    """SeededNoise(s) draws what torch.manual_seed(s) + randn would (the fixture's recipe)."""
    torch.manual_seed(42)
    ref = torch.randn(16, 6, 8, 12)
    assert torch.equal(SeededNoise(42).draw((1, 16, 6, 8, 12))[0], ref)


def test_audio_cfg_uses_separate_null_caches():
    cfg = _with_sampler(audio_cfg=1.7)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_layers=2))
    model = fresh_model(cfg)
    cond, feats = synthetic_session(model, chunks=3)
    sampler = StreamingSampler(model, cond, SeededNoise(0))
    assert sorted(sampler.memory.null) == [1, 2]
    sampler.next_chunk(feats)
    r = sampler.next_chunk(feats, record=True)
    assert r.steps[0].v_null is None  # audio skipped at step 0: no CFG there
    for st in r.steps[1:]:
        assert torch.allclose(st.v, st.v_null + 1.7 * (st.v_cond - st.v_null), atol=1e-6)
        assert not torch.equal(st.v_cond, st.v_null)
    # layer 0's K/V precede any audio; from layer 1 on the null-audio stream differs
    null_k = sampler.memory.layers(1, null=True)[1].k
    cond_k = sampler.memory.layers(1)[1].k
    assert null_k.abs().sum() > 0 and not torch.equal(null_k, cond_k)


def test_audio_changes_output_but_not_at_step_zero():
    cfg = micro_config()
    model = fresh_model(cfg)
    cond, feats = synthetic_session(model, chunks=2)
    a = StreamingSampler(model, cond, SeededNoise(0)).next_chunk(feats, record=True)
    b = StreamingSampler(model, cond, SeededNoise(0)).next_chunk(feats * 0, record=True)
    assert torch.equal(a.steps[0].v, b.steps[0].v)  # step 0 skips audio
    assert not torch.equal(a.steps[1].v, b.steps[1].v)


def test_conditioning_of_wrong_length_is_refused():
    model = fresh_model(micro_config())
    cond, _ = synthetic_session(model)
    cond.y = cond.y[:, :, :10]
    with pytest.raises(ValueError, match="must span 14 latent frames"):
        StreamingSampler(model, cond, SeededNoise(0))


def test_clean_context_shares_one_cache_and_commits_each_chunk_once():
    """The sample-level ablation: one cache for all steps, one committing (t = 0) forward per chunk."""
    outputs = {}
    for context in ("neighbor", "clean", "clean"):
        cfg = _with_sampler(context=context)
        model = fresh_model(cfg)
        cond, feats = synthetic_session(model, chunks=4)
        sampler = StreamingSampler(model, cond, SeededNoise(0))
        latents = [sampler.next_chunk(feats).latent for _ in range(4)]
        assert len(sampler.memory.steps) == (3 if context == "neighbor" else 1)
        assert sampler.memory.chunks_written == 4
        assert all(torch.isfinite(x).all() for x in latents)
        outputs.setdefault(context, []).append(latents)
    torch.testing.assert_close(outputs["clean"][0], outputs["clean"][1], rtol=0, atol=0)  # deterministic
    torch.testing.assert_close(outputs["clean"][0][0], outputs["neighbor"][0][0])  # chunk 0: no context yet
    assert (outputs["clean"][0][1] - outputs["neighbor"][0][1]).abs().max() > 1e-4


def test_clean_context_refuses_audio_cfg():
    with pytest.raises(ConfigError, match="audio CFG needs per-step null caches"):
        SamplerConfig(context="clean", audio_cfg=1.5)
