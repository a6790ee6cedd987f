"""Stage ``encode``: every clip through the trained VAE and the conditioning encoders, once.

Legend: N clips, Cz latent channels, F latent frames of the longest rollout, h x w latent grid,
Tv video frames of the clip, L x Ca audio feature rows, P CLIP tokens x Cp.

What a DiT training step needs, exactly as a serving session computes it:

* ``latents`` (N, Cz, F, h, w): the normalised posterior means of [reference image, frames 1..], each
  chunk encoded in the window its context-mode decode covers (``liveact.vae.encode_chunk_windows``), so
  the tiny VAE never runs past the window lengths it was trained on; chunk 0's latent 0 is the
  reference slot, as in serving;
* ``y`` (N, 4+Cz, window, h, w): ``encode_condition`` of the reference (mask + image latent);
* ``clip`` (N, P, Cp): the preset's image tokens of the reference;
* ``audio`` (N, Tv, L, Ca): the feature rows of the clip's speech at the clip's fps (``audio_features``);
* ``mouth`` (N, Tv): the renderer's true mouth opening, for evaluation;
* ``mouth_region`` (N, h, w): 1 on the latent cells that overlap the reference's mouth box (where
  ``liveact.data.measure`` looks for the mouth, head motion included), else 0; all 0 where no mouth
  is found. The DiT stages can weight the loss there (``DitStageConfig.mouth_weight``).

Saved as ``<run>/encoded.safetensors`` (plain tensors, no pickle) with the run's sizes in its metadata.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from liveact.audio import AudioConfig, audio_features, load_backend
from liveact.conditioning import build_encoders
from liveact.config import LiveActConfig
from liveact.data.clip import Clip
from liveact.data.measure import mouth_pixels
from liveact.media import to_model_tensor
from liveact.sampling.chunking import chunk_latent_sizes, total_video_frames, window_video_frames
from liveact.training.vae_stage import frames_to_video
from liveact.vae import VaeConfig, encode_chunk_windows, encode_condition

__all__ = ["EncodedSet", "encode_clips", "mouth_region", "rollout_video_frames"]

FIELDS = ("latents", "y", "clip", "audio", "mouth", "mouth_region")


def rollout_video_frames(config: LiveActConfig, chunks: int) -> int:
    """Video frames a rollout of ``chunks`` chunks covers (85 for 3 chunks, 149 for 5)."""
    return total_video_frames(config, chunks)


def mouth_region(reference: np.ndarray, stride: int) -> torch.Tensor:
    """(H / stride, W / stride) float32: 1 on latent cells overlapping the reference's mouth measuring box
    (``liveact.data.measure.mouth_pixels``, all 0 where no mouth is found), else 0."""
    pixels = torch.from_numpy(mouth_pixels(reference))[None]  # (1, H, W)
    return F.max_pool2d(pixels, stride, ceil_mode=True)[0]


@dataclass
class EncodedSet:
    latents: torch.Tensor  # (N, Cz, F, h, w)
    y: torch.Tensor  # (N, 4+Cz, window, h, w)
    clip: torch.Tensor  # (N, P, Cp)
    audio: torch.Tensor  # (N, Tv, L, Ca)
    mouth: torch.Tensor  # (N, Tv)
    mouth_region: torch.Tensor  # (N, h, w)
    fps: float

    def __len__(self) -> int:
        return self.latents.shape[0]

    def save(self, path: Path) -> None:
        save_file({f: getattr(self, f).contiguous() for f in FIELDS}, path, metadata={"fps": json.dumps(self.fps)})

    @classmethod
    def load(cls, path: Path) -> EncodedSet:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            fps = float(json.loads(f.metadata()["fps"]))
        return cls(**load_file(path), fps=fps)


@torch.no_grad()
def encode_clips(
    config: LiveActConfig,
    vae,
    vae_config: VaeConfig,
    clips: list[Clip],
    chunks: int,
    progress: bool = True,
) -> EncodedSet:
    """Encode ``clips`` for rollouts of up to ``chunks`` chunks (every clip must be long enough)."""
    frames = rollout_video_frames(config, chunks)
    short = [c.seed for c in clips if len(c.frames) < frames]
    if short:
        raise ValueError(
            f"{len(short)} clips have fewer than the {frames} frames a {chunks}-chunk rollout needs: "
            f"synthesise clips of at least {frames / clips[0].fps:.2f} s"
        )
    fps = clips[0].fps
    if any(c.fps != fps for c in clips):
        raise ValueError("every clip of a training set must have the same fps")
    encoders = build_encoders(config.name, config.model)
    audio_config = AudioConfig.for_model(config.model)
    backend = load_backend(audio_config)
    chunk_latents = chunk_latent_sizes(config, chunks)
    out: dict[str, list[torch.Tensor]] = {f: [] for f in FIELDS}
    for clip in tqdm(clips, desc="encode clips", unit="clip", file=sys.stderr, disable=not progress):
        ref = to_model_tensor(clip.reference)  # (1, 3, H, W)
        video = frames_to_video(clip.frames[None, :frames].copy())  # (1, 3, Tv, H, W)
        video[:, :, 0] = ref[:, :, :]  # latent 0 is the reference slot
        latents = encode_chunk_windows(vae, vae_config, video, chunk_latents)  # (1, Cz, F, h, w)
        out["latents"].append(latents[0])
        out["y"].append(encode_condition(vae, vae_config, ref, window_video_frames(config))[0])
        out["clip"].append(encoders.encode_image(ref)[0])
        rows = audio_features(clip.audio, backend, audio_config, clip.fps)  # (Tv', L, Ca)
        out["audio"].append(rows)
        out["mouth"].append(torch.from_numpy(np.ascontiguousarray(clip.mouth[: len(rows), 0])))
        out["mouth_region"].append(mouth_region(clip.reference, vae_config.spatial_stride))
    lengths = {len(a) for a in out["audio"]}
    if len(lengths) != 1:
        raise ValueError(f"clips give different numbers of audio rows {sorted(lengths)}: use one clip length")
    return EncodedSet(**{f: torch.stack(v) for f, v in out.items()}, fps=fps)
