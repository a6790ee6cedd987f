"""Entry point of the ``liveact`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from liveact import __version__
from liveact.cli import ablate, animate, bench, client, data, eval, info, parity, plan, serve, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liveact",
        description="LiveAct: real-time, hour-scale, audio-driven human animation "
        "(an autoregressive diffusion transformer with Neighbor Forcing and ConvKV memory).",
    )
    parser.add_argument("--version", action="version", version=f"liveact {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (animate, serve, client, info, plan, parity, bench, data, train, eval, ablate):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # bad input: one clear line, no traceback
        print(f"liveact: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
