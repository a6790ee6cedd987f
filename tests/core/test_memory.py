"""ConvKV memory: fixed size forever, bounded RoPE positions, the update rule, export/import, FP8."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from liveact.config import ConfigError, MemoryConfig, get_preset
from liveact.memory import fp8
from liveact.memory.cache import LayerKV
from liveact.memory.compress import compress_tokens
from liveact.model.rope import Rope3D
from liveact.sampling.noise import SeededNoise
from liveact.sampling.stream import StreamingSampler
from liveact.testing import fresh_model, micro_config, synthetic_session


def _stream(config, chunks, seed=0, unbounded=False, latent=8, feats_chunks=None):
    model = fresh_model(config)
    cond, feats = synthetic_session(model, latent=latent, chunks=feats_chunks or chunks)
    sampler = StreamingSampler(model, cond, SeededNoise(seed), unbounded=unbounded)
    return sampler, feats


def test_cache_identical_shapes_and_bytes_after_chunk_3_and_500():
    sampler, feats = _stream(get_preset("tiny"), 500, latent=8)  # the tiny preset at 64x64
    ptrs = {n: kv.k.data_ptr() for n, kv in enumerate(sampler.memory.layers(0))}
    seen = {}
    for i in range(500):
        sampler.next_chunk(feats)
        if i + 1 in (3, 500):
            seen[i + 1] = (sampler.memory.tensor_shapes(), sampler.memory.nbytes())
    assert seen[3] == seen[500]
    assert seen[500][1] > 0
    # the storage was never reallocated
    assert ptrs == {n: kv.k.data_ptr() for n, kv in enumerate(sampler.memory.layers(0))}


def test_unbounded_baseline_grows():
    sampler, feats = _stream(micro_config(), 6, unbounded=True)
    sizes = []
    for _ in range(6):
        sampler.next_chunk(feats)
        sizes.append(sampler.memory.nbytes())
    steps = [b - a for a, b in itertools.pairwise(sizes)]
    assert all(s > 0 for s in steps) and len(set(steps)) == 1  # grows by one chunk every chunk


def test_rope_positions_bounded_by_slot_count():
    """With a RoPE table of exactly the slot count, 40 chunks run; one position more would raise."""
    cfg = micro_config()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, rope_table_len=cfg.memory.total_slots))
    sampler, feats = _stream(cfg, 40)
    for _ in range(40):
        sampler.next_chunk(feats)
    rope = Rope3D(cfg.model)
    x = torch.zeros(1, 9 * 16, cfg.model.num_heads, cfg.model.head_dim)
    with pytest.raises(ValueError, match="exceeds the table length"):
        rope.apply(x, t0=cfg.memory.persistent_slots, frames=9, rows=4, cols=4)


def test_causality_future_audio_changes_nothing_before():
    """Chunk n's window ends at its last output frame (+2 taps): later audio cannot reach it."""
    cfg = micro_config()
    n = 3
    a, feats = _stream(cfg, 5)
    b, _ = _stream(cfg, 5)
    end_of_n = 21 + 32 * n  # exclusive end of chunk n's output frames (= end of its window)
    tampered = feats.clone()
    tampered[end_of_n + 2 :] += 1.0  # beyond the +2 taps of chunk n's last window frame
    outs_a = [a.next_chunk(feats).latent for _ in range(5)]
    outs_b = [b.next_chunk(tampered).latent for _ in range(5)]
    for i in range(n + 1):
        assert torch.equal(outs_a[i], outs_b[i]), f"chunk {i} changed"
    assert not torch.equal(outs_a[n + 1], outs_b[n + 1])


@pytest.mark.parametrize("split_at", [1, 2, 5])
def test_export_import_mid_stream_is_bitwise(split_at):
    cfg = micro_config()
    total = 8
    ref, feats = _stream(cfg, total)
    expected = [ref.next_chunk(feats).latent for _ in range(total)]

    first, _ = _stream(cfg, total)
    for _ in range(split_at):
        first.next_chunk(feats)
    state = first.export_memory()
    rng = first.noise.get_state()
    fl = first.memory.frame_tokens
    sink_tokens, rest_tokens = cfg.memory.sink_slots * fl, (cfg.memory.persistent_slots - cfg.memory.sink_slots) * fl
    assert (state["step0.layer0.sink.k"].shape[1], state["step0.layer0.k"].shape[1]) == (sink_tokens, rest_tokens)
    assert int(state["chunks_written"]) == split_at

    resumed, _ = _stream(cfg, total, seed=999)  # fresh process-like state, other seed
    resumed.import_memory(state)
    resumed.noise.set_state(rng)
    rest = [resumed.next_chunk(feats).latent for _ in range(total - split_at)]
    for i, got in enumerate(rest):
        assert torch.equal(got, expected[split_at + i]), f"chunk {split_at + i} differs after resume"


