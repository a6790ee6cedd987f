"""``liveact train``: train the built-in tiny model (code in ``liveact.training``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from liveact.training.config import STAGES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the tiny model on synthetic talking heads (VAE, Neighbor Forcing DiT, ConvKV)",
        description="Train the built-in tiny model from a dataset written by `liveact data synth`. Stages, in "
        f"order: {', '.join(STAGES)}. vae: the tiny Wan-architecture VAE on short clip windows; vae_tune: the same on "
        "the 41-frame windows a session decodes each chunk in; vae_context: pairs of consecutive chunk windows, the "
        "second decoded after the first's last latents, exactly as sessions decode (off at 0 steps); encode: "
        "every clip to latents, conditioning and audio rows once; nf: the DiT on Neighbor Forcing rollouts (each chunk "
        "at noise level t attends to the previous chunk's latents at the same t); convkv: longer rollouts "
        "in which the ConvKV memory compression runs and is learned, at the sampler's 3-step levels; export: "
        "RUN/weights/{dit,vae}, loadable with `liveact animate --model RUN/weights`. Loss curves go to "
        "RUN/curves/<stage>.csv and .png, a summary to RUN/summary.json. Settings come from one JSON file "
        "(`liveact train --write-config FILE` writes the defaults); runs are reproducible from it.",
    )
    p.add_argument("--config", type=Path, help="the run's settings (JSON; fields not given keep their defaults)")
    p.add_argument("--run", type=Path, help="run directory (created if missing); stages read earlier stages' output")
    p.add_argument("--data", type=Path, default=None, help="dataset directory (overrides the config's 'data')")
    p.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated stages to run, from {','.join(STAGES)} (default: all)",
    )
    p.add_argument("--write-config", type=Path, default=None, metavar="FILE", help="write the default config and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from liveact.training.config import TrainConfig

    if args.write_config is not None:
        TrainConfig(data=str(args.data or "data/synth")).save(args.write_config)
        print(json.dumps({"config": str(args.write_config)}))
        return 0
    if args.run is None:
        raise ValueError("--run DIR is required (or --write-config FILE)")
    if args.config is not None:
        cfg = TrainConfig.load(args.config)
    elif args.data is not None:
        cfg = TrainConfig(data=str(args.data))
    else:
        raise ValueError("give --config FILE or --data DIR")
    if args.data is not None:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), "data": str(args.data)})
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]

    from liveact.training.run import train

    summary = train(cfg, args.run, stages, progress=not args.no_progress)
    print(json.dumps({"run": str(args.run), **summary}))
    return 0
