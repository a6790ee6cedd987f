"""Checkpoints per tensor-parallel rank: TP=2 -> TP=2 bitwise, re-sharded to TP=1 within fp32 tolerance."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from safetensors.torch import load_file

from liveact.parallel.launch import build_inputs, run_torchrun
from liveact.parallel.reshard import ReshardError, reshard
from liveact.parallel.shm import shm_buffers
from liveact.sampling.state import restore_sampler
from liveact.testing import tp_test_config

CHUNKS, SPLIT = 5, 2
TOLERANCE = 1e-4  # fp32, the all-reduce order of another degree


def test_reshard_concatenates_and_splits_heads():
    g = torch.Generator().manual_seed(0)
    whole = torch.randn(1, 12, 8, 4, generator=g)  # (B, tokens, heads, D)
    scales = torch.rand(1, 12, 8, 1, generator=g)
    fp8 = whole.to(torch.float8_e4m3fn)
    noise = torch.arange(10, dtype=torch.uint8)
    ranks = [
        {"memory.step0.layer0.k": w, "memory.step0.layer0.k_scale": s, "memory.step0.layer0.v": f, "noise.state": noise}
        for w, s, f in zip(whole.chunk(2, 2), scales.chunk(2, 2), fp8.chunk(2, 2), strict=True)
    ]
    one = reshard(ranks, 1)[0]
    assert torch.equal(one["memory.step0.layer0.k"], whole) and torch.equal(one["memory.step0.layer0.k_scale"], scales)
    assert one["memory.step0.layer0.v"].view(torch.uint8).equal(fp8.view(torch.uint8))  # FP8 bits kept
    four = reshard(ranks, 4)
    assert [t["memory.step0.layer0.k"].shape[2] for t in four] == [2, 2, 2, 2]
    assert torch.equal(torch.cat([t["memory.step0.layer0.k"] for t in four], 2), whole)
    with pytest.raises(ReshardError, match="do not split"):
        reshard(ranks, 3)
    ranks[1] = {**ranks[1], "noise.state": noise + 1}
    with pytest.raises(ReshardError, match=r"noise\.state should be the same"):
        reshard(ranks, 1)


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_tp2_checkpoint_resumes_at_tp2_bitwise_and_resharded_at_tp1(tmp_path):
    before = shm_buffers()
    states = tmp_path / "states"
    full = run_torchrun(
        tmp_path / "full.safetensors", 2, CHUNKS, extra=("--export-after", str(SPLIT), "--state-dir", str(states))
    )
    assert full.returncode == 0, full.stderr[-3000:]
    resumed = run_torchrun(tmp_path / "resumed.safetensors", 2, CHUNKS, extra=("--resume-from", str(states)))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert shm_buffers() - before == set()
    want, got = load_file(str(tmp_path / "full.safetensors")), load_file(str(tmp_path / "resumed.safetensors"))
    for k in range(SPLIT, CHUNKS):
        assert torch.equal(got[f"chunk{k}"], want[f"chunk{k}"]), f"chunk {k} differs after a TP=2 resume"

    rank_states = [load_file(str(states / f"rank{r}.safetensors")) for r in range(2)]
    (single,) = reshard(rank_states, 1)
    model, _, feats = build_inputs(tp_test_config(), CHUNKS)  # the conditioning comes from the state
    sampler = restore_sampler(model, single, torch.device("cpu"))
    assert sampler.chunk_index == SPLIT
    diffs = []
    for k in range(SPLIT, CHUNKS):
        diffs.append(float((sampler.next_chunk(feats).latent - want[f"chunk{k}"]).abs().max()))
    print(f"TP=2 checkpoint re-sharded to TP=1: max abs diff {max(diffs):.3e} over chunks {SPLIT}..{CHUNKS - 1}")
    assert max(diffs) <= TOLERANCE
