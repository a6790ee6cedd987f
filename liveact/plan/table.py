"""``liveact plan``'s table: each configuration's dry run set against the GPUs it would run on.

A configuration fits when rank 0's peak (the dry run's, for the sessions asked) is at most the GPU's
usable bytes: its memory less what the caching allocator never sees (the CUDA context, cuBLAS and
NCCL workspaces) and a share lost to fragmentation (``available_bytes``). ``max_sessions`` is the
most sessions that fit.

More than one session: resident state adds up per session, and so do the transients of what may run
at once. With one rank (tp = 1) every session's chunk runs in its own thread; with tensor-parallel
ranks chunks run one at a time (``TensorParallelRanks.call``); a session starting (its conditioning)
may run beside them. One session is exactly the dry run's peak.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from liveact.plan.dryrun import CONDITIONING, KV_CACHES, DecoderRun, PlanCase, RankRun
from liveact.plan.redis_plan import redis_plan
from liveact.vae.config import get_vae_preset
from liveact.vae.session import context_state_nbytes

GIB = 1 << 30
MIB = 1 << 20
CUDA_CONTEXT_BYTES = 1 * GIB  # the CUDA context of a process (already taken when free memory is read)
WORKSPACE_BYTES = 1 * GIB  # cuBLAS/cuDNN workspaces and NCCL buffers: device memory outside the allocator
FRAGMENTATION_SHARE = 0.05  # of the GPU's memory, lost between the caching allocator's blocks
MAX_SESSIONS_SHOWN = 64  # max_sessions is counted up to this


@dataclass(frozen=True)
class Gpu:
    name: str
    total_bytes: int  # what the driver reports (nvidia-smi "Total")
    product_labels: tuple[str, ...]  # nvidia.com/gpu.product values of such nodes (the Helm chart's gpu.products)

    @property
    def usable_bytes(self) -> int:
        return available_bytes(self.total_bytes - CUDA_CONTEXT_BYTES, self.total_bytes)


def available_bytes(free: int, total: int) -> int:
    """What the caching allocator can hold at its peak on a device with ``free`` of ``total`` bytes free."""
    return free - WORKSPACE_BYTES - int(total * FRAGMENTATION_SHARE)


GPUS = (
    Gpu("H100-80GB", 81_559 * MIB, ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-NVL")),
    Gpu("H200-141GB", 143_771 * MIB, ("NVIDIA-H200", "NVIDIA-H200-NVL")),
)
TPS = (1, 2, 4, 8)
SIZES = ((416, 720), (512, 512), (720, 1280))  # width x height


def gpu_named(name: str) -> Gpu:
    for g in GPUS:
        if g.name.lower() == name.lower() or name in g.product_labels:
            return g
    raise ValueError(f"unknown GPU {name!r}; choose one of {[g.name for g in GPUS]}")


def cases(
    preset: str, tps: Iterable[int], sizes: Iterable[tuple[int, int]], kv_caches: Iterable[str]
) -> list[PlanCase]:
    return [
        PlanCase(preset=preset, tp=tp, width=w, height=h, kv_cache=kv)
        for (w, h) in sizes
        for kv in kv_caches
        for tp in tps
    ]


def peak_bytes(run: RankRun, sessions: int) -> int:
    """Rank 0's device peak with ``sessions`` sessions (see the module docstring)."""
    if sessions < 1:
        raise ValueError(f"sessions must be at least 1, got {sessions}")
    if sessions == 1:
        return run.peak
    steps = sessions if run.case.tp == 1 else 1
    starting = run.phase(CONDITIONING).transient
    return run.steady_resident + (sessions - 1) * run.session_resident + steps * run.step_transient + starting


def max_sessions(run: RankRun, available: int) -> int:
    """The most sessions whose peak is within ``available`` bytes (0: not even one)."""
    n = 0
    while n < MAX_SESSIONS_SHOWN and peak_bytes(run, n + 1) <= available:
        n += 1
    return n