def test_import_refuses_mismatched_state():
    sampler, feats = _stream(micro_config(), 3)
    sampler.next_chunk(feats)
    state = sampler.export_memory()
    state.pop("step2.layer0.v")
    with pytest.raises(ValueError, match=r"missing \['step2.layer0.v'\]"):
        sampler.import_memory(state)


def test_compressor_at_one_fifth_equals_mean():
    x = torch.randn(2, 5 * 24, 3, 8)
    w = torch.full((24, 1, 5), 1 / 5)
    assert torch.allclose(compress_tokens(x, w, 5), compress_tokens(x, None, 5), atol=1e-6, rtol=0)
    # and a whole rollout: learned conv at its 1/5 initialisation vs the mean variant
    conv, feats = _stream(micro_config(compressor="conv"), 5)
    mean, _ = _stream(micro_config(compressor="mean"), 5)
    for _ in range(5):
        lc, lm = conv.next_chunk(feats).latent, mean.next_chunk(feats).latent
        assert (lc - lm).abs().max().item() <= 1e-5


def test_compression_groups_are_raster_token_runs():
    """Output token m of a compressed slot mixes input tokens 5m..5m+4 (straddling rows and slots)."""
    x = torch.zeros(1, 5 * 6, 1, 2)
    x[0, 7, 0, :] = 1.0  # token 7 of the 5-slot run lands in output token 1
    out = compress_tokens(x, None, 5)
    assert out[0, :, 0, 0].nonzero().flatten().tolist() == [1]


def test_update_rule_moves_slots_as_documented():
    cfg = MemoryConfig(compressor="mean")
    kv = LayerKV(cfg, batch=1, frame_tokens=1, heads=1, head_dim=1, dtype=torch.float64)

    def chunk(values):
        t = torch.tensor(values, dtype=torch.float64).view(1, -1, 1, 1)
        return kv.append(t, t, None, None)

    chunk([0, 1, 2, 3, 4, 5])
    chunk([10, 11, 12, 13, 14, 15, 16, 17])
    view = chunk([20, 21, 22, 23, 24, 25, 26, 27])
    k = view.k.flatten().tolist()
    assert k[:2] == [0, 1]  # sink
    assert k[2] == pytest.approx((2 + 3 + 4 + 5 + 10) / 5)  # old 2-5 + previous frame 0
    assert k[3] == pytest.approx((11 + 12 + 13 + 14 + 15) / 5)  # previous frames 1-5
    assert k[4:6] == [16, 17]  # previous frames 6-7 raw
    assert k[6:] == [20, 21, 22, 23, 24, 25, 26, 27]
    assert (view.key_frames, view.query_t0) == (14, 6)


def test_wrong_chunk_length_is_refused():
    kv = LayerKV(MemoryConfig(), 1, 4, 1, 2, torch.float32)
    with pytest.raises(ValueError, match="chunk 0 must have 6 latent frames"):
        kv.append(torch.zeros(1, 8 * 4, 1, 2), torch.zeros(1, 8 * 4, 1, 2), None, None)


def test_layout_that_does_not_tile_is_refused():
    with pytest.raises(ConfigError, match="does not tile"):
        MemoryConfig(chunk_frames=9)


def test_fp8_roundtrip_error_within_stated_bound():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 4, 32, generator=g) * torch.logspace(-3, 3, 64).view(1, 64, 1, 1)
    q, scale = fp8.quantize(x)
    err = (fp8.dequantize(q, scale, torch.float32) - x).abs()
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (2, 64, 4, 1)
    assert bool((err <= fp8.roundtrip_bound(x)).all())
    assert err.max().item() > 0  # it is lossy: the bound is being exercised
    # relative to each (token, head)'s amax, the worst error is at most 1/16
    rel = (err / x.abs().amax(-1, keepdim=True)).max().item()
    assert rel <= 1 / 16


def test_fp8_session_runs_resumes_and_is_smaller():
    cfg8 = micro_config(fp8=True)
    s8, feats = _stream(cfg8, 6)
    s32, _ = _stream(micro_config(), 6)
    ratio = s8.memory.nbytes() / s32.memory.nbytes()
    head_dim = cfg8.model.head_dim
    assert ratio == pytest.approx((1 + 4 / head_dim) / 4)
    for _ in range(4):
        s8.next_chunk(feats)
    state = s8.export_memory()
    assert state["step0.layer0.k"].dtype == torch.float8_e4m3fn and "step0.layer0.k_scale" in state
    rng = s8.noise.get_state()
    expected = [s8.next_chunk(feats).latent for _ in range(2)]
    again, _ = _stream(cfg8, 6)
    again.import_memory(state)
    again.noise.set_state(rng)
    assert all(torch.equal(again.next_chunk(feats).latent, e) for e in expected)


