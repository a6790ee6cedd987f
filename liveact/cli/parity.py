"""``liveact parity``: compare this implementation with a golden fixture of the public one."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def default_golden_dir() -> Path:
    """``$LIVEACT_GOLDEN_DIR``, else ``../shared/golden`` beside the checkout."""
    env = os.environ.get("LIVEACT_GOLDEN_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "golden"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "parity",
        help="check numerical parity against a golden fixture of the public implementation",
        description="Load the fixture's weights strictly, replay its recorded inputs and noise through the "
        "streaming loop, and print the largest absolute/relative error of every check against its tolerance.",
    )
    p.add_argument(
        "--golden", type=Path, default=None, help="fixture directory (default: $LIVEACT_GOLDEN_DIR or ../shared/golden)"
    )
    p.add_argument("--name", default="liveact-parity-small", help="fixture name (default: liveact-parity-small)")
    p.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from liveact.parity import run_all

    report = run_all(args.golden or default_golden_dir(), args.name)
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1
