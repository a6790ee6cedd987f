"""``liveact ablate``: the paper's claims at the tiny scale (code in ``liveact.training.ablation``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from liveact.cli.eval import _marks
from liveact.training.ablation import VARIANTS


def add_parser(sub: argparse._SubParsersAction) -> None:
    names = ", ".join(f"{v.name} ({v.change})" for v in VARIANTS.values())
    p = sub.add_parser(
        "ablate",
        help="retrain and evaluate the ablations (sample-level context, sliding window) against a base run",
        description="Variants of a trained base run (`liveact train --run BASE`): " + names + ". "
        "`--variant NAME` trains what the variant changes into BASE-NAME (reusing the base run's VAE and "
        "encoded data), evaluates it like `liveact eval` into BASE-NAME/eval.json and prints that report; "
        "`neighbor` evaluates the base run itself (as `liveact eval --model BASE/weights --json > BASE/eval.json` "
        "does). `--report DIR` copies each evaluated run's evidence (settings, summary, eval.json, loss curves, "
        "contact sheets; no weights) into DIR/runs/ and writes the table (ablations-table.md) and plots of "
        "every variant found there, so variants evaluated in different sessions land in one table.",
    )
    p.add_argument("--base", type=Path, required=True, help="the base run directory (Neighbor Forcing + ConvKV)")
    p.add_argument("--variant", choices=sorted(VARIANTS), default=None, help="the variant to train and evaluate")
    p.add_argument("--report", type=Path, default=None, metavar="DIR", help="write the table and plots into DIR")
    marks = (10.0, 60.0, 600.0, 3600.0)
    p.add_argument("--marks", type=_marks, default=marks, help="eval marks, seconds (default: 10,60,600,3600)")
    p.add_argument("--window", type=float, default=10.0, help="seconds each score covers (default: 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_ablate)


def run_ablate(args: argparse.Namespace) -> int:
    from liveact.training.ablation import report, run_variant

    if args.variant is None and args.report is None:
        raise ValueError("give --variant NAME (train and evaluate) and/or --report DIR (table and plots)")
    if args.variant is not None:
        result = run_variant(args.base, args.variant, args.marks, args.window, progress=not args.no_progress)
        print(json.dumps({"variant": args.variant, **result}))
    if args.report is not None:
        print(json.dumps({"table": str(report(args.base, args.report))}))
    return 0
