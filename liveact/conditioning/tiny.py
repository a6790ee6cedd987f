"""Conditioning of the ``tiny`` preset: no weights, fixed by construction, same shapes as the real encoders.

The built-in tiny model is trained with exactly these encoders, so they are part of its definition:
changing ``TINY_SEED``, a table name, the patch size or the feature recipe invalidates its weights.
Every fixed table comes from ``fixed_table`` (splitmix64 over a blake2b key), which gives the same
numbers on every platform and every torch/numpy version, unlike a library RNG stream.

Image: (B, 3, H, W) in [-1, 1] -> (B, 1 + G*G, clip_dim) with G*G = clip_tokens - 1 (16x16 for 257).
The image is area-averaged to (G*P, G*P) pixels (P = ``PATCH_PIXELS``); token 0 is a fixed
projection of each channel's mean and standard deviation, token 1 + r*G + c a fixed projection of
patch (r, c)'s pixels plus a fixed position code.

Text: prompts -> (L <= text_len, text_dim) per prompt, one row per word of the cleaned, lower-cased
prompt: the word's hash embedding plus a position code. An empty prompt gives zero rows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from liveact.conditioning.prompt import clean_prompt

__all__ = ["PATCH_PIXELS", "TINY_SEED", "TinyImageTokenizer", "TinyTextEncoder", "fixed_table"]

TINY_SEED = 2603_11746  # the paper's arXiv number; part of the tiny model's definition
PATCH_PIXELS = 4  # pixels per patch side after the area resize
POSITION_GAIN = 0.5  # position codes at half the content scale, so content dominates each token
_GLOBAL_FEATURES = 6  # per-channel mean and standard deviation of 3 channels
_UNIFORM_HALF_WIDTH = math.sqrt(3.0)  # uniform on [-sqrt(3), sqrt(3)] has unit variance
_MANTISSA_BITS = 53  # a float64 in [0, 1) from the top 53 bits of a 64-bit word
_SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_SPLITMIX_MUL = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _splitmix64(words: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    z = words.copy()
    z ^= z >> np.uint64(30)
    z *= _SPLITMIX_MUL[0]
    z ^= z >> np.uint64(27)
    z *= _SPLITMIX_MUL[1]
    return z ^ (z >> np.uint64(31))


def _key(*parts: object) -> np.uint64:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def fixed_table(name: str, shape: tuple[int, ...], seed: int = TINY_SEED) -> torch.Tensor:
    """Float32 values uniform on [-sqrt(3), sqrt(3)] (unit variance); value i depends on (seed, name, i) only."""
    n = math.prod(shape)
    with np.errstate(over="ignore"):
        counters = np.arange(1, n + 1, dtype=np.uint64) * _SPLITMIX_GAMMA + _key(seed, name)
        bits = _splitmix64(counters)
    unit = (bits >> np.uint64(64 - _MANTISSA_BITS)).astype(np.float64) * 2.0**-_MANTISSA_BITS  # [0, 1)
    values = (2.0 * unit - 1.0) * _UNIFORM_HALF_WIDTH
    return torch.from_numpy(values.astype(np.float32).reshape(shape))


class TinyImageTokenizer:
    """Reference images (B, 3, H, W) in [-1, 1] -> (B, clip_tokens, clip_dim) float32 tokens."""

    def __init__(self, clip_tokens: int, clip_dim: int, seed: int = TINY_SEED) -> None:
        grid = math.isqrt(clip_tokens - 1)
        if grid * grid + 1 != clip_tokens:
            raise ValueError(f"clip_tokens={clip_tokens} must be 1 + a square number of patch tokens")
        self.grid = grid
        patch_features = 3 * PATCH_PIXELS * PATCH_PIXELS
        # projections scaled by 1/sqrt(fan_in) so a token's scale follows its inputs'
        self.patch_proj = fixed_table("image.patch", (patch_features, clip_dim), seed) / math.sqrt(patch_features)
        self.global_proj = fixed_table("image.global", (_GLOBAL_FEATURES, clip_dim), seed) / math.sqrt(_GLOBAL_FEATURES)
        self.position = fixed_table("image.position", (grid * grid, clip_dim), seed) * POSITION_GAIN

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = images.shape
        if c != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W), got {tuple(images.shape)}")
        g, p = self.grid, PATCH_PIXELS
        x = F.adaptive_avg_pool2d(images.float(), g * p)  # (B, 3, G*P, G*P), area resize
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3), correction=0)], dim=1)  # (B, 6)
        patches = x.view(b, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, 3 * p * p)  # (B, G*G, 3*P*P)
        dev = x.device
        global_token = (stats @ self.global_proj.to(dev)).unsqueeze(1)  # (B, 1, D)
        patch_tokens = patches @ self.patch_proj.to(dev) + self.position.to(dev)  # (B, G*G, D)
        return torch.cat([global_token, patch_tokens], dim=1)  # (B, 1 + G*G, D)


class TinyTextEncoder:
    """Prompts -> one (L <= text_len, text_dim) float32 tensor each: word hash embeddings + position codes."""

    def __init__(self, text_len: int, text_dim: int, seed: int = TINY_SEED) -> None:
        self.text_len = text_len
        self.text_dim = text_dim
        self.seed = seed
        self.position = fixed_table("text.position", (text_len, text_dim), seed) * POSITION_GAIN

    def _word(self, word: str) -> torch.Tensor:
        return fixed_table(f"text.word.{word}", (self.text_dim,), self.seed)

    def encode(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        out = []
        for prompt in prompts:
            words = clean_prompt(prompt).lower().split()[: self.text_len]
            if not words:
                out.append(torch.zeros(0, self.text_dim))
                continue
            rows = torch.stack([self._word(w) for w in words])  # (L, D)
            out.append(rows + self.position[: len(words)])
        return out
