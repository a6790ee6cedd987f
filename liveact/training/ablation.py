"""The paper's two claims at this scale: each ablation retrains what it changes from a base run, is
evaluated like the built-in model, and lands in one table with plots.

Variants (``VARIANTS``), each a run directory ``<base>-<name>`` beside the base run:

* ``neighbor`` - the base run itself: Neighbor Forcing, ConvKV memory (nothing retrained).
* ``clean``    - sample-level context, teacher forced: each chunk attends to the clean previous chunks
                 (stages nf and convkv retrained; sampled with the "clean" sampler context).
* ``self``     - sample-level context, self generated: each chunk attends to the model's own 3-step
                 samples of the previous chunks (nf and convkv retrained; "clean" sampler context).
* ``window``   - no compressed memory: a sliding window of recent frames plus the sink (convkv retrained
                 from the base run's nf weights with compressor "none"; sampled the same way).

A variant links the base run's VAE and encoded dataset (and, for ``window``, its nf weights) instead of
recomputing them, so every variant sees the same latents. Its settings are the base run's config with
the variant's overrides, saved in its run directory. ``report`` archives each evaluated run's evidence
(``EVIDENCE``: settings, summary, ``eval.json``; loss curves; contact sheets; no weights) under
``<out>/runs/<run name>/`` and writes the table (``ablations-table.md``) and the plots from the archive, so
variants evaluated at different times (run directories come and go) land in one table.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liveact.training.config import TrainConfig
from liveact.training.curves import read_curves

__all__ = [
    "VARIANTS",
    "Variant",
    "archive_run",
    "evaluate_run",
    "prepare_variant",
    "report",
    "run_variant",
    "variant_dir",
]

log = logging.getLogger(__name__)

# run directory names, as liveact.training.run writes them (imported lazily there: torch, diffusers)
CONFIG, CURVES, WEIGHTS_DIR, EVAL_JSON = "config.json", "curves", "weights", "eval.json"
TABLE, ARCHIVE = "ablations-table.md", "runs"
SUMMARY, SHEETS = "summary.json", "sheets"
EVIDENCE = (CONFIG, SUMMARY, EVAL_JSON)  # + curves/*.csv (what the table and plots read) + sheets/*.png
TAIL_ROWS = 5  # curve rows averaged for a stage's final loss


@dataclass(frozen=True)
class Variant:
    name: str
    change: str  # what it changes, for the table
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # config sections -> fields
    stages: tuple[str, ...] = ()  # retrained stages (then export); () = the base run itself
    linked: tuple[str, ...] = ("vae", "encoded.safetensors")  # taken from the base run
    context: str | None = None  # the sampler context of its evaluation (None: the preset's)
    compressor: str | None = None  # the memory of its evaluation (None: the preset's)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("neighbor", "Neighbor Forcing + ConvKV memory (the built-in model)"),
        Variant(
            "clean",
            "sample-level context: clean previous chunks (teacher forcing)",
            {"nf": {"context": "clean"}, "convkv": {"context": "clean"}},
            ("nf", "convkv", "export"),
            context="clean",
        ),
        Variant(
            "self",
            "sample-level context: the model's own samples of previous chunks",
            {"nf": {"context": "self"}, "convkv": {"context": "self"}},
            ("nf", "convkv", "export"),
            context="clean",
        ),
        Variant(
            "window",
            "sliding window, no compressed memory (convkv stage retrained)",
            {"convkv": {"compressor": "none"}},
            ("convkv", "export"),
            linked=("vae", "encoded.safetensors", "dit_nf"),
            compressor="none",
        ),
    )
}


def variant_dir(base: Path, name: str) -> Path:
    return base if name == "neighbor" else base.with_name(f"{base.name}-{name}")


def prepare_variant(base: Path, name: str) -> tuple[Path, TrainConfig]:
    """Create the variant's run directory: links to the base run's inputs and its settings."""
    v = VARIANTS[name]
    run = variant_dir(base, name)
    if run == base:
        return run, TrainConfig.load(base / CONFIG)
    run.mkdir(parents=True, exist_ok=True)
    for item in v.linked:
        src, dst = (base / item).resolve(), run / item
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing: train the base run first (liveact train --run {base})")
        if dst.is_symlink() or not dst.exists():
            dst.unlink(missing_ok=True)
            dst.symlink_to(src, target_is_directory=src.is_dir())
    data = TrainConfig.load(base / CONFIG).to_dict()
    for section, changes in v.overrides.items():
        data[section] = {**data[section], **changes}
    return run, TrainConfig.from_dict(data)


def evaluate_run(run: Path, name: str, marks_s: tuple[float, ...], window_s: float, progress: bool) -> dict:
    """``liveact eval`` of the run's exported weights, with the variant's sampler; writes ``eval.json``."""
    from liveact.evaluation import EvalSettings, evaluate
    from liveact.pipeline import load_engine
    from liveact.training.run import write_model_card

    v = VARIANTS[name]
    cfg = TrainConfig.load(run / CONFIG)
    engine = load_engine(cfg.preset, run / WEIGHTS_DIR, context=v.context, compressor=v.compressor)
    result = evaluate(engine, EvalSettings(marks_s=marks_s, window_s=window_s), progress, run / SHEETS)
    (run / EVAL_JSON).write_text(json.dumps(result, indent=2) + "\n")
    title = f"ablation `{name}`, {v.change}" if v.stages else None  # `neighbor` is the base run itself
    write_model_card(cfg, run, title)  # the card quotes eval.json
    return result


def run_variant(
    base: Path, name: str, marks_s: tuple[float, ...], window_s: float, progress: bool = True
) -> dict[str, Any]:
    """Train what the variant changes (nothing for ``neighbor``) and evaluate it; returns its eval report."""
    from liveact.training.run import train

    run, cfg = prepare_variant(base, name)
    if VARIANTS[name].stages:
        train(cfg, run, VARIANTS[name].stages, progress=progress)
    return evaluate_run(run, name, marks_s, window_s, progress)


def _final_loss(run: Path, stage: str) -> float | None:
    """Mean loss of the stage's last curve rows, None if the run did not train that stage itself."""
    path = run / CURVES / f"{stage}.csv"
    if not path.is_file():
        return None
    loss = read_curves(path).get("loss", [])
    return sum(loss[-TAIL_ROWS:]) / len(loss[-TAIL_ROWS:]) if loss else None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mark(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def archive_run(run: Path, dest: Path) -> None:
    """Copy ``run``'s evidence (``EVIDENCE`` files, ``curves/*.csv``, ``sheets/``) into ``dest``, replacing it."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / CURVES).mkdir(parents=True)
    for name in EVIDENCE:
        if (run / name).is_file():
            shutil.copy2(run / name, dest / name)
    for csv in sorted((run / CURVES).glob("*.csv")):
        shutil.copy2(csv, dest / CURVES / csv.name)
    if (run / SHEETS).is_dir():  # the evaluation's contact sheets: ~70 kB each
        shutil.copytree(run / SHEETS, dest / SHEETS)


def report(base: Path, out: Path, names: tuple[str, ...] = tuple(VARIANTS)) -> Path:
    """Write ``out/ablations-table.md`` and ``out/*.png`` from the variants' evaluated runs.

    A run under ``base`` with an ``eval.json`` is archived into ``out/runs/`` first; variants without one
    there are taken from the archive of an earlier report, if any.

    Loss columns: the mean of a stage's last curve rows, "-" where the run did not train that stage.
    """
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for n in names:
        live = variant_dir(base, n)
        kept = out / ARCHIVE / live.name
        if (live / EVAL_JSON).is_file():
            archive_run(live, kept)
        if (kept / EVAL_JSON).is_file():
            runs[n] = kept
    if not runs:
        raise FileNotFoundError(f"no evaluated run among {[str(variant_dir(base, n)) for n in names]}")
    evals = {n: json.loads((r / EVAL_JSON).read_text()) for n, r in runs.items()}
    marks = sorted({w["end_s"] for e in evals.values() for w in e["windows"]})

    head = ["variant", "what changes", "nf loss", "convkv loss"]
    for m in marks:
        head += [f"lip r {_mark(m)} (control)", f"drift {_mark(m)}", f"flicker {_mark(m)}"]
    head.append("drift ratio last / 1 min")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, run in runs.items():
        cells = [n, VARIANTS[n].change, _fmt(_final_loss(run, "nf")), _fmt(_final_loss(run, "convkv"))]
        by_mark = {w["end_s"]: w for w in evals[n]["windows"]}
        for m in marks:
            w = by_mark.get(m)
            if w is None:
                cells += ["-", "-", "-"]
                continue
            cells += [
                f"{w['lip_sync_r']:.3f} ({w['lip_sync_r_shuffled']:+.3f})",
                f"{w['identity_drift']:.4f}",
                f"{w['flicker']:.4f}",
            ]
        cells.append(_fmt(evals[n].get("drift_ratio_last_vs_1min")))
        rows.append("| " + " | ".join(cells) + " |")
    table = "\n".join(rows) + "\n"
    (out / TABLE).write_text(table)
    _plots(runs, evals, out)
    return out / TABLE


def _plots(runs: dict[str, Path], evals: dict[str, dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for n, run in runs.items():
        path = run / CURVES / "nf.csv"
        if path.is_file():  # runs that trained their own nf stage
            cols = read_curves(path)
            ax.plot(cols["step"], cols["loss"], label=n, linewidth=1.2)
    ax.set(yscale="log", xlabel="step", ylabel="training loss (own context)", title="nf stage: loss against steps")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ablation-nf-loss.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for n, e in evals.items():
        ends = [w["end_s"] / 60 for w in e["windows"]]
        axes[0].plot(ends, [w["identity_drift"] for w in e["windows"]], marker="o", label=n)
        axes[1].plot(ends, [w["lip_sync_r"] for w in e["windows"]], marker="o", label=n)
    axes[0].set(xscale="log", xlabel="minutes generated", ylabel="identity drift", title="identity drift")
    axes[1].set(xscale="log", xlabel="minutes generated", ylabel="lip-sync r", title="lip sync")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ablation-long-horizon.png")
    plt.close(fig)
