"""Shared set-up for benchmarks: a model with fresh weights and a synthetic session."""

from __future__ import annotations

import statistics

import torch

from liveact.model.dit import LiveActDiT
from liveact.sampling.denoise import Conditioning
from liveact.testing import synthetic_session

LATENT_STRIDE = 8  # pixels per latent cell (the Wan VAE)


def bench_session(model: LiveActDiT, pixel: int, chunks: int, seed: int = 0) -> tuple[Conditioning, torch.Tensor]:
    """A synthetic session for a pixel x pixel stream (a prompt half the text length, as benchmarks use)."""
    return synthetic_session(model, pixel // LATENT_STRIDE, chunks, seed, text_tokens=model.config.model.text_len // 2)


def median_ms(seconds: list[float]) -> float:
    return 1000.0 * statistics.median(seconds) if seconds else float("nan")
