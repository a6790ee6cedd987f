"""``train(config, run_dir)``: the stages of a training run, in order, each reading what the last wrote.

Run directory::

    config.json               the TrainConfig of the run (written when it starts)
    vae/                      stages vae, vae_tune, vae_context: the VAE, diffusers format
    encoded.safetensors       stage encode: latents, y, CLIP tokens, audio rows, true mouth opening
    dit_nf/, dit_convkv/      stages nf and convkv: DiT checkpoint directories (config.json + safetensors)
    curves/<stage>.csv|png    loss curves
    weights/{dit,vae}/        stage export: what ``liveact animate --model`` loads
    weights/MODEL_CARD.md     stage export: how it was trained, on what, and its scores (from eval.json if present)
    eval.json                 optional, written by you: ``liveact eval --json --model <run>/weights``
    summary.json              per stage: steps, seconds, first and last logged losses

Stages can run one at a time (``stages=("nf",)``); a stage reads its inputs from the run directory.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from liveact.conditioning import build_encoders
from liveact.config import LiveActConfig, get_preset
from liveact.data.clip import DATASET_JSON, MANIFEST, Clip, read_clip
from liveact.model.loading import build_model, load_checkpoint_dir
from liveact.sampling.chunking import chunk_latent_sizes, total_video_frames
from liveact.training.card import model_card
from liveact.training.config import STAGES, VAE_STAGES, TrainConfig
from liveact.training.dit_stage import train_dit
from liveact.training.encoded import EncodedSet, encode_clips
from liveact.training.vae_stage import train_vae
from liveact.vae import get_vae_preset, load_vae_dir
from liveact.weight_files import DIT_SUBDIR, VAE_SUBDIR

__all__ = ["load_clips", "train", "write_model_card"]

log = logging.getLogger(__name__)

VAE_DIR, ENCODED, NF_DIR, CONVKV_DIR, WEIGHTS_DIR = "vae", "encoded.safetensors", "dit_nf", "dit_convkv", "weights"
CURVES, SUMMARY, CONFIG, MODEL_CARD = "curves", "summary.json", "config.json", "MODEL_CARD.md"


def load_clips(data_dir: str | Path) -> list[Clip]:
    """Every clip named by a dataset's manifest, in manifest order."""
    d = Path(data_dir)
    manifest = d / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{d} holds no dataset ({MANIFEST} missing): write one with `liveact data synth`")
    names = [json.loads(line)["file"] for line in manifest.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{manifest} lists no clips")
    return [read_clip(d / n) for n in names]


def _need(path: Path, stage: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run stage {stage!r} first")
    return path


def train(cfg: TrainConfig, run_dir: str | Path, stages: Sequence[str] = STAGES, progress: bool = True) -> dict:
    """Run ``stages`` (a subset of ``STAGES``, run in ``STAGES`` order) in ``run_dir``; returns the summary."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stages {unknown}; choose from {list(STAGES)}")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    cfg.save(run / CONFIG)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    config = get_preset(cfg.preset)
    vae_config = get_vae_preset(config.vae)
    curves = run / CURVES
    summary_path = run / SUMMARY
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}

    def done(stage: str, result: dict) -> None:
        summary[stage] = result
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")

    clips: list[Clip] | None = None
    if {*VAE_STAGES, "encode"} & set(stages):
        clips = load_clips(cfg.data)
    vae_stages = [n for n in VAE_STAGES if n in stages and (n == "vae" or getattr(cfg, n).steps)]  # 0 steps: off
    if vae_stages:
        assert clips is not None
        frames = [c.frames for c in clips]
        chunks = session_chunk_latents(config, min(len(f) for f in frames))
        references = [c.reference for c in clips]
    for name in vae_stages:
        init = None if name == "vae" else load_vae_dir(vae_config, _need(run / VAE_DIR, "vae"))
        st = getattr(cfg, name)
        out = run / VAE_DIR
        _, result = train_vae(name, cfg, st, vae_config, frames, out, curves, init, progress, chunks, references)
        done(name, result)
    if "encode" in stages:
        assert clips is not None
        vae = load_vae_dir(vae_config, _need(run / VAE_DIR, "vae"))
        chunks = max(cfg.nf.chunks, cfg.convkv.chunks)
        data = encode_clips(config, vae, vae_config, clips, chunks, progress)
        data.save(run / ENCODED)
        std = data.latents.std(dim=(0, 2, 3, 4))
        done("encode", {"clips": len(data), "latent_std_min": float(std.min()), "latent_std_max": float(std.max())})
    dit_stages = [s for s in ("nf", "convkv") if s in stages]
    if dit_stages:
        data = EncodedSet.load(_need(run / ENCODED, "encode"))
        text = build_encoders(config.name, config.model).encode_text([""])[0]
        for name in dit_stages:
            st, out = (cfg.nf, run / NF_DIR) if name == "nf" else (cfg.convkv, run / CONVKV_DIR)
            init = None
            if name == "convkv":
                init = load_checkpoint_dir(build_model(config), _need(run / NF_DIR, "nf"))
            _, result = train_dit(name, cfg, st, config, data, text, out, curves, init, progress)
            done(name, result)
    if "export" in stages:
        weights = run / WEIGHTS_DIR
        source = run / CONVKV_DIR if (run / CONVKV_DIR).is_dir() else _need(run / NF_DIR, "nf")
        for src, dst in ((source, weights / DIT_SUBDIR), (_need(run / VAE_DIR, "vae"), weights / VAE_SUBDIR)):
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst)
        done("export", {"weights": str(weights), "dit_from": source.name})
        write_model_card(cfg, run)
    return summary


def session_chunk_latents(config: LiveActConfig, frames: int) -> list[int]:
    """A session's chunk sizes in latents ([6, 8, 8, ...]) for as many whole chunks as ``frames`` video frames hold."""
    n = 0
    while total_video_frames(config, n + 1) <= frames:
        n += 1
    return chunk_latent_sizes(config, n)


def write_model_card(cfg: TrainConfig, run: Path, title: str | None = None) -> Path:
    """RUN/weights/MODEL_CARD.md from the run's settings, summary, dataset and (if present) eval.json.

    ``title``: what the run is, when it is not the built-in model (an ablation variant).
    """
    data_json = Path(cfg.data) / DATASET_JSON
    dataset = json.loads(data_json.read_text()) if data_json.is_file() else {}
    summary = json.loads((run / SUMMARY).read_text())
    path = run / WEIGHTS_DIR / MODEL_CARD
    path.write_text(model_card(cfg, run, summary, dataset, title))
    return path
