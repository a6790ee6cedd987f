"""Flatness of the ConvKV memory against the unbounded-cache baseline.

For each mode, streams chunks through the real 3-step loop and records per-chunk latency and the
resident cache bytes. ConvKV must stay flat (latency ratio last-20 / first-20 near 1, bytes
constant); the baseline keeps every frame, so its bytes and latency grow.
"""

from __future__ import annotations

import time

import torch

from bench.common import bench_session, median_ms
from liveact.config import LiveActConfig
from liveact.sampling.chunking import video_frames_per_chunk
from liveact.sampling.noise import SeededNoise
from liveact.sampling.stream import StreamingSampler
from liveact.testing import fresh_model

WINDOW = 20  # chunks in the first / last latency medians


def stream(config: LiveActConfig, pixel: int, chunks: int, unbounded: bool, seed: int = 0) -> dict:
    model = fresh_model(config, seed)
    cond, feats = bench_session(model, pixel, chunks, seed)
    sampler = StreamingSampler(model, cond, SeededNoise(seed), unbounded=unbounded)
    times: list[float] = []
    cpu: list[float] = []  # process CPU time: less sensitive to other tenants of a shared machine
    sizes: list[int] = []
    for _ in range(chunks):
        t0, c0 = time.perf_counter(), time.process_time()
        sampler.next_chunk(feats)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        sizes.append(sampler.memory.nbytes())
    first, last = median_ms(times[:WINDOW]), median_ms(times[-WINDOW:])
    cpu_first, cpu_last = median_ms(cpu[:WINDOW]), median_ms(cpu[-WINDOW:])
    later = times[1:] or times
    frames = video_frames_per_chunk(config, 1)
    return {
        "mode": "unbounded" if unbounded else "convkv",
        "chunks": chunks,
        "median_first20_ms": round(first, 3),
        "median_last20_ms": round(last, 3),
        "latency_ratio": round(last / first, 4),
        "cpu_median_first20_ms": round(cpu_first, 3),
        "cpu_median_last20_ms": round(cpu_last, 3),
        "cpu_ratio": round(cpu_last / cpu_first, 4),
        "cache_bytes_first": sizes[0],
        "cache_bytes_last": sizes[-1],
        "cache_bytes_distinct_after_chunk1": len(set(sizes[1:])),
        "video_fps": round(frames * len(later) / sum(later), 2),
    }


@torch.no_grad()  # scoped: a process-wide set_grad_enabled(False) leaked into whatever ran next (tests)
def run(config: LiveActConfig, pixel: int, chunks: int, baseline_chunks: int, seed: int = 0) -> dict:
    return {
        "benchmark": "memory",
        "preset": config.name,
        "pixels": f"{pixel}x{pixel}",
        "threads": torch.get_num_threads(),
        "convkv": stream(config, pixel, chunks, unbounded=False, seed=seed),
        "unbounded": stream(config, pixel, baseline_chunks, unbounded=True, seed=seed),
    }
