"""``liveact info``: parameters per component and per-session state sizes, from the config alone."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from liveact.config import RESOLUTIONS, LiveActConfig, get_preset
from liveact.memory.sizing import session_state
from liveact.model.loading import build_model

TP_DEGREES = (1, 2, 4)


def parameter_breakdown(config: LiveActConfig) -> dict[str, int]:
    """Parameter counts grouped by component (top-level module, block sub-module)."""
    model = build_model(config, device="meta")
    counts: Counter[str] = Counter()
    for name, p in model.named_parameters():
        parts = name.split(".")
        if parts[0] == "blocks":
            sub = parts[2]
            group = {
                "norm1": "blocks.norms",
                "norm2": "blocks.norms",
                "norm3": "blocks.norms",
                "norm_x": "blocks.norms",
                "modulation": "blocks.modulation",
            }.get(sub, f"blocks.{sub}")
            if sub == "self_attn" and parts[3].startswith("memory_proj"):
                group = "blocks.convkv_compressor"
            counts[group] += p.numel()
        else:
            counts[parts[0]] += p.numel()
    counts["total"] = sum(v for k, v in counts.items())
    return dict(sorted(counts.items()))


def info(config: LiveActConfig) -> dict:
    states = [
        session_state(config, w, h, kv, tp).to_dict()
        for kv in ("bf16", "fp8")
        for (w, h) in RESOLUTIONS
        for tp in TP_DEGREES
        if config.model.num_heads % tp == 0
    ]
    return {
        "preset": config.name,
        "config": config.to_dict(),
        "parameters": parameter_breakdown(config),
        "session_state": states,
    }


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="parameters per component and per-session state sizes of a preset",
        description="Print the preset's parameter count per component and the per-session state "
        "(resident ConvKV cache, checkpoint size, conditioning) for bf16 and fp8 caches at 416x720 and "
        "512x512, per tensor-parallel degree. Computed from the config; no weights are loaded.",
    )
    p.add_argument("--preset", default="liveact-18b", help="preset name (default: liveact-18b)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = info(get_preset(args.preset))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"preset {data['preset']}")
    print("parameters:")
    for k, v in data["parameters"].items():
        print(f"  {k:28s} {v:>16,d}  ({v / 1e9:.3f} B)")
    print("per-session state (resident = all cache slots held while running; checkpoint = persistent slots):")
    print(f"  {'kv':5s} {'WxH':9s} {'tp':>2s} {'resident/rank':>14s} {'checkpoint/rank':>16s} {'conditioning':>13s}")
    for s in data["session_state"]:
        print(
            f"  {s['kv_dtype']:5s} {s['pixel_w']}x{s['pixel_h']:<5d} {s['tp']:>2d} "
            f"{_human(s['per_rank_resident_bytes']):>14s} {_human(s['per_rank_checkpoint_bytes']):>16s} "
            f"{_human(s['conditioning_bytes']):>13s}"
        )
    return 0
