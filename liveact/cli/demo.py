"""``liveact demo``: stream the tiny model's chunked loop in this process and report its speed.

Until ``liveact animate`` (video out) lands, the demo runs the core loop the animation is built on:
the tiny preset, a 128x128 stream, 3 denoising steps per chunk against per-step ConvKV caches,
with a progress bar and a closing summary (fps, constant cache bytes).
"""

from __future__ import annotations

import argparse
import json
import time

from tqdm import tqdm

from liveact.config import get_preset
from liveact.sampling.chunking import total_video_frames
from liveact.sampling.noise import SeededNoise
from liveact.sampling.stream import StreamingSampler


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="stream the tiny model's chunked loop and report fps", description=__doc__)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--chunks", type=int, default=40, help="chunks to stream (default: 40)")
    p.add_argument("--pixels", type=int, default=128, help="square frame size (default: 128)")
    p.add_argument("--fps", type=float, default=20.0, help="target video fps for the real-time check (default: 20)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.common import fresh_model, synthetic_session

    if args.chunks < 1:
        raise ValueError("--chunks must be at least 1")
    config = get_preset(args.preset)
    model = fresh_model(config, args.seed)
    cond, feats = synthetic_session(model, args.pixels, args.chunks, args.seed)
    sampler = StreamingSampler(model, cond, SeededNoise(args.seed))
    t0 = time.perf_counter()
    sizes = set()
    with tqdm(total=args.chunks, unit="chunk", desc=f"{config.name} {args.pixels}x{args.pixels}") as bar:
        for _ in range(args.chunks):
            sampler.next_chunk(feats)
            sizes.add(sampler.memory.nbytes())
            elapsed = time.perf_counter() - t0
            frames = total_video_frames(config, sampler.chunk_index)
            bar.set_postfix(fps=f"{frames / elapsed:.1f}")
            bar.update()
    elapsed = time.perf_counter() - t0
    frames = total_video_frames(config, args.chunks)
    summary = {
        "preset": config.name,
        "chunks": args.chunks,
        "video_frames": frames,
        "seconds": round(elapsed, 3),
        "generated_fps": round(frames / elapsed, 1),
        "realtime_at_fps": args.fps,
        "realtime": frames / elapsed >= args.fps,
        "cache_bytes": sorted(sizes),
    }
    print(json.dumps(summary, indent=2))
    return 0
