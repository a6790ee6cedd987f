"""A tensor-parallel streaming rollout, one process per rank (CPU / gloo), started by torchrun.

Every rank builds the same model from the same seed and the same session inputs, shards the model
(``shard_dit`` with ``DeepSpeedComm``), streams ``--chunks`` chunks with ``SeededNoise`` and rank 0
writes the clean latents and every rank's ConvKV cache bytes to OUT (safetensors)::

    DS_ACCELERATOR=cpu LOCAL_SIZE=2 OMP_NUM_THREADS=1 \\
        python -m torch.distributed.run --nproc_per_node=2 -m liveact.parallel.launch OUT.safetensors

``LOCAL_SIZE`` must equal the rank count or DeepSpeed's shared-memory all-reduce segfaults.
``run_torchrun`` does all of this from Python and removes the /dev/shm all-reduce buffers the run
leaves behind (only those that did not exist before).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from liveact.config import LiveActConfig
from liveact.model.dit import LiveActDiT
from liveact.parallel.shm import remove, shm_buffers
from liveact.sampling.denoise import Conditioning
from liveact.sampling.noise import SeededNoise
from liveact.sampling.stream import StreamingSampler
from liveact.testing import fresh_model, synthetic_session, tp_test_config

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
KV_CHOICES = ("model", "fp8")


def build_inputs(
    config: LiveActConfig,
    chunks: int,
    latent: int = 8,
    model_seed: int = 0,
    session_seed: int = 1,
    dtype: torch.dtype = torch.float32,
) -> tuple[LiveActDiT, Conditioning, torch.Tensor]:
    """The (unsharded) model in ``dtype``, conditioning and audio features; identical on every rank.

    The weights and conditioning are drawn in float32 and cast, so every dtype runs the same model.
    """
    model = fresh_model(config, model_seed)
    cond, feats = synthetic_session(model, latent, chunks, session_seed)
    model.to_runtime_dtype(dtype)
    cond = Conditioning(y=cond.y.to(dtype), context=cond.context.to(dtype))
    return model, cond, feats


def runtime_case(config: LiveActConfig, kv_cache: str) -> LiveActConfig:
    """``config`` with its caches in the model's dtype ("model") or FP8 ("fp8")."""
    if kv_cache not in KV_CHOICES:
        raise ValueError(f"kv cache {kv_cache!r} must be one of {KV_CHOICES}")
    return dataclasses.replace(config, memory=dataclasses.replace(config.memory, fp8=kv_cache == "fp8"))


def rollout(
    model: LiveActDiT, cond: Conditioning, feats: torch.Tensor, chunks: int, noise_seed: int = 0
) -> tuple[list[torch.Tensor], int]:
    """Clean latents of ``chunks`` chunks and the sampler's ConvKV cache bytes."""
    sampler = StreamingSampler(model, cond, SeededNoise(noise_seed))
    latents = [sampler.next_chunk(feats).latent for _ in range(chunks)]
    return latents, sampler.memory.nbytes()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="safetensors file rank 0 writes")
    ap.add_argument("--chunks", type=int, default=5)
    ap.add_argument("--export-after", type=int, default=0, help="each rank writes its sampler state after N chunks")
    ap.add_argument("--resume-from", type=Path, default=None, help="each rank continues from its state in this dir")
    ap.add_argument("--state-dir", type=Path, default=None, help="where --export-after writes rank<r>.safetensors")
    ap.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="the DiT's runtime dtype")
    ap.add_argument("--kv-cache", default="model", choices=KV_CHOICES, help="cache storage: the model's dtype or fp8")
    args = ap.parse_args(argv)

    import deepspeed
    import deepspeed.comm as dist
    from safetensors.torch import save_file

    from liveact.parallel.tp import DeepSpeedComm, shard_dit

    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if int(os.environ.get("LOCAL_SIZE", "0")) != world:
        raise SystemExit(f"set LOCAL_SIZE={world} (DeepSpeed's shm all-reduce needs it)")
    group = dist.new_group(list(range(world)))

    config = runtime_case(tp_test_config(), args.kv_cache)
    model, cond, feats = build_inputs(config, args.chunks, dtype=DTYPES[args.dtype])
    shard_dit(model, DeepSpeedComm(group))
    from safetensors.torch import load_file

    from liveact.sampling.state import export_sampler, restore_sampler

    if args.resume_from is not None:  # this rank's shard of a checkpoint: the chunks after it
        sampler = restore_sampler(model, load_file(str(args.resume_from / f"rank{rank}.safetensors")), cond.y.device)
    else:
        sampler = StreamingSampler(model, cond, SeededNoise(0))
    first = sampler.chunk_index
    t0 = time.perf_counter()
    latents = []
    for _ in range(first, args.chunks):
        latents.append(sampler.next_chunk(feats).latent)
        if args.export_after and sampler.chunk_index == args.export_after:
            args.state_dir.mkdir(parents=True, exist_ok=True)
            save_file(export_sampler(sampler), str(args.state_dir / f"rank{rank}.safetensors"))
    elapsed = time.perf_counter() - t0
    cache_bytes = sampler.memory.nbytes()
    per_rank = torch.zeros(world, dtype=torch.int64)
    per_rank[rank] = cache_bytes
    dist.all_reduce(per_rank, group=group)
    if rank == 0:
        tensors = {f"chunk{first + i}": t.contiguous() for i, t in enumerate(latents)}
        tensors["cache_bytes"] = per_rank
        tensors["seconds"] = torch.tensor([elapsed], dtype=torch.float64)  # rank 0's rollout wall time
        save_file(tensors, str(args.out))
        print(f"tp={world}: {args.chunks} chunks in {elapsed:.2f} s, cache bytes per rank {per_rank.tolist()}")
    dist.barrier()
    dist.destroy_process_group()
    return 0


def run_torchrun(
    out: Path, nproc: int = 2, chunks: int = 5, timeout: float = 300.0, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Run ``main`` under torchrun with ``nproc`` CPU ranks; remove the shm buffers it leaves.

    ``extra``: more ``main`` options (``--export-after N --state-dir D``, ``--resume-from D``).
    """
    env = dict(os.environ, DS_ACCELERATOR="cpu", LOCAL_SIZE=str(nproc), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "liveact.parallel.launch", str(out), "--chunks", str(chunks), *extra]
    before = shm_buffers()
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        remove(shm_buffers() - before)


if __name__ == "__main__":
    raise SystemExit(main())
