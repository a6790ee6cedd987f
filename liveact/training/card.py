"""The model card of an exported run: how it was trained, on what, and what it scores.

Written by the ``export`` stage into ``<run>/weights/MODEL_CARD.md`` from the run's own records:
``config.json``, the dataset's ``dataset.json``, ``summary.json`` (per-stage steps, time, losses) and,
when present, ``eval.json`` (``liveact eval --json`` of the exported weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liveact.config import get_preset
from liveact.model.loading import build_model
from liveact.training.config import VAE_STAGES, TrainConfig

__all__ = ["EVAL_JSON", "model_card"]

EVAL_JSON = "eval.json"


def _losses(result: dict[str, Any] | None) -> str:
    if not result:
        return "-"
    return ", ".join(f"{k} {v:.4g}" for k, v in result.items())


def model_card(
    cfg: TrainConfig, run: Path, summary: dict[str, Any], dataset: dict[str, Any], title: str | None = None
) -> str:
    """The card's markdown; ``title`` names a run that is not the built-in model (an ablation)."""
    config = get_preset(cfg.preset)
    params = build_model(config, device="meta").num_parameters()
    lines = [
        f"# LiveAct `{cfg.preset}`: {title or 'the built-in model'}",
        "",
        "Trained by this project, from scratch, on procedurally rendered talking heads (`liveact data synth`);",
        "no external weights or data. It exists so that `liveact animate` shows a real talking face on any",
        "machine, and so that the paper's two ideas (Neighbor Forcing, ConvKV memory) can be tested end to end.",
        "",
        "## Model",
        "",
        f"- DiT: preset `{cfg.preset}` (dim {config.model.dim}, {config.model.num_layers} layers, "
        f"{config.model.num_heads} heads, {params:,} parameters), the liveact-18b architecture scaled down.",
        f"- VAE: the Wan2.1 VAE architecture, preset `{config.vae}`, latents standardised to zero mean and unit "
        "variance per channel.",
        "- Conditioning: the weight-free tiny image and text encoders; audio: the weight-free log-mel rows.",
        f"- Sampler: {config.sampler.num_steps} steps at t = "
        + ", ".join(f"{t:g}" for t in config.sampler.timesteps)
        + f", ConvKV memory of {config.memory.total_slots} slots per layer and step.",
        "",
        "## Data",
        "",
        f"- {dataset.get('clips')} clips of {dataset.get('seconds')} s at {dataset.get('size')}x{dataset.get('size')}, "
        f"{dataset.get('fps')} fps, dataset seed {dataset.get('seed')}: a random identity (face shape, skin, hair, "
        "eyes, background), espeak-ng speech of random sentences, a mouth that follows the audio with a 75 ms "
        "visual lead, head motion from prosody, blinks.",
        "",
        "## Training",
        "",
        f"Config: `{run.name}/config.json` (reproduce with `liveact train --config configs/train-{cfg.preset}.json`).",
        "",
        "| stage | steps | seconds | first logged losses | last logged losses |",
        "|---|---|---|---|---|",
    ]
    for stage in (*VAE_STAGES, "nf", "convkv"):
        r = summary.get(stage)
        if r:
            lines.append(f"| {stage} | {r['steps']} | {r['seconds']} | {_losses(r['first'])} | {_losses(r['last'])} |")
    for stage in VAE_STAGES:
        horizon = (summary.get(stage) or {}).get("l1_per_16_frames")
        if horizon:
            lines += ["", f"- {stage}: reconstruction L1 per 16 frames of a streamed clip: {horizon}"]
        per_chunk = (summary.get(stage) or {}).get("l1_per_chunk_context")
        if per_chunk:
            lines += [f"- {stage}: reconstruction L1 per chunk as sessions decode (chunk windows): {per_chunk}"]
    lines += [
        "",
        f"- nf: Neighbor Forcing rollouts of {cfg.nf.chunks} chunks, batch {cfg.nf.batch}, levels `{cfg.nf.levels}` "
        f"(shift {cfg.nf.shift}), audio dropout {cfg.nf.audio_dropout}, mouth-region loss weight "
        f"{cfg.nf.mouth_weight}.",
        f"- convkv: rollouts of {cfg.convkv.chunks} chunks (the ConvKV update rule runs and its compressors "
        f"learn), batch {cfg.convkv.batch}, levels `{cfg.convkv.levels}`, from the nf weights.",
        "- Loss curves: `curves/<stage>.csv` and `.png` in the run directory.",
    ]
    report_path = run / EVAL_JSON
    if report_path.exists():
        report = json.loads(report_path.read_text())
        lines += [
            "",
            "## Scores (`liveact eval`)",
            "",
            f"One streamed session of a held-out identity (seed {report['identity_seed']}), "
            f"{report['generated_s']:.0f} s of video at {report['fps']:g} fps, {report['generation_fps']} fps on this "
            f"machine; each row scores the {report['window_s']:g} s before its mark.",
            "",
            "| mark (s) | lip-sync r | shuffled-audio control | identity drift | flicker | mean opening |",
            "|---|---|---|---|---|---|",
        ]
        for w in report["windows"]:
            lines.append(
                f"| {w['end_s']:g} | {w['lip_sync_r']:.3f} | {w['lip_sync_r_shuffled']:.3f} | "
                f"{w['identity_drift']:.4f} | {w['flicker']:.4f} | {w['mouth_open_mean']:.4f} |"
            )
        if "drift_ratio_last_vs_1min" in report:
            lines += ["", f"Identity drift at the last mark / at 1 min: {report['drift_ratio_last_vs_1min']}."]
    lines += [
        "",
        "## Limits",
        "",
        "- It knows only the synthetic renderer's world: flat-shaded cartoon faces at 64x64. Photos are out of "
        "distribution.",
        "- Sizes other than 64x64 run but were never trained.",
        "",
    ]
    return "\n".join(lines)
