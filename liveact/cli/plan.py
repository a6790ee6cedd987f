"""``liveact plan``: will it fit? A dry run of the serving code at real size on the meta device.

For each configuration (tensor-parallel degree x size x KV cache) one session runs through the
generator's code on the meta device while every allocation is counted (``liveact.plan``); each is
then set against each GPU. Without a GPU, in about 7 s per configuration on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from liveact.config import preset_names
from liveact.plan.dryrun import KV_CACHES, dry_run, dry_run_decoder
from liveact.plan.ledger import PlacementError
from liveact.plan.table import GPUS, SIZES, TPS, cases, gpu_named, render, row

DEFAULT_CHECKPOINT_MBPS = 500.0  # a per-rank budget a 25 GbE link to Redis sustains beside the pod's other traffic

DESCRIPTION = (
    "Will it fit? For each configuration (tensor-parallel degree x size x KV cache) one session of the "
    "generator's own code runs at real size on PyTorch's meta device while every allocation is counted, "
    "then each is set against each GPU (H100 80GB, H200 141GB). No GPU needed: about 7 s per configuration. "
    "Method and the liveact-18b table: docs/memory-plan.md."
)
EPILOG = """\
what the columns say (GiB, rank 0: the busiest rank, which also holds the encoders):
  weights   the DiT shard + VAE, umT5, CLIP and wav2vec2
  caches    one session's ConvKV caches
  act       the most a chunk (3 denoising steps, cache update) or its checkpoint copy allocates
  cond      the same for a session's start (VAE encode of the reference, umT5, CLIP)
  peak      the highest the dry run reached with --sessions sessions
  usable    the GPU's memory less the CUDA context and a fragmentation share
  sessions  the most sessions that fit
  decoder   the decoder pod's GPU at its highest (its own pod)
  redis     one session's checkpoints in Redis at their highest (the shared sink slots and conditioning
            once, 2 versions' changed tensors and the one being written; the same at every tp);
            --json adds each version's bytes and the interval a --checkpoint-mbps budget allows

examples:
  liveact plan                                  the whole table for liveact-18b
  liveact plan --gpu H100-80GB --size 416x720   what fits on an H100 at 416x720
  liveact plan --json > plan.json               the figures for a script
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="will it fit? per-GPU memory of each configuration, from a dry run at real size (no GPU needed)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="liveact-18b", choices=preset_names(), help="model preset (default liveact-18b)")
    p.add_argument(
        "--tp", default=",".join(map(str, TPS)), help="tensor-parallel degrees, comma-separated (default 1,2,4,8)"
    )
    p.add_argument(
        "--size", default=",".join(f"{w}x{h}" for w, h in SIZES),
        help="video sizes WIDTHxHEIGHT, comma-separated (default 416x720,512x512,720x1280)",
    )  # fmt: skip
    p.add_argument("--kv-cache", default=",".join(KV_CACHES), help="KV cache storage: bf16, fp8 or both (default)")
    p.add_argument("--gpu", default=",".join(g.name for g in GPUS), help="GPUs, comma-separated (default: all)")
    p.add_argument("--sessions", type=int, default=1, help="concurrent sessions per generator (default 1)")
    p.add_argument(
        "--checkpoint-mbps", type=float, default=DEFAULT_CHECKPOINT_MBPS,
        help=f"per-rank checkpoint write budget, MB/s, for checkpoint_interval_s (default {DEFAULT_CHECKPOINT_MBPS:g})",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help='print {"configs": [...]} instead of the table')
    p.set_defaults(func=run)


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        try:
            w, h = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise ValueError(f"--size {part!r}: expected WIDTHxHEIGHT, e.g. 416x720") from None
        if w <= 0 or h <= 0 or w % 16 or h % 16:
            raise ValueError(f"--size {part!r}: width and height must be positive multiples of 16")
        out.append((w, h))
    return out


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected comma-separated integers") from None


def run(args: argparse.Namespace) -> int:
    sizes, tps = _sizes(args.size), _ints(args.tp, "--tp")
    kvs = args.kv_cache.split(",")
    if bad := [k for k in kvs if k not in KV_CACHES]:
        raise ValueError(f"--kv-cache {bad[0]!r}: choose from {', '.join(KV_CACHES)}")
    gpus = [gpu_named(name) for name in args.gpu.split(",")]
    if args.sessions < 1:
        raise ValueError("--sessions must be at least 1")
    if args.checkpoint_mbps < 0:
        raise ValueError("--checkpoint-mbps must be >= 0 (0: no budget)")
    todo = cases(args.preset, tps, sizes, kvs)
    rows, decoders = [], {}
    for case in tqdm(todo, desc="dry runs", unit="config", file=sys.stderr, disable=None):
        try:
            result = dry_run(case)
        except PlacementError as exc:
            print(f"liveact plan: {case.size} tp={case.tp} kv={case.kv_cache}: {exc}", file=sys.stderr)
            return 1
        if (case.width, case.height) not in decoders:
            decoders[case.width, case.height] = dry_run_decoder(args.preset, case.width, case.height)
        decoder = decoders[case.width, case.height]
        rows += [row(result, decoder, gpu, args.sessions, args.checkpoint_mbps) for gpu in gpus]
    if args.json:
        print(
            json.dumps(
                {"preset": args.preset, "sessions": args.sessions, "configs": [r.to_dict() for r in rows]}, indent=1
            )
        )
    else:
        print(render(rows))
    return 0
