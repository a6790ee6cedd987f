"""Small configs and synthetic sessions, shared by the tests and the benchmarks.

Fresh (seeded) weights and random conditioning: the numbers mean nothing as video, but shapes, cache
behaviour, determinism and parity across processes and tensor-parallel degrees are what these check.

* ``micro_config``: the tiny preset shrunk further (1 layer, dim 32), for streams of hundreds of chunks;
* ``tp_test_config``: the tiny preset at dim 64, 4 heads, 2 layers, fp32 caches: it shards for tp 1, 2, 4;
* ``fresh_model`` and ``synthetic_session``: the one builder of a model and a session's inputs.
"""

from __future__ import annotations

import dataclasses

import torch

from liveact.config import LiveActConfig, get_preset
from liveact.model.dit import LiveActDiT
from liveact.model.loading import build_model
from liveact.sampling.chunking import total_video_frames
from liveact.sampling.denoise import Conditioning

__all__ = ["fresh_model", "micro_config", "synthetic_session", "tp_test_config"]

SYNTHETIC_TEXT_TOKENS = 5  # tokens of the random prompt embedding (the model pads to text_len)


def micro_config(**memory_overrides: object) -> LiveActConfig:
    """The tiny preset shrunk further (1 layer, dim 32) for tests that stream hundreds of chunks."""
    tiny = get_preset("tiny")
    model = dataclasses.replace(tiny.model, dim=32, num_heads=2, ffn_dim=64, num_layers=1)
    memory = dataclasses.replace(tiny.memory, **memory_overrides)  # type: ignore[arg-type]
    return dataclasses.replace(tiny, name="micro", model=model, memory=memory)


def tp_test_config() -> LiveActConfig:
    """The tiny preset shrunk (dim 64, 4 heads, 2 layers, fp32 caches): shards for tp in {1, 2, 4}."""
    tiny = get_preset("tiny")
    model = dataclasses.replace(tiny.model, dim=64, num_heads=4, ffn_dim=128, num_layers=2)
    memory = dataclasses.replace(tiny.memory, fp8=False)
    return dataclasses.replace(tiny, name="tp-test", model=model, memory=memory)


def fresh_model(config: LiveActConfig, seed: int = 0) -> LiveActDiT:
    """The DiT with fresh weights from ``seed``, in eval mode."""
    return build_model(config).init_weights(seed).eval()


def synthetic_session(
    model: LiveActDiT, latent: int = 8, chunks: int = 8, seed: int = 1, text_tokens: int = SYNTHETIC_TEXT_TOKENS
) -> tuple[Conditioning, torch.Tensor]:
    """Random conditioning for a ``latent`` x ``latent`` grid and audio features for ``chunks`` chunks.

    Returns (conditioning, features (total video frames, L, C)); the same ``seed`` gives the same draws.
    """
    cfg = model.config
    m = cfg.model
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(1, m.cond_channels, cfg.memory.window_latent_frames, latent, latent, generator=g)
    text = torch.randn(text_tokens, m.text_dim, generator=g)  # (S, C_text)
    clip = torch.randn(1, m.clip_tokens, m.clip_dim, generator=g)  # (1, N_clip, C_clip)
    with torch.no_grad():
        context = model.encode_context([text], clip)
    feats = torch.randn(total_video_frames(cfg, chunks), m.audio_layers, m.audio_channels, generator=g)
    return Conditioning(y=y, context=context), feats
