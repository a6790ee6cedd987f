"""``liveact bench ...``: benchmarks that print JSON figures (code in ``bench/``)."""

from __future__ import annotations

import argparse
import json

from liveact.config import get_preset


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark and print its figures as JSON",
        description="Benchmarks print JSON figures; speed targets live here, not in tests.",
    )
    bsub = p.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    m = bsub.add_parser(
        "memory",
        help="ConvKV memory flatness against the unbounded-cache baseline",
        description="Stream CHUNKS chunks with the ConvKV memory and BASELINE_CHUNKS with the unbounded "
        "baseline; print per-chunk latency medians (first and last 20 chunks, and their ratio) and "
        "resident cache bytes for each.",
    )
    m.add_argument("--preset", default="tiny", help="preset (default: tiny)")
    m.add_argument("--chunks", type=int, default=200, help="ConvKV chunks to stream (default: 200)")
    m.add_argument(
        "--baseline-chunks",
        type=int,
        default=None,
        help="unbounded-baseline chunks (default: min(chunks, 60); its cost grows quadratically)",
    )
    m.add_argument("--pixels", type=int, default=128, help="square frame size in pixels (default: 128)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    m.set_defaults(func=run_memory)


def run_memory(args: argparse.Namespace) -> int:
    from bench import memory

    if args.chunks < 2 * memory.WINDOW:
        raise ValueError(f"--chunks must be at least {2 * memory.WINDOW} to compare first and last {memory.WINDOW}")
    baseline = args.baseline_chunks if args.baseline_chunks is not None else min(args.chunks, 60)
    result = memory.run(get_preset(args.preset), args.pixels, args.chunks, baseline, args.seed)
    print(json.dumps(result, indent=2))
    return 0
