"""The dry run: one session of the serving code on meta, checked against sizes known another way."""

from __future__ import annotations

import json

import pytest
import torch

import liveact.memory.cache as cache_module
from liveact.cli.main import main
from liveact.memory.sizing import session_state
from liveact.model.loading import build_model
from liveact.plan.dryrun import CONDITIONING, SNAPSHOT, PlanCase, dry_run, dry_run_decoder
from liveact.plan.ledger import PlacementError
from liveact.plan.table import (
    CUDA_CONTEXT_BYTES,
    FRAGMENTATION_SHARE,
    GPUS,
    WORKSPACE_BYTES,
    Gpu,
    max_sessions,
    peak_bytes,
    row,
)
from liveact.sampling.denoise import Conditioning
from liveact.sampling.noise import SeededNoise
from liveact.sampling.state import export_sampler
from liveact.sampling.stream import StreamingSampler

TINY = PlanCase(preset="tiny", width=64, height=64)


@pytest.mark.parametrize("kv", ["bf16", "fp8"])
def test_caches_and_checkpoint_match_the_real_session(kv: str) -> None:
    case = PlanCase(preset="tiny", width=64, height=64, kv_cache=kv)
    run = dry_run(case)
    config = case.config()
    assert run.cache == session_state(config, 64, 64, kv).per_rank_resident_bytes
    # the same session for real on the CPU: its checkpoint copy has the bytes the dry run counted on the host
    model = build_model(config).init_weights(0).to_runtime_dtype(torch.bfloat16).eval()
    m = config.model
    y = torch.zeros(1, m.in_dim - m.latent_channels, config.memory.window_latent_frames, 8, 8, dtype=torch.bfloat16)
    context = torch.zeros(1, m.clip_tokens + m.text_len, m.dim, dtype=torch.bfloat16)
    sampler = StreamingSampler(model, Conditioning(y, context), SeededNoise(0))
    features = torch.zeros(1, 81, m.audio_window, m.audio_layers, m.audio_channels)
    for _ in range(3):
        sampler.next_chunk(features)
    real = sum(t.nbytes for t in export_sampler(sampler).values())
    assert run.checkpoint_host == real
    assert run.session_resident == sampler.memory.nbytes() + y.nbytes + context.nbytes
    assert run.phase(SNAPSHOT).transient < run.cache  # the copy goes to the host directly, not through the device


def test_peak_is_the_highest_phase_and_sessions_add_up() -> None:
    run = dry_run(TINY)
    assert run.peak == max(p.peak for p in run.phases)
    assert peak_bytes(run, 1) == run.peak
    two = peak_bytes(run, 2)
    assert two >= run.peak + run.session_resident
    total = int((two + CUDA_CONTEXT_BYTES + WORKSPACE_BYTES) / (1 - FRAGMENTATION_SHARE)) + 1
    tiny_gpu = Gpu("test", total_bytes=total, product_labels=())  # usable: just over two sessions' peak
    n = max_sessions(run, tiny_gpu.usable_bytes)
    assert n == 2
    assert peak_bytes(run, n) <= tiny_gpu.usable_bytes < peak_bytes(run, n + 1)
    r = row(run, dry_run_decoder("tiny", 64, 64), tiny_gpu, sessions=n + 1)
    assert (r.fits, r.headroom_bytes < 0, r.max_sessions) == (False, True, n)


def test_tensor_parallel_rank_holds_its_share() -> None:
    one, two = dry_run(TINY), dry_run(PlanCase(preset="tiny", width=64, height=64, tp=2))
    assert two.cache * 2 == one.cache
    # embeddings, head and audio projection are replicated: 0.63 of the tiny model (0.51 of liveact-18b)
    assert 0.5 < two.dit_weights / one.dit_weights < 0.65
    assert two.engine_weights == one.engine_weights  # rank 0 holds the VAE and encoders either way
    assert two.worker_peak < two.peak


