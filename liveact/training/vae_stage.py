"""Stage ``vae``: the tiny VAE (diffusers' ``AutoencoderKLWan``, the preset's small config) on clip windows.

Legend: B batch, T = ``clip_frames`` video frames (1 + 4k), H x W pixels.

Each step takes B random windows of T consecutive frames from random clips, encodes them as a causal
video, samples the posterior, decodes and minimises ``L1(reconstruction, frames) + kl_weight * KL``
(KL per latent element against N(0, 1), which keeps the latents near unit scale for the DiT).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from liveact.training.config import TrainConfig
from liveact.training.loop import StageResult, run_stage
from liveact.vae import VaeConfig, build_vae

__all__ = ["frames_to_video", "train_vae"]


def frames_to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float32 (B, 3, T, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 4, 1, 2, 3)
    return x.float() / 127.5 - 1.0


def train_vae(
    cfg: TrainConfig,
    vae_config: VaeConfig,
    clips: list[np.ndarray],
    out_dir: Path,
    curves_dir: Path,
    progress: bool = True,
) -> tuple[AutoencoderKLWan, StageResult]:
    """Train a fresh VAE on ``clips`` (each (T_i, H, W, 3) uint8); save it to ``out_dir`` (diffusers format)."""
    st = cfg.vae
    vae_config.latent_frames(st.clip_frames)  # refuses a window that is not 1 + k * temporal stride
    short = [len(c) for c in clips if len(c) < st.clip_frames]
    if short:
        raise ValueError(f"{len(short)} clips are shorter than vae.clip_frames={st.clip_frames}")
    torch.manual_seed(st.seed)
    vae = build_vae(vae_config).train()
    rng = np.random.default_rng(st.seed)
    gen = torch.Generator().manual_seed(st.seed)

    def step(_: int) -> dict[str, torch.Tensor]:
        picks = rng.integers(0, len(clips), st.batch)
        windows = []
        for c in picks:
            start = int(rng.integers(0, len(clips[c]) - st.clip_frames + 1))
            windows.append(clips[c][start : start + st.clip_frames])
        x = frames_to_video(np.stack(windows))  # (B, 3, T, H, W)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        l1 = (recon - x).abs().mean()
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        return {"loss": l1 + st.kl_weight * kl, "l1": l1, "kl": kl}

    def save(_: int) -> None:
        vae.save_pretrained(out_dir, safe_serialization=True)

    result = run_stage(
        "vae", vae.parameters(), st.optim, st.steps, step, ["loss", "l1", "kl"],
        curves_dir, cfg.log_every, save, cfg.save_every, progress,
    )  # fmt: skip
    return vae.eval(), result
