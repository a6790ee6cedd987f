"""``VaeConfig``: the Wan2.1 causal 3-D VAE's sizes, latent statistics and strides, and its presets.

Field names copy diffusers' ``AutoencoderKLWan`` arguments (including its misspelled
``temperal_downsample``), so ``diffusers_kwargs()`` builds the model and a checkpoint's
``config.json`` can be compared field by field. The DiT works in normalised latent space,
``z_norm = (mu - latents_mean) / latents_std``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liveact.config import ConfigError

__all__ = ["VAE_PRESETS", "VaeConfig", "get_vae_preset", "vae_preset_names"]

# The Wan2.1 VAE's per-channel latent statistics (diffusers' defaults for AutoencoderKLWan).
_WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
_WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class VaeConfig:
    """Sizes of ``AutoencoderKLWan`` plus what LiveAct needs around it (strides, decode context)."""

    name: str
    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # diffusers' spelling, kept
    latents_mean: tuple[float, ...] = _WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = _WAN21_LATENTS_STD
    spatial_stride: int = 8  # pixels per latent cell along H and W
    temporal_stride: int = 4  # video frames per latent frame, after the first (which gives 1)
    # The public implementation decodes [previous chunk's last 3 clean latents + new ones].
    decode_context_latents: int = 3

    def __post_init__(self) -> None:
        for stats in ("latents_mean", "latents_std"):
            if len(getattr(self, stats)) != self.z_dim:
                raise ConfigError(f"{stats} has {len(getattr(self, stats))} entries, z_dim={self.z_dim}")
        if any(s <= 0 for s in self.latents_std):
            raise ConfigError("latents_std entries must be positive")
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ConfigError(
                f"temperal_downsample needs len(dim_mult)-1 = {len(self.dim_mult) - 1} entries, "
                f"got {len(self.temperal_downsample)}"
            )
        spatial = 2 ** (len(self.dim_mult) - 1)
        temporal = 2 ** sum(self.temperal_downsample)
        if (self.spatial_stride, self.temporal_stride) != (spatial, temporal):
            raise ConfigError(
                f"strides (spatial {self.spatial_stride}, temporal {self.temporal_stride}) disagree with the "
                f"architecture, which gives (spatial {spatial}, temporal {temporal})"
            )
        if self.decode_context_latents < 1:
            raise ConfigError(f"decode_context_latents={self.decode_context_latents} must be >= 1")

    def video_frames(self, latent_frames: int, first: bool = True) -> int:
        """Video frames decoded from ``latent_frames``; ``first`` when they start a stream (1 + 4(T-1))."""
        if latent_frames == 0:
            return 0
        return 1 + (latent_frames - 1) * self.temporal_stride if first else latent_frames * self.temporal_stride

    def latent_frames(self, video_frames: int) -> int:
        """Latent frames encoding ``video_frames`` (which must be 1 + a multiple of the temporal stride)."""
        if video_frames < 1 or (video_frames - 1) % self.temporal_stride:
            raise ConfigError(f"{video_frames} video frames is not 1 + a multiple of {self.temporal_stride}")
        return 1 + (video_frames - 1) // self.temporal_stride

    def diffusers_kwargs(self) -> dict[str, Any]:
        """Arguments for ``diffusers.AutoencoderKLWan`` (lists where diffusers' config.json has lists)."""
        return {
            "base_dim": self.base_dim,
            "z_dim": self.z_dim,
            "dim_mult": list(self.dim_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_scales": list(self.attn_scales),
            "temperal_downsample": list(self.temperal_downsample),
            "latents_mean": list(self.latents_mean),
            "latents_std": list(self.latents_std),
            "scale_factor_spatial": self.spatial_stride,
            "scale_factor_temporal": self.temporal_stride,
        }


_WAN21 = VaeConfig(name="wan2.1")  # the real Wan2.1 VAE, ~126.9M parameters

# For CPU tests and the tiny DiT preset: ~0.67M parameters, same latent layout and strides.
# Sized for speed: decoding 32 frames at 64x64 takes ~0.5 s on 2 CPU cores (base_dim 16: ~0.7 s at
# 64x64 but ~4.7 s at 128x128), so the whole tiny pipeline runs well above 20 fps at 64x64.
_TINY = VaeConfig(
    name="tiny",
    base_dim=8,
    num_res_blocks=1,
    latents_mean=(0.0,) * _WAN21.z_dim,
    latents_std=(1.0,) * _WAN21.z_dim,
)

VAE_PRESETS: dict[str, VaeConfig] = {c.name: c for c in (_WAN21, _TINY)}


def vae_preset_names() -> list[str]:
    return sorted(VAE_PRESETS)


def get_vae_preset(name: str) -> VaeConfig:
    try:
        return VAE_PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown VAE preset {name!r}; choose one of {vae_preset_names()}") from None
