"""The session's image conditioning ``y``: Wan I2V mask + the VAE latent of [image + black frames].

Legend: B batch, H x W pixels, Tw video frames of one window, n = 1 + (Tw-1)/4 latent frames,
h x w = H/8 x W/8 latent grid, Cz latent channels (16), M mask channels (= temporal stride, 4).

``y`` (B, M + Cz, n, h, w) is built once per session: chunk 0 uses latent frames [0, 6), every later
chunk the fixed [6, 14) (mask 0 over encoded black frames). The window size comes from the caller
(``liveact.sampling.chunking.window_video_frames(config)``: 53 video frames -> 14 latents).
"""

from __future__ import annotations

import threading
import weakref

import torch
from diffusers import AutoencoderKLWan

from liveact.vae.config import VaeConfig
from liveact.vae.latents import normalize

__all__ = ["condition_mask", "encode_condition"]

# diffusers' AutoencoderKLWan.encode keeps its causal cache on the module (clear_cache, _enc_feat_map),
# so two sessions encoding at once on one shared VAE would corrupt each other: one lock per VAE.
_ENCODE_LOCKS: weakref.WeakKeyDictionary[AutoencoderKLWan, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _encode_lock(vae: AutoencoderKLWan) -> threading.Lock:
    with _LOCKS_GUARD:
        return _ENCODE_LOCKS.setdefault(vae, threading.Lock())


def condition_mask(cfg: VaeConfig, batch: int, latent_frames: int, h: int, w: int, **like) -> torch.Tensor:
    """The Wan I2V mask (B, M, n, h, w): 1 on every channel of latent frame 0, 0 elsewhere.

    Built as Wan does: one value per video frame (1 for the reference frame), the first repeated
    ``temporal_stride`` times so each latent frame groups ``temporal_stride`` values as channels.
    """
    stride = cfg.temporal_stride
    video_frames = cfg.video_frames(latent_frames)
    per_frame = torch.zeros(batch, video_frames, h, w, **like)  # (B, Tw, h, w)
    per_frame[:, 0] = 1
    padded = torch.cat([per_frame[:, :1].repeat_interleave(stride, dim=1), per_frame[:, 1:]], dim=1)
    grouped = padded.view(batch, latent_frames, stride, h, w)  # (B, n, M, h, w)
    return grouped.transpose(1, 2)  # (B, M, n, h, w)


@torch.no_grad()
def encode_condition(
    vae: AutoencoderKLWan, cfg: VaeConfig, image: torch.Tensor, window_video_frames: int
) -> torch.Tensor:
    """image (B, 3, H, W) in [-1, 1] -> y (B, M + Cz, n, h, w), the latent normalised.

    Encodes [image + (window_video_frames - 1) zero frames] and takes the posterior mean.
    """
    if image.ndim != 4 or image.shape[1] != vae.config.in_channels:
        raise ValueError(f"image must be (B, {vae.config.in_channels}, H, W), got {tuple(image.shape)}")
    b, c, height, width = image.shape
    if height % cfg.spatial_stride or width % cfg.spatial_stride:
        raise ValueError(f"image size {height}x{width} is not a multiple of {cfg.spatial_stride}")
    latent_frames = cfg.latent_frames(window_video_frames)
    image = image.to(vae.dtype)
    black = image.new_zeros(b, c, window_video_frames - 1, height, width)
    video = torch.cat([image.unsqueeze(2), black], dim=2)  # (B, 3, Tw, H, W)
    with _encode_lock(vae):
        mu = vae.encode(video).latent_dist.mode()  # (B, Cz, n, h, w)
    if mu.shape[2] != latent_frames:
        raise RuntimeError(f"VAE gave {mu.shape[2]} latent frames for {window_video_frames}, expected {latent_frames}")
    latent = normalize(mu, cfg)
    h, w = latent.shape[-2:]
    mask = condition_mask(cfg, b, latent_frames, h, w, dtype=latent.dtype, device=latent.device)
    return torch.cat([mask, latent], dim=1)  # (B, M + Cz, n, h, w)
