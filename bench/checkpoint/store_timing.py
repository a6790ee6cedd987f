"""SessionStore.write_checkpoint / read_checkpoint of a real checkpoint on an otherwise idle redis-server."""

from __future__ import annotations

import json
import secrets
import time

import torch

from bench.checkpoint.common import mb_per_s, median, ms, redis_pid
from bench.pipeline import VIDEO_FPS, CpuClock
from liveact.state.keys import SessionKeys
from liveact.state.schema import (
    CheckpointMeta,
    Manifest,
    SessionInfo,
)
from liveact.state.settings import StoreSettings
from liveact.state.store import SessionStore

BENCH_KEY_PREFIX = "bench"  # keys of the store timing, apart from the generators' ("liveact")
BENCH_OWNER = "bench-checkpoint"


def bench_info(preset: str, width: int, height: int) -> SessionInfo:
    """The record of the store timing's session (its contents do not change the timing)."""
    return SessionInfo(
        preset=preset, fps=VIDEO_FPS, width=width, height=height, seed=0, output_format=0, jpeg_quality=0,
        prompt="", audio_encoding=0, audio_sample_rate=0, audio_channels=0, decode_mode="context",
    )  # fmt: skip


async def time_store(
    url: str, info: SessionInfo, meta: CheckpointMeta, shards: list[dict[str, torch.Tensor]], repeats: int
) -> dict:
    """Interleaved write_checkpoint / read_checkpoint calls with ``shards`` on an otherwise idle Redis."""
    store = SessionStore(StoreSettings(url=url, key_prefix=BENCH_KEY_PREFIX))
    clock = CpuClock([redis_pid(url)])
    sid = f"bench-{secrets.token_hex(8)}"
    writes: list[tuple[float, float | None]] = []
    reads: list[tuple[float, float | None]] = []

    async def timed(op) -> tuple[float, float | None]:
        c0, t0 = clock.read(), time.perf_counter()
        await op()
        seconds, c1 = time.perf_counter() - t0, clock.read()
        return seconds, None if c0 is None or c1 is None else c1 - c0

    try:
        await store.create_session(sid, secrets.token_hex(16), info)
        lease = await store.acquire(sid, BENCH_OWNER)
        for _ in range(repeats):
            writes.append(await timed(lambda: store.write_checkpoint(lease, meta, shards)))
            reads.append(await timed(lambda: store.read_checkpoint(sid)))
        keys = SessionKeys(BENCH_KEY_PREFIX, sid)
        raw_manifest = (await store.client.lrange(keys.history, 0, 0))[0]
        manifest = Manifest.from_json(json.loads(raw_manifest))
        parts = [p.bytes for rank in manifest.shards for p in rank]
        session_keys = [k async for k in store.client.scan_iter(match=f"*{sid}*")]
        await store.delete_session(sid)
    finally:
        await store.close()
    return {
        "write_ms": ms(median([s for s, _ in writes])),
        "read_ms": ms(median([s for s, _ in reads])),
        "write_cpu_ms": ms(median([c for _, c in writes])),
        "read_cpu_ms": ms(median([c for _, c in reads])),
        "store_repeats": repeats,
        "write_ms_runs": [ms(s) for s, _ in writes],
        "read_ms_runs": [ms(s) for s, _ in reads],
        "stored_bytes": sum(parts),
        "write_mb_per_s": mb_per_s(sum(parts), median([s for s, _ in writes])),
        "read_mb_per_s": mb_per_s(sum(parts), median([s for s, _ in reads])),
        "redis_part_values": len(parts),
        "redis_values_per_checkpoint": len(parts) + 1,  # the parts + the manifest (an entry of the history list)
        "largest_value_bytes": max(parts),
        "manifest_bytes": len(raw_manifest),
        "part_bytes_limit": store.settings.part_bytes,
        "session_keys_in_redis": len(session_keys),  # small keys + parts of the versions kept
    }
