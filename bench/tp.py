"""``liveact bench tp``: a tensor-parallel rollout on CPU ranks (gloo) against one process.

The same seeded model (``liveact.parallel.launch.tp_test_config``: the tiny preset at dim 64,
4 heads, 2 layers, fp32 caches) and the same session inputs stream ``chunks`` chunks twice: in this
process (TP=1, one intra-op thread, as each rank has) and as ``ranks`` torchrun processes with the
DiT sharded by heads (``liveact.parallel.tp``). Printed: the largest absolute difference of each
chunk's clean latents (target: within fp32 tolerance, 1e-4), ConvKV cache bytes per rank, and
seconds per chunk of each rollout (on this 2-core CPU the point is equality, not speed: every
all-reduce crosses processes). The torchrun start-up is not in the timed part.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from liveact.parallel.launch import build_inputs, rollout, run_torchrun
from liveact.parallel.shm import shm_buffers
from liveact.testing import tp_test_config

TOLERANCE = 1e-4  # fp32: the sharded all-reduce sums in another order than one matmul


def run(ranks: int, chunks: int) -> dict:
    config = tp_test_config()
    if config.model.num_heads % ranks:
        raise ValueError(f"--ranks {ranks} must divide the test model's {config.model.num_heads} heads")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, cond, feats = build_inputs(config, chunks)
        t0 = time.perf_counter()
        reference, reference_bytes = rollout(model, cond, feats, chunks)
        reference_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    before = shm_buffers()
    with tempfile.TemporaryDirectory(prefix="liveact-bench-tp-") as tmp:
        out = Path(tmp) / "latents.safetensors"
        proc = run_torchrun(out, nproc=ranks, chunks=chunks)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun with {ranks} ranks failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        got = load_file(str(out))
    diffs = [float((got[f"chunk{i}"] - reference[i]).abs().max()) for i in range(chunks)]
    return {
        "benchmark": "tp",
        "ranks": ranks,
        "backend": "gloo (CPU), DeepSpeed LinearLayer / LinearAllreduce",
        "model": {"dim": config.model.dim, "heads": config.model.num_heads, "layers": config.model.num_layers},
        "chunks": chunks,
        "max_abs_diff": max(diffs),
        "max_abs_diff_per_chunk": diffs,
        "tolerance": TOLERANCE,
        "within_tolerance": max(diffs) <= TOLERANCE,
        "cache_bytes_tp1": reference_bytes,
        "cache_bytes_per_rank": [int(b) for b in got["cache_bytes"]],
        "seconds_per_chunk_tp1": round(reference_s / chunks, 4),
        "seconds_per_chunk_tp": round(float(got["seconds"][0]) / chunks, 4),
        "shm_buffers_left": len(shm_buffers() - before),
    }
