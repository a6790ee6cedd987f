"""``TrainConfig``: one JSON file per training run, every setting of every stage.

Stages, in order (``STAGES``):

* ``vae``    - the tiny VAE (Wan VAE architecture, the preset's small config) on short windows of
               the synthetic clips: L1 reconstruction + a small KL term.
* ``vae_tune`` - the same VAE on the 41-frame windows a context-mode session decodes (3 + 8 latents).
* ``vae_context`` - the same VAE on pairs of consecutive chunk windows, decoded as a session decodes
               them: the previous window's last 3 latents as context, then the chunk's own latents.
* ``encode`` - every clip through the trained VAE once: clean latents, conditioning ``y``, CLIP
               tokens and audio feature rows, cached in the run directory.
* ``nf``     - the DiT with Neighbor Forcing: rollouts of ``chunks`` consecutive chunks, every chunk
               noised to the same level and attending (causally) to the previous chunks' K/V at that
               level; levels from the shifted flow-matching distribution.
* ``convkv`` - longer rollouts in which the ConvKV update rule runs, so the compressors
               (``memory_proj_k``/``_v``) are learned; levels from the sampler's own few-step schedule.
* ``export`` - the final DiT and VAE as a weights directory (``dit/`` + ``vae/``) that
               ``liveact animate --model`` (or ``liveact/weights/tiny``) loads.

A run is reproducible from its config file: seeds are fixed per stage, and the config is copied
into the run directory when the run starts.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from liveact.config import ConfigError, build_section

__all__ = ["STAGES", "VAE_STAGES", "DitStageConfig", "OptimConfig", "TrainConfig", "VaeStageConfig"]

STAGES = ("vae", "vae_tune", "vae_context", "encode", "nf", "convkv", "export")
VAE_STAGES = ("vae", "vae_tune", "vae_context")
VaeWindows = Literal["clip", "chunk_pairs"]
LevelDistribution = Literal["shifted", "sampler"]


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr``; gradients clipped."""

    lr: float = 3e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1 or self.grad_clip <= 0:
            raise ConfigError(f"invalid optimiser settings: {self}")


@dataclass(frozen=True)
class VaeStageConfig:
    steps: int = 2000
    batch: int = 4
    clip_frames: int = 9  # video frames per training window (and latent-statistics window): 1 + k * stride
    # "clip": windows of clip_frames; "chunk_pairs": two consecutive chunk windows of a session
    # (liveact.vae.chunk_windows), the second decoded after the first's last latents, as sessions decode
    windows: VaeWindows = "clip"
    # streamed warm-up: each step draws m in [0, warmup_latents]; m > 0 streams m latents' frames through
    # encoder and decoder without gradients first, so the window is trained in the causal caches' steady state
    warmup_latents: int = 0
    kl_weight: float = 1e-4  # keeps the posterior near N(0, 1): the DiT's latents stay unit-scaled
    # extra L1 weight on the pixels of each clip's mouth measuring box (0: uniform): the mouth box is ~6% of a
    # 64x64 frame, yet it is all that lip sync is measured on
    mouth_weight: float = 0.0
    seed: int = 1
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=50))

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch < 1 or self.clip_frames < 1 or self.kl_weight < 0 or self.warmup_latents < 0:
            raise ConfigError(f"invalid VAE stage settings: {self}")
        if self.mouth_weight < 0:
            raise ConfigError(f"mouth_weight={self.mouth_weight} must be >= 0")
        if self.windows not in ("clip", "chunk_pairs"):
            raise ConfigError(f"windows must be 'clip' or 'chunk_pairs', got {self.windows!r}")
        if self.windows == "chunk_pairs" and self.warmup_latents:
            raise ConfigError(
                "windows='chunk_pairs' decodes as sessions do, from fresh caches: set warmup_latents to 0"
            )


@dataclass(frozen=True)
class DitStageConfig:
    steps: int = 3000
    batch: int = 8
    chunks: int = 3  # chunks per rollout: 3 reach one ConvKV update, more exercise it repeatedly
    levels: LevelDistribution = "shifted"
    shift: float = 5.0  # sigma = shift*u / (1 + (shift-1)*u), u ~ U(0, 1): the Wan schedule's shift
    audio_dropout: float = 0.1  # share of steps trained without audio tokens (as the sampler's step 0 runs)
    mouth_weight: float = 0.0  # extra loss weight on the latent cells of the mouth region (0: uniform)
    # what a chunk attends to from earlier chunks: "neighbor" (Neighbor Forcing: their latents at the same
    # noise level) or the ablations' sample-level context, "clean" (teacher forcing) or "self" (own samples)
    context: str = "neighbor"
    compressor: str | None = None  # the ConvKV compressor to train with (None: the preset's; "none": sliding window)
    seed: int = 2
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch < 1 or self.chunks < 1 or self.shift <= 0:
            raise ConfigError(f"invalid DiT stage settings: {self}")
        if self.levels not in ("shifted", "sampler"):
            raise ConfigError(f"levels must be 'shifted' or 'sampler', got {self.levels!r}")
        if not 0 <= self.audio_dropout < 1:
            raise ConfigError(f"audio_dropout={self.audio_dropout} must be in [0, 1)")
        if self.context not in ("neighbor", "clean", "self"):
            raise ConfigError(f"context must be 'neighbor', 'clean' or 'self', got {self.context!r}")
        if self.compressor not in (None, "conv", "mean", "none"):
            raise ConfigError(f"compressor must be null, 'conv', 'mean' or 'none', got {self.compressor!r}")
        if self.mouth_weight < 0:
            raise ConfigError(f"mouth_weight={self.mouth_weight} must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    data: str  # a dataset directory written by `liveact data synth`
    preset: str = "tiny"
    threads: int = 0  # torch threads; 0 = torch's default
    log_every: int = 10  # steps between rows of the loss CSV
    save_every: int = 500  # steps between weight snapshots of a stage
    vae: VaeStageConfig = field(default_factory=VaeStageConfig)
    vae_tune: VaeStageConfig = field(
        default_factory=lambda: VaeStageConfig(
            steps=1200, batch=2, clip_frames=41, seed=4, optim=OptimConfig(lr=3e-4, warmup_steps=20)
        )
    )
    vae_context: VaeStageConfig = field(
        default_factory=lambda: VaeStageConfig(
            steps=0, batch=2, clip_frames=41, windows="chunk_pairs", seed=5, optim=OptimConfig(lr=3e-4, warmup_steps=20)
        )
    )
    nf: DitStageConfig = field(default_factory=DitStageConfig)
    convkv: DitStageConfig = field(
        default_factory=lambda: DitStageConfig(
            steps=1500, batch=4, chunks=5, levels="sampler", seed=3, optim=OptimConfig(lr=1e-4, warmup_steps=50)
        )
    )

    def __post_init__(self) -> None:
        if self.log_every < 1 or self.save_every < 1 or self.threads < 0:
            raise ConfigError("log_every and save_every must be >= 1, threads >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Settings from ``data`` over the defaults (a file may give only what it changes); unknown keys refused."""
        merged = _merge(cls(data="").to_dict(), data)

        def stage(kind: type, name: str) -> Any:
            values = dict(merged[name])
            values["optim"] = build_section(OptimConfig, values["optim"], f"{name}.optim")
            return build_section(kind, values, name)

        sections = {name: stage(VaeStageConfig, name) for name in VAE_STAGES}
        sections |= {name: stage(DitStageConfig, name) for name in ("nf", "convkv")}
        return build_section(cls, {**merged, **sections}, "top-level")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, recursing into sections both have as objects."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out
