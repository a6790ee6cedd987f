"""Decoded frames out: model output in [-1, 1] -> uint8 RGB, and one frame as a JPEG file."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

__all__ = ["DEFAULT_JPEG_QUALITY", "encode_jpeg", "frames_to_uint8"]

DEFAULT_JPEG_QUALITY = 90  # a session's or a stream's JPEG quality when it asks for 0


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Model output in [-1, 1] -> uint8 (T, H, W, 3) for the writers.

    Accepts (1, 3, T, H, W) (the VAE's video layout) or (T, 3, H, W) (e.g. ``to_model_tensor``'s
    (1, 3, H, W), which comes back as (1, H, W, 3)). Values are clamped, then rounded.
    """
    if frames.ndim == 5:
        if frames.shape[0] != 1 or frames.shape[1] != 3:
            raise ValueError(f"expected (1, 3, T, H, W), got {tuple(frames.shape)}")
        frames = frames[0].permute(1, 0, 2, 3)  # (T, 3, H, W)
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected (1, 3, T, H, W) or (T, 3, H, W), got {tuple(frames.shape)}")
    scaled = ((frames.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (T, H, W, 3)


def encode_jpeg(frame: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """One (H, W, 3) uint8 RGB frame -> the bytes of a JPEG file."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