@dataclass(frozen=True)
class PlanRow:
    """One configuration on one GPU; bytes are rank 0's (the busiest rank) unless named otherwise."""

    tp: int
    size: str
    kv_cache: str
    gpu: str
    sessions: int
    peak_bytes_per_rank: int
    weights_bytes_per_rank: int  # the DiT shard and, on rank 0, the VAE, umT5, CLIP and wav2vec2
    dit_weights_bytes_per_rank: int
    cache_bytes_per_rank: int  # one session's ConvKV caches
    session_bytes_per_rank: int  # one session's resident state: caches and conditioning
    activation_peak_bytes: int  # the most a chunk (or its snapshot) allocates above what is resident
    conditioning_peak_bytes: int  # the same for a session's start (VAE encode, umT5, CLIP)
    worker_peak_bytes: int  # a tensor-parallel worker rank (no encoders); equal to rank 0's DiT part at tp 1
    checkpoint_bytes_per_rank: int  # host bytes of one rank's checkpoint copy (its capture buffers, per session)
    redis_first_bytes: int  # Redis memory of a session's first checkpoint version (every rank)
    redis_later_bytes: int  # what each later version adds (the sink slots and conditioning are shared)
    redis_session_bytes: int  # steady: the shared tensors + keep_versions versions
    redis_peak_bytes: int  # while a version is written: one version more
    checkpoint_write_first_bytes_per_rank: int  # bytes the busiest rank sends for the first version
    checkpoint_write_later_bytes_per_rank: int  # and for each later one
    checkpoint_mbps: float  # the per-rank write budget the interval is computed at
    checkpoint_interval_s: float  # the shortest spacing of later checkpoints at that budget
    decoder_weights_bytes: int  # the decoder pod's GPU
    decoder_peak_bytes: int
    usable_bytes: int
    headroom_bytes: int
    fits: bool
    decoder_fits: bool
    max_sessions: int

    def to_dict(self) -> dict[str, int | str | bool]:
        return dataclasses.asdict(self)


def row(run: RankRun, decoder: DecoderRun, gpu: Gpu, sessions: int = 1, checkpoint_mbps: float = 0.0) -> PlanRow:
    peak = peak_bytes(run, sessions)
    config = run.case.config()
    decoder_state = context_state_nbytes(get_vae_preset(config.vae), run.case.width, run.case.height)
    redis = redis_plan(config, dict(run.checkpoint_tensors), run.case.tp, decoder_state_bytes=decoder_state)
    return PlanRow(
        tp=run.case.tp,
        size=run.case.size,
        kv_cache=run.case.kv_cache,
        gpu=gpu.name,
        sessions=sessions,
        peak_bytes_per_rank=peak,
        weights_bytes_per_rank=run.dit_weights + run.engine_weights,
        dit_weights_bytes_per_rank=run.dit_weights,
        cache_bytes_per_rank=run.cache,
        session_bytes_per_rank=run.session_resident,
        activation_peak_bytes=run.step_transient,
        conditioning_peak_bytes=run.phase(CONDITIONING).transient,
        worker_peak_bytes=run.worker_peak,
        checkpoint_bytes_per_rank=run.checkpoint_host,
        redis_first_bytes=redis.first_bytes,
        redis_later_bytes=redis.later_bytes,
        redis_session_bytes=redis.session_bytes,
        redis_peak_bytes=redis.peak_bytes,
        checkpoint_write_first_bytes_per_rank=redis.first_write_per_rank,
        checkpoint_write_later_bytes_per_rank=redis.later_write_per_rank,
        checkpoint_mbps=checkpoint_mbps,
        checkpoint_interval_s=round(redis.interval_s(checkpoint_mbps), 2),
        decoder_weights_bytes=decoder.weights,
        decoder_peak_bytes=decoder.peak,
        usable_bytes=gpu.usable_bytes,
        headroom_bytes=gpu.usable_bytes - peak,
        fits=peak <= gpu.usable_bytes,
        decoder_fits=decoder.peak <= gpu.usable_bytes,
        max_sessions=max_sessions(run, gpu.usable_bytes),
    )


def fitting(rows: Sequence[PlanRow], gpu: str, size: str | None = None) -> list[PlanRow]:
    """The rows that fit on ``gpu`` (at ``size``), smallest tp first."""
    return sorted(
        (r for r in rows if r.fits and r.gpu == gpu and (size is None or r.size == size)),
        key=lambda r: (r.tp, KV_CACHES.index(r.kv_cache)),
    )


def render(rows: Sequence[PlanRow]) -> str:
    """A fixed-width table, GiB with one decimal."""
    head = (
        "size",
        "kv",
        "tp",
        "gpu",
        "weights",
        "caches",
        "act",
        "cond",
        "peak",
        "usable",
        "fits",
        "sessions",
        "decoder",
        "redis",
    )
    lines = [head]
    for r in rows:
        lines.append((
            r.size, r.kv_cache, str(r.tp), r.gpu, _gib(r.weights_bytes_per_rank), _gib(r.cache_bytes_per_rank),
            _gib(r.activation_peak_bytes), _gib(r.conditioning_peak_bytes), _gib(r.peak_bytes_per_rank),
            _gib(r.usable_bytes), "yes" if r.fits else "NO", str(r.max_sessions), _gib(r.decoder_peak_bytes),
            _gib(r.redis_peak_bytes),
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)


def _gib(n: int) -> str:
    return f"{n / GIB:.1f}"
