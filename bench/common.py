"""Shared set-up for benchmarks: a model with fresh weights and a synthetic session."""

from __future__ import annotations

import statistics

import torch

from liveact.config import LiveActConfig
from liveact.model.dit import LiveActDiT
from liveact.model.loading import build_model
from liveact.sampling.chunking import total_video_frames
from liveact.sampling.denoise import Conditioning


def fresh_model(config: LiveActConfig, seed: int = 0) -> LiveActDiT:
    return build_model(config).init_weights(seed).eval()


def synthetic_session(model: LiveActDiT, pixel: int, chunks: int, seed: int = 0) -> tuple[Conditioning, torch.Tensor]:
    """Random conditioning for a pixel x pixel stream and audio features for ``chunks`` chunks."""
    cfg = model.config
    m = cfg.model
    g = torch.Generator().manual_seed(seed)
    lat = pixel // 8
    y = torch.randn(1, m.cond_channels, cfg.memory.window_latent_frames, lat, lat, generator=g)
    text = torch.randn(m.text_len // 2, m.text_dim, generator=g)
    clip = torch.randn(1, m.clip_tokens, m.clip_dim, generator=g)
    with torch.no_grad():
        context = model.encode_context([text], clip)
    feats = torch.randn(total_video_frames(cfg, chunks), m.audio_layers, m.audio_channels, generator=g)
    return Conditioning(y=y, context=context), feats


def median_ms(seconds: list[float]) -> float:
    return 1000.0 * statistics.median(seconds) if seconds else float("nan")
