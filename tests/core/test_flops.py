"""``liveact.model.flops`` against ``FlopCounterMode`` on real CPU chunks, and the liveact-18b count's plausibility.

The counter runs over whole ``StreamingSampler.next_chunk`` calls of the tiny preset (audio projection,
3 forwards against the per-step ConvKV caches) with the math attention kernel, whose QK^T and PV
products it counts as bmm (the CPU flash kernel is not in its table). Its per-module, per-op counts
are grouped into the formula's components, so a missing or wrong term fails the component it belongs
to, not only the total.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from liveact.cli.info import RESOLUTIONS
from liveact.config import LiveActConfig, get_preset
from liveact.model.flops import (
    FIRST_COMPACTING_CHUNK,
    chunk_flops,
    frame_tokens,
    latent_grid,
    steady_chunk_flops,
)
from liveact.model.loading import build_model
from liveact.sampling.chunking import total_video_frames, video_frames_per_chunk
from liveact.sampling.denoise import Conditioning
from liveact.sampling.noise import SeededNoise
from liveact.sampling.stream import StreamingSampler

REL_TOL = 0.02  # per component and in total (on torch 2.13 the two agree exactly)
CHUNKS = FIRST_COMPACTING_CHUNK + 2  # chunk 0, chunk 1 (no update yet), two steady-state chunks
MATMUL_OPS = {"mm", "addmm"}
ATTENTION_OPS = {"bmm", "baddbmm"}  # the math SDPA kernel's QK^T and PV
CONV_OPS = {"convolution", "_convolution"}
BLOCK_PARTS = ("self_attn", "cross_attn", "audio_cross_attn")
TOP_LEVEL = {  # FlopCounterMode module name -> formula component
    "LiveActDiT.patch_embedding": "patch_embedding",
    "LiveActDiT.time_embedding": "time_embedding",
    "LiveActDiT.time_projection": "time_embedding",
    "LiveActDiT.head": "head",
    "AudioProjModel": "audio_proj",  # model.audio_proj is called by project_audio, outside forward
}


def _sampler(config: LiveActConfig, width: int, height: int) -> tuple[StreamingSampler, torch.Tensor]:
    m = config.model
    model = build_model(config).init_weights(0).eval()
    lat_h, lat_w = latent_grid(config, width, height)
    g = torch.Generator().manual_seed(1)
    y = torch.randn(1, m.cond_channels, config.memory.window_latent_frames, lat_h, lat_w, generator=g)
    feats = torch.randn(total_video_frames(config, CHUNKS), m.audio_layers, m.audio_channels, generator=g)
    with torch.no_grad():
        context = model.encode_context(
            [torch.randn(5, m.text_dim, generator=g)], torch.randn(1, m.clip_tokens, m.clip_dim, generator=g)
        )
        sampler = StreamingSampler(model, Conditioning(y=y, context=context), SeededNoise(0))
    return sampler, feats


def _components(counter: FlopCounterMode, layers: int) -> dict[str, int]:
    """The counter's per-module, per-op FLOPs grouped as the formula's components."""
    counts = counter.get_flop_counts()
    out: dict[str, int] = defaultdict(int)
    for module, name in TOP_LEVEL.items():
        out[name] += sum(counts.get(module, {}).values())
    for layer in range(layers):
        prefix = f"LiveActDiT.blocks.{layer}"
        for part in BLOCK_PARTS:
            for op, flops in counts.get(f"{prefix}.{part}", {}).items():
                kind = op.__name__
                if kind in MATMUL_OPS:
                    out[f"{part}.proj"] += flops
                elif kind in ATTENTION_OPS:
                    out[f"{part}.attention"] += flops
                elif kind in CONV_OPS and part == "self_attn":
                    out["self_attn.convkv_compress"] += flops
                else:
                    raise AssertionError(f"unexpected op {kind} in {prefix}.{part}")
        out["ffn"] += sum(counts.get(f"{prefix}.ffn", {}).values())
    return dict(out)


def _check_rollout(config: LiveActConfig, width: int, height: int) -> list[int]:
    sampler, feats = _sampler(config, width, height)
    totals = []
    for index in range(CHUNKS):
        with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
            sampler.next_chunk(feats)
        want = chunk_flops(config, width, height, index)
        counted_total = counter.get_total_flops()
        got = _components(counter, config.model.num_layers)
        assert sum(got.values()) == counted_total, "some counted FLOPs belong to no component"
        expected = {k: v for k, v in want.components().items() if v}
        assert set(got) - {k for k, v in got.items() if not v} == set(expected), (index, got, expected)
        for name, value in expected.items():
            assert abs(got[name] - value) <= REL_TOL * value, (index, name, got[name], value)
        assert abs(counted_total - want.total) <= REL_TOL * want.total, (index, counted_total, want.total)
        totals.append(want.total)
    return totals


def test_formula_matches_flop_counter_chunk0_and_steady_state():
    """Non-square on purpose (64 wide, 96 high), so a swapped latent height/width shows."""
    config = get_preset("tiny")
    totals = _check_rollout(config, 64, 96)
    first, second, *steady = totals
    assert first < second < steady[0] == steady[-1]  # chunk 0: 6 frames and 6 key slots; the update from chunk 2


def test_formula_matches_flop_counter_with_audio_cfg():
    """Audio CFG adds a null-audio forward (with audio cross-attention) at steps 1 and 2."""
    tiny = get_preset("tiny")
    config = dataclasses.replace(tiny, sampler=dataclasses.replace(tiny.sampler, audio_cfg=1.7))
    _check_rollout(config, 64, 64)
    assert len(chunk_flops(config, 64, 64, FIRST_COMPACTING_CHUNK).forwards) == 5


def test_18b_count_is_plausible_for_its_parameter_count():
    """~2 FLOPs per parameter per query token per step, give or take attention and the context-only layers."""
    config = get_preset("liveact-18b")
    params = build_model(config, device="meta").num_parameters()
    # liveact-method.md section 3: fl = 1170 at 416x720, 1024 at 512x512
    assert [frame_tokens(config, w, h) for w, h in RESOLUTIONS] == [1170, 1024]
    for width, height in RESOLUTIONS:
        chunk = steady_chunk_flops(config, width, height)
        dense = 2 * params * chunk.query_tokens * config.sampler.num_steps
        print(f"liveact-18b {width}x{height}: {chunk.total:.4e} FLOPs per chunk, dense estimate {dense:.4e}")
        assert 0.5 * dense < chunk.total < 2 * dense
        assert chunk.query_tokens == config.memory.chunk_frames * chunk.frame_tokens
        assert chunk.key_tokens == config.memory.total_slots * chunk.frame_tokens
    # the public figure: 27.2 TFLOPs per video frame at 512x512 (liveact-method.md sections 6 and 8)
    per_frame = steady_chunk_flops(config, 512, 512).total / video_frames_per_chunk(config, FIRST_COMPACTING_CHUNK)
    assert per_frame == pytest.approx(27.2e12, rel=0.25)


@pytest.mark.parametrize(("context", "compressor", "forwards"), [("clean", "conv", 4), ("neighbor", "none", 3)])
def test_formula_matches_flop_counter_for_the_ablations(context, compressor, forwards):
    """Sample-level context: one shared cache (compacted once) and a clean re-encoding forward at t = 0.
    Sliding window: no compression, and the compressed slots' keys are left out."""
    tiny = get_preset("tiny")
    config = dataclasses.replace(
        tiny,
        sampler=dataclasses.replace(tiny.sampler, context=context),
        memory=dataclasses.replace(tiny.memory, compressor=compressor),
    )
    _check_rollout(config, 64, 64)
    assert len(chunk_flops(config, 64, 64, FIRST_COMPACTING_CHUNK).forwards) == forwards
