"""``liveact bench gpu``: a real tiny run on the CPU, a clean skip without CUDA, a small bf16 run on a GPU."""

from __future__ import annotations

import json

import pytest
import torch

from liveact.cli.main import main
from liveact.config import get_preset
from liveact.model.flops import chunk_flops
from liveact.sampling.chunking import video_frames_per_chunk

TINY_CPU = ["bench", "gpu", "--device", "cpu", "--preset", "tiny", "--resolutions", "64x64", "--json"]
REL = 1e-9  # figures derived from the same floats
MS_ROUNDING = 5e-4  # per-chunk milliseconds are printed to 3 decimals


def _run(capsys, *args: str) -> tuple[int, dict]:
    rc = main(list(args))
    return rc, json.loads(capsys.readouterr().out)


def test_tiny_on_cpu_figures_are_consistent(capsys):
    rc, data = _run(capsys, *TINY_CPU, "--chunks", "3", "--warmup", "1", "--threads", "1")
    assert rc == 0 and data["skipped"] is False
    assert data["dtype"] == "fp32" and data["fp8_kv"] is False and data["device_name"] == "cpu"
    assert data["attention_backend"] not in ("unknown", "") and not data["attention_backend"].startswith("none")
    (res,) = data["resolutions"]
    assert res["frame_tokens"] == 16 and res["latent_hw"] == [8, 8]
    assert res["timed_chunk_indices"] == [1, 3] and len(res["ms_per_chunk"]) == 3 and len(res["warmup_ms"]) == 1
    assert 0 < res["ms_per_chunk_median"] <= res["ms_per_chunk_p90"] <= max(res["ms_per_chunk"])
    seconds = res["seconds_timed"]
    assert sum(res["ms_per_chunk"]) / 1000 == pytest.approx(seconds, abs=len(res["ms_per_chunk"]) * MS_ROUNDING)

    config = get_preset("tiny")
    flops = sum(chunk_flops(config, 64, 64, i).total for i in (1, 2, 3))
    frames = sum(video_frames_per_chunk(config, i) for i in (1, 2, 3))
    assert res["flops_timed"] == flops and res["video_frames_timed"] == frames
    assert res["flops_per_steady_chunk"] == chunk_flops(config, 64, 64, 2).total
    assert res["fps"] > 0 and res["fps"] == pytest.approx(frames / seconds, rel=REL)
    assert res["tflops"] > 0 and res["tflops"] == pytest.approx(flops / seconds / 1e12, rel=REL)
    assert res["peak_memory_bytes"] is None and res["cache_bytes"] > 0


def test_fp8_kv_flag_reaches_the_caches(capsys):
    args = [*TINY_CPU, "--chunks", "1", "--warmup", "0", "--threads", "1"]
    _, plain = _run(capsys, *args, "--no-fp8-kv")
    _, fp8 = _run(capsys, *args, "--fp8-kv")
    assert plain["fp8_kv"] is False and fp8["fp8_kv"] is True
    # e4m3 values (1 byte) + one fp32 scale per (token, head) against 4-byte values
    assert fp8["resolutions"][0]["cache_bytes"] < plain["resolutions"][0]["cache_bytes"] / 2


def test_bad_resolution_is_a_clear_error(capsys):
    assert main([*TINY_CPU[:-3], "--resolutions", "65x64"]) == 2
    assert "multiples of 16" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available: the default run would not skip")
def test_default_run_skips_cleanly_without_cuda(capsys):
    rc, data = _run(capsys, "bench", "gpu", "--json")
    assert rc == 0
    assert data["skipped"] is True and "CUDA is not available" in data["reason"]
    assert data["preset"] == "liveact-18b" and data["device"] == "cuda" and "resolutions" not in data


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_bf16_on_gpu(capsys):
    rc, data = _run(
        capsys, "bench", "gpu", "--preset", "tiny", "--resolutions", "64x64", "--chunks", "3", "--warmup", "2", "--json"
    )
    assert rc == 0 and data["skipped"] is False and data["dtype"] == "bf16"
    assert data["attention_backend"] in ("flash", "efficient", "cudnn")
    (res,) = data["resolutions"]
    assert res["peak_memory_bytes"] >= data["weights_bytes"] > 0
    assert res["ms_per_chunk_median"] > 0 and res["tflops"] > 0
    assert res["tflops"] == pytest.approx(res["flops_timed"] / res["seconds_timed"] / 1e12, rel=REL)
