"""Latent normalisation: the DiT works on ``z_norm = (mu - latents_mean) / latents_std`` per channel.

Legend: B batch, Cz latent channels (``z_dim``), T latent frames, h x w latent grid.
"""

from __future__ import annotations

import torch

from liveact.vae.config import VaeConfig

__all__ = ["check_latents", "denormalize", "normalize"]


def _stats(cfg: VaeConfig, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std shaped (1, Cz, 1, 1, 1) in ``like``'s dtype and device."""
    shape = (1, cfg.z_dim, 1, 1, 1)
    mean = torch.tensor(cfg.latents_mean, dtype=like.dtype, device=like.device).view(shape)
    std = torch.tensor(cfg.latents_std, dtype=like.dtype, device=like.device).view(shape)
    return mean, std


def normalize(mu: torch.Tensor, cfg: VaeConfig) -> torch.Tensor:
    """(B, Cz, T, h, w) VAE latent -> the DiT's normalised latent."""
    mean, std = _stats(cfg, mu)
    return (mu - mean) / std


def denormalize(z_norm: torch.Tensor, cfg: VaeConfig) -> torch.Tensor:
    """(B, Cz, T, h, w) normalised latent -> what the VAE decoder takes."""
    mean, std = _stats(cfg, z_norm)
    return z_norm * std + mean


def check_latents(z: torch.Tensor, cfg: VaeConfig, what: str = "latents") -> None:
    if z.ndim != 5 or z.shape[1] != cfg.z_dim:
        raise ValueError(f"{what} must be (B, {cfg.z_dim}, T, h, w), got {tuple(z.shape)}")
