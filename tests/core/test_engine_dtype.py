"""The DiT's runtime dtype and KV-cache storage (``--dtype``, ``--kv-cache``): bf16 runs on the CPU too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liveact.config import ConfigError, get_preset
from liveact.model.dit import FP32_PARAMETERS
from liveact.pipeline import load_engine, prepare_sampler
from liveact.pipeline.engine import runtime_config, runtime_dtype
from liveact.sampling.chunking import total_video_frames

CHUNKS = 3
# bf16 keeps 8 mantissa bits: the built-in model's latents stay within 6% (mean |difference| over mean |value|)
# of the fp32 run's; measured 0.035, 0.037, 0.038 over the 3 chunks (max |difference|: 2.2% to 4.6% of the range)
BF16_REL_TOL = 0.06


def rollout(engine) -> tuple[list[torch.Tensor], int]:
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    m = engine.config.model
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(total_video_frames(engine.config, CHUNKS), m.audio_layers, m.audio_channels, generator=g)
    sampler = prepare_sampler(engine, image, "", seed=3)
    with torch.no_grad():
        latents = [sampler.next_chunk(feats).latent.float() for _ in range(CHUNKS)]
    return latents, sampler.memory.nbytes()


def test_runtime_dtype_and_kv_cache_choices():
    assert runtime_dtype("cpu") == torch.float32
    assert runtime_dtype(torch.device("cuda")) == torch.bfloat16  # auto: bf16 on GPUs
    assert runtime_dtype("cpu", "bf16") == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype 'fp16'"):
        runtime_dtype("cpu", "fp16")
    assert runtime_config("tiny").memory == get_preset("tiny").memory
    assert runtime_config("tiny", "fp8").memory.fp8 is True
    assert runtime_config("tiny", "model").memory.fp8 is False
    with pytest.raises(ConfigError, match="kv cache 'int4'"):
        runtime_config("tiny", "int4")


def test_bf16_engine_follows_the_fp32_one_and_fp8_halves_the_cache():
    ref, model_bytes = rollout(load_engine("tiny", dtype="fp32", kv_cache="model"))
    bf16 = load_engine("tiny", dtype="bf16", kv_cache="model")
    for name, p in bf16.model.named_parameters():
        keep = any(name.startswith(k) or name.endswith(k) for k in FP32_PARAMETERS)
        assert p.dtype == (torch.float32 if keep else torch.bfloat16), name
    got, bf16_bytes = rollout(bf16)
    for k, (a, b) in enumerate(zip(got, ref, strict=True)):
        rel = float((a - b).abs().mean() / b.abs().mean())
        assert 0 < rel < BF16_REL_TOL, f"chunk {k}: bf16 differs from fp32 by {rel:.4f} of the mean magnitude"
    assert bf16_bytes < model_bytes  # bf16 caches: 2 bytes per value instead of 4
    _, fp8_bytes = rollout(load_engine("tiny", dtype="fp32", kv_cache="fp8"))
    assert fp8_bytes < 0.3 * model_bytes  # 1 byte per value (plus a scale per token and head) vs 4


def test_runtime_config_selects_the_ablations():
    config = runtime_config("tiny", "fp8", context="clean", compressor="none")
    assert (config.sampler.context, config.memory.compressor, config.memory.fp8) == ("clean", "none", True)
    assert config.model == get_preset("tiny").model
    assert runtime_config("tiny") is get_preset("tiny")  # nothing asked, nothing changed
    with pytest.raises(ConfigError, match="compressor must be 'conv', 'mean' or 'none'"):
        runtime_config("tiny", compressor="max")
