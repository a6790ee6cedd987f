"""Stages ``nf`` and ``convkv``: the DiT trained on Neighbor Forcing rollouts of encoded clips.

Both run ``neighbor_forcing_loss`` on batches of random clips; they differ by their settings:
``nf`` (3 chunks, levels from the shifted flow-matching distribution, a fresh model) teaches audio
and identity; ``convkv`` (5 chunks, so the ConvKV update rule runs twice per rollout and the
compressors get gradients, levels from the sampler's own few-step schedule, audio skipped exactly at
the sampler's ``skip_audio_steps``) starts from ``nf``'s weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from liveact.config import LiveActConfig
from liveact.model.dit import LiveActDiT
from liveact.model.loading import build_model, save_checkpoint_dir
from liveact.training.config import DitStageConfig, TrainConfig
from liveact.training.encoded import EncodedSet
from liveact.training.loop import StageResult, run_stage
from liveact.training.neighbor_forcing import RolloutBatch, neighbor_forcing_loss, shifted_levels

__all__ = ["train_dit"]


def _levels(
    st: DitStageConfig, config: LiveActConfig, batch: int, rng: np.random.Generator, gen: torch.Generator
) -> tuple[torch.Tensor, bool]:
    """Per-clip levels sigma (B,) and whether this step uses audio."""
    use_audio = bool(rng.random() >= st.audio_dropout)
    if st.levels == "shifted":
        return shifted_levels(torch.rand(batch, generator=gen), st.shift), use_audio
    sc = config.sampler
    step = int(rng.integers(0, sc.num_steps))  # one sampler step per batch: audio use is per forward
    sigma = torch.full((batch,), sc.timesteps[step] / sc.num_train_timesteps)
    return sigma, use_audio and step not in sc.skip_audio_steps


def train_dit(
    name: str,
    cfg: TrainConfig,
    st: DitStageConfig,
    config: LiveActConfig,
    data: EncodedSet,
    text: torch.Tensor,
    out_dir: Path,
    curves_dir: Path,
    init: LiveActDiT | None = None,
    progress: bool = True,
) -> tuple[LiveActDiT, StageResult]:
    """Train (from ``init``, or fresh weights seeded by the stage) and save to ``out_dir``.

    ``text``: the prompt's unpadded text features (L, text_dim), the same for every clip.
    """
    if st.compressor is not None:  # the memory this stage trains with (the sliding-window ablation: "none")
        config = dataclasses.replace(config, memory=dataclasses.replace(config.memory, compressor=st.compressor))
    model = init if init is not None else build_model(config).init_weights(st.seed)
    model.config = config  # the nf weights continue under this stage's memory
    model.train()
    rng = np.random.default_rng(st.seed)
    gen = torch.Generator().manual_seed(st.seed)
    texts = [text] * st.batch
    names = ["loss", *(f"chunk{k}" for k in range(st.chunks))]

    def step(_: int) -> dict[str, torch.Tensor]:
        idx = torch.from_numpy(rng.integers(0, len(data), st.batch))
        weight = None
        if st.mouth_weight > 0:
            weight = (1.0 + st.mouth_weight * data.mouth_region[idx])[:, None, None]  # (B, 1, 1, h, w)
        batch = RolloutBatch(data.latents[idx], data.y[idx], data.clip[idx], data.audio[idx], weight)
        sigma, use_audio = _levels(st, config, st.batch, rng, gen)
        loss, per_chunk = neighbor_forcing_loss(model, batch, texts, sigma, st.chunks, gen, use_audio, st.context)
        return {"loss": loss, **{f"chunk{k}": v for k, v in enumerate(per_chunk)}}

    def save(_: int) -> None:
        save_checkpoint_dir(model, out_dir)

    result = run_stage(
        name, model.parameters(), st.optim, st.steps, step, names, curves_dir, cfg.log_every, save, cfg.save_every,
        progress,
    )  # fmt: skip
    return model.eval(), result