def test_a_tensor_on_the_wrong_device_fails_the_dry_run_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = cache_module.compress_tokens

    def stray_bias(x: torch.Tensor, weight: torch.Tensor | None, group: int) -> torch.Tensor:
        out = real(x, weight, group)
        return out + torch.zeros(out.shape, dtype=out.dtype)  # made on the CPU, wherever the cache is

    monkeypatch.setattr(cache_module, "compress_tokens", stray_bias)
    with pytest.raises(PlacementError, match=r"aten\.add\.Tensor mixes device and host") as err:
        dry_run(TINY)  # chunk 2 runs the first compression
    assert "tests/plan/test_dryrun.py" in str(err.value) and "torch.zeros(out.shape" in str(err.value)


def test_cli_json_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--preset", "tiny", "--tp", "1,2", "--size", "64x64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    configs = out["configs"]
    assert len(configs) == 2 * 2 * len(GPUS)  # tp x kv x gpu
    for c in configs:
        assert c["fits"] == (c["peak_bytes_per_rank"] <= c["usable_bytes"])
        assert {
            "tp",
            "size",
            "kv_cache",
            "gpu",
            "peak_bytes_per_rank",
            "weights_bytes_per_rank",
            "cache_bytes_per_rank",
        } <= set(c)
    assert main(["plan", "--preset", "tiny", "--size", "64x60"]) == 2
    assert "multiples of 16" in capsys.readouterr().err
    assert main(["plan", "--preset", "tiny", "--tp", "3"]) == 2
    assert "does not divide" in capsys.readouterr().err
    assert main(["plan", "--preset", "tiny", "--kv-cache", "int4"]) == 2
    assert "--kv-cache 'int4'" in capsys.readouterr().err
    assert CONDITIONING in {p.name for p in dry_run(TINY).phases}


@pytest.mark.integration  # about 20 s: four dry runs of liveact-18b
def test_liveact_18b_at_416x720(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--tp", "1,2", "--size", "416x720", "--json"]) == 0
    configs = json.loads(capsys.readouterr().out)["configs"]
    by = {(c["tp"], c["kv_cache"], c["gpu"]): c for c in configs}
    h100 = [c for c in configs if c["gpu"] == "H100-80GB" and c["fits"]]
    assert h100, "no configuration of liveact-18b fits an H100 at 416x720"
    assert not by[1, "bf16", "H100-80GB"]["fits"]  # 35.5 GiB DiT + 13.8 encoders + 37.5 caches
    assert by[2, "bf16", "H100-80GB"]["fits"]
    for c in configs:
        assert c["fits"] == (c["peak_bytes_per_rank"] <= c["usable_bytes"])
    one, two = by[1, "bf16", "H200-141GB"], by[2, "bf16", "H200-141GB"]
    assert 0.5 < two["dit_weights_bytes_per_rank"] / one["dit_weights_bytes_per_rank"] < 0.52
    assert two["cache_bytes_per_rank"] * 2 == one["cache_bytes_per_rank"]
    assert one["cache_bytes_per_rank"] == session_state(PlanCase().config(), 416, 720, "bf16").resident_cache_bytes
    # Redis per session: the same at every tp (each rank's heads); a later version adds two thirds of the caches
    for kv in ("bf16", "fp8"):
        a, b = by[1, kv, "H200-141GB"], by[2, kv, "H200-141GB"]
        assert abs(a["redis_peak_bytes"] - b["redis_peak_bytes"]) < 0.001 * a["redis_peak_bytes"]
        assert 0.66 < a["redis_later_bytes"] / a["redis_first_bytes"] <= 0.70
        assert a["redis_peak_bytes"] == a["redis_first_bytes"] + 2 * a["redis_later_bytes"]  # 2 kept + 1 being written
        assert a["checkpoint_interval_s"] == pytest.approx(a["checkpoint_write_later_bytes_per_rank"] / 500e6, abs=0.01)
        assert b["checkpoint_write_later_bytes_per_rank"] < 0.51 * a["checkpoint_write_later_bytes_per_rank"]
    assert 16.0 * 2**30 < one["redis_first_bytes"] < 1.06 * one["checkpoint_write_first_bytes_per_rank"]
