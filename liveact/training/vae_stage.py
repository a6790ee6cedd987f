"""Stages ``vae``, ``vae_tune`` and ``vae_context``: the tiny VAE (diffusers' ``AutoencoderKLWan``, the preset's small
config): first short windows from scratch (cheap; spatial detail), then what sessions decode.

Why more than one: the causal VAE treats the first latent (one frame) and the second (its cache holds only the
first frame's features) differently from every later one, and the deeper layers' caches settle only
after ~100 frames. Measured on the tiny VAE (L1 per stretch of a streamed clip): trained on 13-frame
windows, 0.07 up to frame 16, then 0.37; 400 more steps on 41-frame windows, 0.07 rising to 0.26 by
frame 72, then flat; 300 steps on 81-frame windows, 0.08 rising to 0.15 by frame 96. A window only
teaches the transient it starts with. ``warmup_latents`` streams a random number of latents through
encoder and decoder without gradients before each window (``liveact.training.vae_stream``), so the
window is trained inside the steady state: 700 such steps (41-frame windows, up to 105 warm-up frames)
made the error flat (0.16 from frame 0 to 160) but blurred every frame, a steady state as costly to
learn as the VAE itself. So the built-in recipe never runs the VAE past one window: sessions decode in
context mode (each chunk from a fresh cache with the previous chunk's last 3 latents: 41 frames at most)
and the DiT's targets are encoded in the same windows (``liveact.vae.encode_chunk_windows``);
``vae_tune`` trains on exactly those 41-frame windows. A session decodes a chunk's latents after the
*previous* window's last latents, though, which no whole window contains: ``vae_context`` trains on
that mixture (``liveact.training.vae_pairs``; measured: own-window decode L1 0.11 per chunk, the
session's path 0.27 before it). Each stage reports its reconstruction error per
stretch of a long streamed clip (``horizon_l1``) and how it does on the context-mode path
(``liveact.training.vae_report``: per-chunk L1, the mouth's opening against the original's, and a
picture, ``curves/<stage>-session-path.png``).

Legend: B batch, T = ``clip_frames`` video frames (1 + 4k), H x W pixels.

Each step takes B random windows of T consecutive frames (after the warm-up, if any) from random
clips, encodes them as a causal video, samples the posterior, decodes and minimises
``L1(reconstruction, frames) + kl_weight * KL`` (KL per latent element against N(0, 1)). With
``mouth_weight`` w > 0 the L1 is weighted 1 + w on the pixels of each clip's mouth measuring box
(``liveact.data.measure.mouth_pixels``), normalised by the mean weight: an unweighted L1 lets a
small VAE blur the mouth (6% of a 64x64 frame) away, and the mouth is what lip sync is measured on.

The stage ends by standardising the latent space (``standardize_latents``): per-channel mean and
standard deviation of the posterior mean over ``STATS_WINDOWS`` windows are folded into the VAE's
``quant_conv`` and ``post_quant_conv``, so the saved VAE encodes to zero-mean, unit-variance latents
(what the DiT's flow matching assumes, and what the tiny preset's ``latents_mean = 0``,
``latents_std = 1`` say) and decodes exactly what it decoded before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from liveact.data.measure import mouth_pixels
from liveact.training.config import TrainConfig, VaeStageConfig
from liveact.training.loop import StageResult, run_stage
from liveact.training.vae_pairs import chunk_pair_reconstruction, chunk_pairs
from liveact.training.vae_report import REPORT_CLIPS, frames_to_video, session_path_report
from liveact.training.vae_stream import streamed_reconstruction
from liveact.vae import VaeConfig, build_vae

__all__ = ["frames_to_video", "horizon_l1", "latent_stats", "standardize_latents", "train_vae", "weighted_l1"]

STATS_WINDOWS = 64  # windows whose posterior means give the latent statistics
HORIZON_BIN = 16  # frames per stretch


def window_frames(st: VaeStageConfig, vae_config: VaeConfig, warm_latents: int) -> int:
    """Video frames of a step's window: ``clip_frames``, after the warm-up's 1 + 4 (m - 1) when m > 0."""
    return st.clip_frames + (vae_config.video_frames(warm_latents) - 1 if warm_latents else 0)


def _windows(
    clips: list[np.ndarray], frames: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(count, frames, H, W, 3) uint8 windows of consecutive frames from random clips, and the (count,) clips."""
    out, picks = [], rng.integers(0, len(clips), count)
    for c in picks:
        start = int(rng.integers(0, len(clips[c]) - frames + 1))
        out.append(clips[c][start : start + frames])
    return np.stack(out), picks