def test_liveact_18b_state_sizes_follow_the_method_doc():
    from liveact.config import get_preset
    from liveact.memory.sizing import session_state

    s = session_state(get_preset("liveact-18b"), 720, 416)
    assert s.frame_tokens == 1170
    assert s.resident_cache_bytes == 40_255_488_000  # 37.49 GiB, liveact-method.md section 9
    assert s.checkpoint_cache_bytes == 17_252_352_000  # 6 of 14 slots
    assert session_state(get_preset("liveact-18b"), 720, 416, tp=2).per_rank_checkpoint_bytes == 8_626_176_000
    assert s.conditioning_bytes == 2_620_800 + 7_874_560  # y + projected context (what a checkpoint stores)
    assert s.decoder_context_bytes == 449_280


def test_sliding_window_never_attends_the_compressed_slots():
    """compressor 'none': from chunk 2 on, whatever sits in the compressed slots changes nothing."""
    from liveact.model.attention import SelfAttention

    outputs = {}
    for compressor in ("none", "mean"):
        cfg = micro_config(compressor=compressor)
        m = cfg.model
        torch.manual_seed(0)
        attn = SelfAttention(m, cfg.memory.compress_group)
        rope = Rope3D(m)
        kv = LayerKV(cfg.memory, 1, 16, m.num_heads, m.head_dim, torch.float32)
        g = torch.Generator().manual_seed(1)
        for chunk in range(3):
            frames = cfg.memory.chunk_latent_frames(chunk)
            attn(torch.randn(1, frames * 16, m.dim, generator=g), (frames, 4, 4), kv, rope)
        x = torch.randn(1, cfg.memory.chunk_frames * 16, m.dim, generator=g)
        results = []
        for garbage in (0.0, 100.0):
            trial = LayerKV(cfg.memory, 1, 16, m.num_heads, m.head_dim, torch.float32)
            trial.k, trial.v = kv.k.clone(), kv.v.clone()
            trial.chunks_written, trial.compacted = kv.chunks_written, kv.compacted
            trial.compact(*attn.compressor_weights())
            a, b = cfg.memory.sink_slots * 16, (cfg.memory.sink_slots + cfg.memory.compressed_slots) * 16
            trial.k[:, a:b] += garbage
            trial.v[:, a:b] += garbage
            with torch.no_grad():
                results.append(attn(x, (cfg.memory.chunk_frames, 4, 4), trial, rope))
        outputs[compressor] = results
    torch.testing.assert_close(outputs["none"][0], outputs["none"][1], rtol=0, atol=0)
    assert (outputs["mean"][0] - outputs["mean"][1]).abs().max() > 1e-3  # with memory, the slots matter


def test_sliding_window_streams_in_constant_memory():
    sampler, feats = _stream(micro_config(compressor="none"), 12)
    sizes = []
    for _ in range(12):
        result = sampler.next_chunk(feats)
        sizes.append(sampler.memory.nbytes())
        assert torch.isfinite(result.latent).all()
    assert len(set(sizes)) == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fp8_dequantize_is_the_float32_product_without_a_float32_copy(dtype: torch.dtype) -> None:
    from liveact.memory import fp8
    from liveact.plan.ledger import DEVICE, ByteLedger

    x = torch.randn(2, 300, 4, 64, generator=torch.Generator().manual_seed(3)) * 5
    q, scale = fp8.quantize(x)
    assert torch.equal(fp8.dequantize(q, scale, dtype), (q.float() * scale).to(dtype))
    big_q = torch.empty(1, 16380, 40, 128, dtype=fp8.FP8_DTYPE, device="meta")  # liveact-18b, 14 slots, 416x720
    big_scale = torch.empty(1, 16380, 40, 1, device="meta")
    ledger = ByteLedger()
    with ledger:
        ledger.track([big_q, big_scale])
        with ledger.phase("dequantize") as p:
            out = fp8.dequantize(big_q, big_scale, dtype)
    assert p.peak[DEVICE] - p.start[DEVICE] == out.nbytes  # the result, nothing else


def test_sink_slots_export_apart_and_never_change_after_chunk_0():
    """What lets a checkpoint store share the sink between versions: its bytes are fixed by chunk 0."""
    sampler, feats = _stream(micro_config(fp8=True), 5)
    exports = []
    for _ in range(5):
        sampler.next_chunk(feats)
        exports.append(sampler.export_memory())
    sinks = [n for n in exports[0] if ".sink." in n]
    assert sorted({n.rsplit(".", 1)[1] for n in sinks}) == ["k", "k_scale", "v", "v_scale"]
    for n in sinks:
        assert all(torch.equal(e[n].view(torch.uint8), exports[0][n].view(torch.uint8)) for e in exports), n
    rest = "step0.layer0.k"
    assert not torch.equal(exports[3][rest].view(torch.uint8), exports[4][rest].view(torch.uint8))
