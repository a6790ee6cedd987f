"""How a trained VAE does on the path sessions decode: per-chunk error, the mouth, and a picture.

Legend: B clips, T video frames, H x W pixels.

A context-mode session encodes each chunk in its own window (``liveact.vae.encode_chunk_windows``) and
decodes it after the previous window's last latents (``StreamingDecoder.decode_with_context``):
``context_path`` reproduces that for whole clips. ``session_path_report`` scores it on a few clips:

* ``l1_per_chunk_context``: mean L1 per chunk (flat from chunk 1 on: every decode starts fresh);
* ``mouth_box_l1``: L1 inside each clip's mouth measuring box (``liveact.data.measure.mouth_pixels``);
* ``mouth_opening_r``: Pearson correlation of the mouth opening measured on reconstructions with the one
  measured on the originals (``liveact.data.measure.mouth_opening``), over every frame: a mouth blurred
  shut reads 0, one that opens and closes with the original reads near 1;
* ``mouth_opening_ratio``: mean opening of reconstructions over originals (a blurred mouth reads smaller);

and draws originals over reconstructions, ``STRIP_FRAMES`` frames per clip, as a PNG to look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from PIL import Image

from liveact.data.measure import mouth_opening, mouth_pixels
from liveact.vae import StreamingDecoder, VaeConfig, chunk_windows, encode_chunk_windows

__all__ = ["REPORT_CLIPS", "context_path", "frames_to_video", "mouth_scores", "session_path_report", "video_to_frames"]

REPORT_CLIPS = 4  # clips a report scores (the dataset's first)
STRIP_FRAMES = 10  # frames per clip in the picture, evenly spaced over the session path
STRIP_SCALE = 2  # nearest-neighbour upscaling of the picture


def frames_to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float32 (B, 3, T, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 4, 1, 2, 3)
    return x.float() / 127.5 - 1.0


def video_to_frames(video: torch.Tensor) -> np.ndarray:
    """float (B, 3, T, H, W) in [-1, 1] -> uint8 (B, T, H, W, 3)."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()


@torch.no_grad()
def context_path(
    vae: AutoencoderKLWan, vae_config: VaeConfig, x: torch.Tensor, chunk_latents: Sequence[int]
) -> tuple[torch.Tensor, list[int]]:
    """x (B, 3, T, H, W) -> its reconstruction along the serving path (B, 3, T', H, W), and each chunk's end frame."""
    latents = encode_chunk_windows(vae, vae_config, x, chunk_latents)
    decoder = StreamingDecoder(vae, vae_config)
    outs, ends, context, at = [], [], None, 0
    for n in chunk_latents:
        out, context = decoder.decode_with_context(context, latents[:, :, at : at + n])
        outs.append(out)
        ends.append(sum(o.shape[2] for o in outs))
        at += n
    return torch.cat(outs, dim=2), ends


def mouth_scores(original: np.ndarray, recon: np.ndarray, references: Sequence[np.ndarray]) -> dict[str, float]:
    """original, recon uint8 (B, T, H, W, 3) -> the mouth's box L1 and opening correlation and ratio."""
    masks = np.stack([mouth_pixels(r) for r in references])[:, None, :, :, None]  # (B, 1, H, W, 1)
    err = np.abs(recon.astype(np.float32) - original.astype(np.float32)) / 127.5  # L1 in [-1, 1] units
    box_l1 = float((err * masks).sum() / max(float(masks.sum()) * err.shape[1] * err.shape[-1], 1.0))
    got = np.concatenate([mouth_opening(v, r) for v, r in zip(recon, references, strict=True)])
    want = np.concatenate([mouth_opening(v, r) for v, r in zip(original, references, strict=True)])
    r = float(np.corrcoef(got, want)[0, 1]) if got.std() > 0 and want.std() > 0 else 0.0
    return {
        "mouth_box_l1": round(box_l1, 4),
        "mouth_opening_r": round(r, 4),
        "mouth_opening_ratio": round(float(got.mean() / max(float(want.mean()), 1e-6)), 4),
    }


def _strip(original: np.ndarray, recon: np.ndarray, path: Path) -> None:
    """Per clip a row of originals over a row of reconstructions, ``STRIP_FRAMES`` frames each."""
    at = np.linspace(0, original.shape[1] - 1, STRIP_FRAMES).round().astype(int)
    rows = [np.concatenate(list(video[at]), axis=1) for pair in zip(original, recon, strict=True) for video in pair]
    image = np.concatenate(rows, axis=0)  # (2 B H, STRIP_FRAMES W, 3)
    h, w = image.shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).resize((w * STRIP_SCALE, h * STRIP_SCALE), Image.NEAREST).save(path)


@torch.no_grad()
def session_path_report(
    vae: AutoencoderKLWan,
    vae_config: VaeConfig,
    clips: Sequence[np.ndarray],
    chunk_latents: Sequence[int],
    references: Sequence[np.ndarray] = (),
    strip: Path | None = None,
) -> dict[str, object]:
    """Scores of the first ``REPORT_CLIPS`` clips (each (T_i, H, W, 3) uint8) along ``context_path``.

    The mouth scores need the clips' ``references``; ``strip``: where to write the picture, if anywhere.
    """
    n = min(REPORT_CLIPS, len(clips))
    frames = chunk_windows(vae_config, chunk_latents)[-1][1]
    x = frames_to_video(np.stack([c[:frames] for c in clips[:n]]))  # (B, 3, T, H, W)
    recon, ends = context_path(vae, vae_config, x, chunk_latents)
    t = recon.shape[2]
    err = (recon - x[:, :, :t]).abs().mean(dim=(0, 1, 3, 4))  # (T',)
    report: dict[str, object] = {
        "l1_per_chunk_context": [round(float(err[a:b].mean()), 4) for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    }
    original, decoded = video_to_frames(x[:, :, :t]), video_to_frames(recon)  # (B, T', H, W, 3) each
    if references:
        report |= mouth_scores(original, decoded, references[:n])
    if strip is not None:
        _strip(original, decoded, strip)
    return report