def weighted_l1(err: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``err`` = |recon - target| (B, 3, T, H, W), weighted per pixel by ``weight`` (B, 1, 1, H, W) if given."""
    if weight is None:
        return err.mean()
    return (err * weight).mean() / weight.expand_as(err).mean()


@torch.no_grad()
def latent_stats(
    vae: AutoencoderKLWan, clips: list[np.ndarray], frames: int, seed: int, batch: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (Cz,) of the posterior mean over ``STATS_WINDOWS`` windows."""
    rng = np.random.default_rng(seed)
    mus = []
    for _ in range(0, STATS_WINDOWS, batch):
        mus.append(vae.encode(frames_to_video(_windows(clips, frames, batch, rng)[0])).latent_dist.mean)
    mu = torch.cat(mus).transpose(0, 1).flatten(1)  # (Cz, N*T*h*w)
    return mu.mean(dim=1), mu.std(dim=1)


@torch.no_grad()
def horizon_l1(vae: AutoencoderKLWan, clips: list[np.ndarray], frames: int) -> list[float]:
    """Mean L1 reconstruction error per ``HORIZON_BIN`` frames over the first ``frames`` frames of a few clips.

    One causal encode + decode per clip, as a stream runs: an error that grows along the clip means the
    VAE has not learnt the steady state its causal caches reach (train on longer windows).
    """
    x = frames_to_video(np.stack([c[:frames] for c in clips[:REPORT_CLIPS]]))  # (B, 3, T, H, W)
    err = (vae.decode(vae.encode(x).latent_dist.mode()).sample - x).abs().mean(dim=(0, 1, 3, 4))  # (T,)
    return [round(float(err[a : a + HORIZON_BIN].mean()), 4) for a in range(0, frames, HORIZON_BIN)]


@torch.no_grad()
def standardize_latents(vae: AutoencoderKLWan, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold (Cz,) statistics into the VAE: mu' = (mu - mean) / std, and decode(z') = old decode(z' * std + mean).

    ``quant_conv`` (1x1x1, outputs [mu | logvar]) gets its mu rows scaled and shifted and logvar
    shifted by -2 log std; ``post_quant_conv`` (1x1x1, input z) absorbs the inverse map.
    """
    cz = mean.numel()
    q = vae.quant_conv
    q.weight[:cz] /= std.view(cz, 1, 1, 1, 1)
    q.bias[:cz] = (q.bias[:cz] - mean) / std
    q.bias[cz:] -= 2.0 * torch.log(std)
    p = vae.post_quant_conv
    p.bias += p.weight[:, :, 0, 0, 0] @ mean
    p.weight *= std.view(1, cz, 1, 1, 1)


def train_vae(
    name: str,
    cfg: TrainConfig,
    st: VaeStageConfig,
    vae_config: VaeConfig,
    clips: list[np.ndarray],
    out_dir: Path,
    curves_dir: Path,
    init: AutoencoderKLWan | None = None,
    progress: bool = True,
    chunk_latents: Sequence[int] = (),
    references: Sequence[np.ndarray] = (),
) -> tuple[AutoencoderKLWan, StageResult]:
    """Train ``init`` (or a fresh VAE) on ``clips`` (each (T_i, H, W, 3) uint8); save to ``out_dir`` (diffusers).

    ``chunk_latents``: a session's chunk sizes in latents, for the per-chunk error of context-mode decoding.
    ``references``: per clip, its (H, W, 3) reference image, where the mouth is found: needed when
    ``st.mouth_weight`` > 0, and for the mouth scores of the final ``session_path_report``.
    """
    if references and len(references) != len(clips):
        raise ValueError(f"{len(references)} references for {len(clips)} clips")
    if st.mouth_weight and not references:
        raise ValueError(f"{name}.mouth_weight={st.mouth_weight} needs each clip's reference image")
    vae_config.latent_frames(st.clip_frames)  # refuses a window that is not 1 + k * temporal stride
    if st.windows == "chunk_pairs" and len(chunk_latents) < 2:
        raise ValueError(f"{name}.windows='chunk_pairs' needs clips of at least two chunks (got {list(chunk_latents)})")
    longest = window_frames(st, vae_config, st.warmup_latents)
    short = [len(c) for c in clips if len(c) < longest]
    if short:
        raise ValueError(
            f"{len(short)} clips are shorter than the {longest} frames {name}.clip_frames={st.clip_frames} "
            f"and warmup_latents={st.warmup_latents} need"
        )
    torch.manual_seed(st.seed)
    vae = (init if init is not None else build_vae(vae_config)).train()
    rng = np.random.default_rng(st.seed)
    gen = torch.Generator().manual_seed(st.seed)

    pairs = chunk_pairs(vae_config, chunk_latents) if st.windows == "chunk_pairs" else []
    masks = torch.from_numpy(np.stack([mouth_pixels(r) for r in references])) if st.mouth_weight else None  # (N,H,W)

    def step(_: int) -> dict[str, torch.Tensor]:
        if pairs:  # a random (k-1, k) chunk pair of a session's layout, decoded as the session does
            pair = pairs[int(rng.integers(0, len(pairs)))]
            frames, picks = _windows(clips, pair.frames, st.batch, rng)
            out = chunk_pair_reconstruction(vae, vae_config, frames_to_video(frames), pair, gen)
            recon, target = out.recon, out.target
        else:
            warm = int(rng.integers(0, st.warmup_latents + 1)) if st.warmup_latents else 0
            frames, picks = _windows(clips, window_frames(st, vae_config, warm), st.batch, rng)
            out = streamed_reconstruction(vae, frames_to_video(frames), warm, gen)  # (B, 3, T, H, W) each
            recon, target = [out.recon], [out.target]
        weight = None if masks is None else (1.0 + st.mouth_weight * masks[picks])[:, None, None]  # (B, 1, 1, H, W)
        errs = [(r - t).abs() for r, t in zip(recon, target, strict=True)]  # (B, 3, T, H, W) each
        l1 = torch.stack([e.mean() for e in errs]).mean()
        fit = l1 if weight is None else torch.stack([weighted_l1(e, weight) for e in errs]).mean()
        kl = 0.5 * (out.mean.pow(2) + out.logvar.exp() - 1.0 - out.logvar).mean()
        return {"loss": fit + st.kl_weight * kl, "l1": l1, "kl": kl}

    def save(_: int) -> None:
        vae.save_pretrained(out_dir, safe_serialization=True)

    result = run_stage(
        name, vae.parameters(), st.optim, st.steps, step, ["loss", "l1", "kl"],
        curves_dir, cfg.log_every, save, cfg.save_every, progress,
    )  # fmt: skip
    vae.eval()
    mean, std = latent_stats(vae, clips, st.clip_frames, st.seed)
    standardize_latents(vae, mean, std)
    save(st.steps)
    result["latent_mean"] = [round(float(v), 4) for v in mean]
    result["latent_std"] = [round(float(v), 4) for v in std]
    horizon = 1 + (min(len(c) for c in clips) - 1) // vae_config.temporal_stride * vae_config.temporal_stride
    result[f"l1_per_{HORIZON_BIN}_frames"] = horizon_l1(vae, clips, horizon)
    if chunk_latents:
        strip = curves_dir / f"{name}-session-path.png"
        result |= session_path_report(vae, vae_config, clips, chunk_latents, references, strip)
    return vae, result
