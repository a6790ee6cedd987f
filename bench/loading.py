"""Loading the DiT at real widths: peak host memory against the bytes of the weights, TP=1 and each TP rank.

A mid-size model (liveact-18b's widths and key names, ``--layers`` blocks instead of 40: 1.45 GiB in
bf16 at one block) is written as sharded bf16 safetensors with random values, then loaded in a fresh
child process per case, exactly as the generator loads it: TP=1 through ``load_dit`` and rank r of
TP=N through ``load_dit_shard`` (the rank's slices only). Each child resets the kernel's peak-RSS mark
after its imports and the meta model (``/proc/self/clear_refs``), loads into the runtime dtype on the
CPU (every tensor is read into memory it owns: ``SafetensorsFile``, no memory map), and reports the
growth of the peak (VmHWM) over the RSS before loading. Target: growth / weights bytes <= 1.15,
i.e. no full-precision copy and at most a tensor's worth of transients. The same accounting for the
40-block liveact-18b is computed on the meta device (weights bytes per rank).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from liveact.config import LiveActConfig, get_preset
from liveact.model.dit import parameter_dtype
from liveact.model.loading import build_model, save_state_dir
from liveact.parallel.tp import LocalComm, shard_dit
from liveact.source_tree import child_env

PRESET = "liveact-18b"
DEFAULT_LAYERS = 1
DEFAULT_SHARD_MB = 256  # the release's shards are larger; smaller ones only lower the peak
TARGET_RATIO = 1.15
CHILD_TIMEOUT_S = 1800
MIB = 2**20


def mid_config(layers: int) -> LiveActConfig:
    """liveact-18b with ``layers`` blocks: real widths, real key names, fewer layers."""
    config = get_preset(PRESET)
    return dataclasses.replace(config, model=dataclasses.replace(config.model, num_layers=layers))


def write_checkpoint(config: LiveActConfig, directory: Path, shard_mb: int, seed: int = 0) -> int:
    """Random bf16 weights for ``config`` as shards of at most ``shard_mb`` MiB; returns their bytes."""
    g = torch.Generator().manual_seed(seed)
    shapes = {k: v.shape for k, v in build_model(config, device="meta").state_dict().items()}
    state = {k: (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16) for k, shape in shapes.items()}
    save_state_dir(state, directory, max_shard_bytes=shard_mb * MIB)
    return sum(t.numel() * t.element_size() for t in state.values())


def weights_bytes(config: LiveActConfig, tp: int, rank: int, dtype: torch.dtype) -> int:
    """Bytes of rank ``rank``'s weights in ``dtype`` (``FP32_PARAMETERS`` in float32), on the meta device."""
    model = shard_dit(build_model(config, device="meta"), LocalComm(rank, tp, lambda t: None))
    return sum(p.numel() * parameter_dtype(name, dtype).itemsize for name, p in model.state_dict().items())


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(directory: Path, layers: int, tp: int, rank: int, dtype_name: str) -> dict:
    """One load in this (fresh) process: the figures as a dict."""
    from liveact.parallel.loading import load_dit_shard
    from liveact.pipeline.engine import DTYPES, load_dit

    config, dtype, cpu = mid_config(layers), DTYPES[dtype_name], torch.device("cpu")
    build_model(config, device="meta")  # warm the code paths the load uses before the mark is reset
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    if tp == 1:
        model = load_dit(config, directory, cpu, dtype=dtype)
    else:
        model = load_dit_shard(config, directory, cpu, dtype, LocalComm(rank, tp, lambda t: None))
    load_s = time.perf_counter() - t0
    loaded = sum(p.numel() * p.element_size() for p in model.parameters())
    growth = (_status_kib("VmHWM") - before) * 1024
    return {
        "tp": tp, "rank": rank, "dtype": dtype_name, "weights_bytes": loaded,
        "expected_weights_bytes": weights_bytes(config, tp, rank, dtype), "peak_rss_growth_bytes": growth,
        "ratio": round(growth / loaded, 4), "load_s": round(load_s, 3),
    }  # fmt: skip


def run(layers: int = DEFAULT_LAYERS, tps: tuple[int, ...] = (1, 2), shard_mb: int = DEFAULT_SHARD_MB) -> dict:
    config = mid_config(layers)
    with tempfile.TemporaryDirectory(prefix="liveact-load-") as tmp:
        directory = Path(tmp)
        file_bytes = write_checkpoint(config, directory, shard_mb)
        cases = []
        for tp in tps:
            for rank in range(tp) if tp > 1 else (0,):
                cmd = [sys.executable, "-m", "bench.loading", "--child", str(directory), "--layers", str(layers),
                       "--tp", str(tp), "--rank", str(rank)]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT_S,
                                     env=child_env(os.environ))  # fmt: skip
                if out.returncode != 0:
                    raise RuntimeError(f"loading tp={tp} rank={rank} failed:\n{out.stderr[-3000:]}")
                cases.append(json.loads(out.stdout.strip().splitlines()[-1]))
    full = get_preset(PRESET)
    per_rank_18b = {tp: weights_bytes(full, tp, 0, torch.bfloat16) for tp in (1, 2, 4, 8)}
    return {
        "preset": f"{PRESET} widths, {layers} block(s)",
        "checkpoint_bytes": file_bytes,
        "shard_mib": shard_mb,
        "target_ratio": TARGET_RATIO,
        "cases": cases,
        "max_ratio": max(c["ratio"] for c in cases),
        "liveact_18b_weights_bytes_per_rank_bf16": per_rank_18b,
        "liveact_18b_rank_share": {tp: round(b / per_rank_18b[1], 4) for tp, b in per_rank_18b.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--layers", type=int, default=DEFAULT_LAYERS)
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--dtype", default="bf16")
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.layers, args.tp, args.rank, args.dtype)))
        return 0
    print(json.dumps(run(args.layers), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
