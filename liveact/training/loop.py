"""The stage loop shared by every training stage: optimiser, schedule, clipping, curves, progress bar.

A stage gives ``run_stage`` its parameters and a ``step(i) -> {loss name: tensor}`` closure whose
``"loss"`` entry is minimised; the loop does the rest and saves snapshots through ``save``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tqdm import tqdm

from liveact.training.config import OptimConfig
from liveact.training.curves import CurveWriter, plot_curves

__all__ = ["StageResult", "learning_rate", "run_stage"]

log = logging.getLogger(__name__)


def learning_rate(cfg: OptimConfig, step: int, total: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from ``lr`` to ``min_lr_ratio * lr`` at ``total``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))


class StageResult(dict):
    """Summary of a stage: ``steps``, ``seconds``, ``first`` and ``last`` logged rows of the curve."""


def run_stage(
    name: str,
    params: Iterable[torch.nn.Parameter],
    cfg: OptimConfig,
    steps: int,
    step: Callable[[int], dict[str, torch.Tensor]],
    loss_names: list[str],
    curves_dir: Path,
    log_every: int,
    save: Callable[[int], None],
    save_every: int,
    progress: bool = True,
) -> StageResult:
    """Run ``steps`` optimiser steps; write ``curves_dir/<name>.csv`` and ``.png``; save every ``save_every``."""
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    csv_path = curves_dir / f"{name}.csv"
    curve = CurveWriter(csv_path, loss_names, min(log_every, max(steps, 1)))
    first: dict[str, float] | None = None
    last: dict[str, float] | None = None
    start = time.monotonic()
    bar = tqdm(range(steps), desc=f"train {name}", unit="step", file=sys.stderr, disable=not progress)
    for i in bar:
        lr = learning_rate(cfg, i, steps)
        for group in opt.param_groups:
            group["lr"] = lr
        losses = step(i)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"stage {name}: loss is {loss.item()} at step {i}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        row = curve.add(i + 1, time.monotonic() - start, lr, {k: float(losses[k].detach()) for k in loss_names})
        if row is not None:
            first = first or row
            last = row
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        if (i + 1) % save_every == 0 and i + 1 < steps:
            save(i + 1)
    save(steps)
    seconds = time.monotonic() - start
    if last is not None:
        plot_curves(csv_path, curves_dir / f"{name}.png", f"{name}: {steps} steps")
    log.info("stage %s: %d steps in %.1f s, last %s", name, steps, seconds, last)
    return StageResult(steps=steps, seconds=round(seconds, 2), first=first, last=last)
