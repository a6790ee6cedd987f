"""``liveact data ...``: synthetic training data for the built-in tiny model (code in ``liveact.data``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="build training data: procedurally rendered talking heads with speech",
        description="Training data for the built-in tiny model, made locally (no downloads).",
    )
    dsub = p.add_subparsers(dest="data", metavar="ACTION", required=True)
    s = dsub.add_parser(
        "synth",
        help="render a dataset of synthetic talking-head clips with espeak-ng speech",
        description="Write N clips of S seconds to DIR: clip_00000.npz ... (frames, 16 kHz audio, true mouth "
        "opening/width, blinks, head pose, the neutral reference image), manifest.jsonl (text, voice and "
        "identity per clip) and dataset.json (the settings). Each clip gets its own random identity "
        "(face shape, skin, hair, eyes, background), voice, sentences, blinks and head motion; clip i is "
        "fully determined by --seed and i, so re-running with more --clips extends a dataset. "
        "Needs espeak-ng and ffmpeg (scripts/setup installs both).",
    )
    s.add_argument("--out", required=True, type=Path, help="output directory (created if missing)")
    s.add_argument("--clips", type=int, required=True, help="number of clips to write")
    s.add_argument("--seconds", type=float, required=True, help="length of every clip in seconds")
    s.add_argument("--size", type=int, default=64, help="frame width and height in pixels (default: 64)")
    s.add_argument("--fps", type=float, default=20.0, help="video frames per second (default: 20)")
    s.add_argument("--seed", type=int, default=0, help="dataset seed; clip i uses a seed derived from (seed, i)")
    s.add_argument("--workers", type=int, default=1, help="processes rendering clips in parallel (default: 1)")
    s.add_argument(
        "--preview",
        type=Path,
        default=None,
        metavar="FILE.mp4",
        help="also write the first clip as an MP4 with its audio, to look at and listen to",
    )
    s.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from liveact.data.clip import read_clip, read_dataset_info, write_dataset

    out = write_dataset(args.out, args.clips, args.seconds, args.size, args.fps, args.seed, args.workers)
    if args.preview is not None:
        from liveact.media import Mp4Writer

        clip = read_clip(out / "clip_00000.npz")
        args.preview.parent.mkdir(parents=True, exist_ok=True)
        with Mp4Writer(args.preview, clip.fps, args.size, args.size, audio=(clip.audio, clip.sample_rate)) as w:
            w.write(clip.frames)
    print(json.dumps({"out": str(out), **read_dataset_info(out)}))
    return 0
