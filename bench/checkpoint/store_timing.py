"""SessionStore.write_checkpoint (first and later versions) / read_checkpoint of a real checkpoint on an otherwise
idle redis-server."""

from __future__ import annotations

import functools
import json
import secrets
import time

import torch

from bench.checkpoint.common import mb_per_s, median, ms, redis_pid
from bench.pipeline import VIDEO_FPS, CpuClock
from liveact.state.keys import SessionKeys
from liveact.state.schema import (
    COND,
    DIT,
    CheckpointMeta,
    Manifest,
    SessionInfo,
)
from liveact.state.settings import StoreSettings
from liveact.state.store import CheckpointWrite, SessionStore

BENCH_KEY_PREFIX = "bench"  # keys of the store timing, apart from the generators' ("liveact")
BENCH_OWNER = "bench-checkpoint"


def bench_info(preset: str, width: int, height: int) -> SessionInfo:
    """The record of the store timing's session (its contents do not change the timing)."""
    return SessionInfo(
        preset=preset, fps=VIDEO_FPS, width=width, height=height, seed=0, output_format=0, jpeg_quality=0,
        prompt="", audio_encoding=0, audio_sample_rate=0, audio_channels=0, decode_mode="context",
    )  # fmt: skip


def later_version(shards: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """The same checkpoint one version on: the sink slots and the conditioning as they were, every other
    tensor's bytes changed (what a session's next checkpoint changes)."""
    out = []
    for shard in shards:
        changed = {}
        for name, t in shard.items():
            fixed = ".sink." in name or name.startswith(DIT + COND) or not t.numel()
            changed[name] = t if fixed else (t.contiguous().view(torch.uint8) ^ 1).view(t.dtype).reshape(t.shape)
        out.append(changed)
    return out


async def time_store(
    url: str, info: SessionInfo, meta: CheckpointMeta, shards: list[dict[str, torch.Tensor]], repeats: int
) -> dict:
    """Per repeat a fresh session: a first write_checkpoint (every part sent), a later one (only what changed
    sent) and a read_checkpoint, on an otherwise idle Redis."""
    store = SessionStore(StoreSettings(url=url, key_prefix=BENCH_KEY_PREFIX))
    clock = CpuClock([redis_pid(url)])
    writes: list[tuple[float, float | None]] = []
    later_writes: list[tuple[float, float | None]] = []
    reads: list[tuple[float, float | None]] = []
    done: list[CheckpointWrite] = []
    later = later_version(shards)

    async def timed(op) -> tuple[float, float | None]:
        c0, t0 = clock.read(), time.perf_counter()
        result = await op()
        seconds, c1 = time.perf_counter() - t0, clock.read()
        if isinstance(result, CheckpointWrite):
            done.append(result)
        return seconds, None if c0 is None or c1 is None else c1 - c0

    try:
        for _ in range(repeats):
            sid = f"bench-{secrets.token_hex(8)}"
            await store.create_session(sid, secrets.token_hex(16), info)
            lease = await store.acquire(sid, BENCH_OWNER)
            writes.append(await timed(functools.partial(store.write_checkpoint, lease, meta, shards)))
            later_writes.append(await timed(functools.partial(store.write_checkpoint, lease, meta, later)))
            reads.append(await timed(functools.partial(store.read_checkpoint, sid)))
            keys = SessionKeys(BENCH_KEY_PREFIX, sid)
            raw_manifest = (await store.client.lrange(keys.history, 0, 0))[0]
            session_keys = [k async for k in store.client.scan_iter(match=f"*{sid}*")]
            await store.delete_session(sid)
        manifest = Manifest.from_json(json.loads(raw_manifest))
    finally:
        await store.close()
    parts = [p.bytes for rank in manifest.shards for t in rank for p in t.parts]
    first, second = done[0], done[1]
    return {
        "write_ms": ms(median([s for s, _ in writes])),
        "later_write_ms": ms(median([s for s, _ in later_writes])),
        "read_ms": ms(median([s for s, _ in reads])),
        "write_cpu_ms": ms(median([c for _, c in writes])),
        "later_write_cpu_ms": ms(median([c for _, c in later_writes])),
        "read_cpu_ms": ms(median([c for _, c in reads])),
        "store_repeats": repeats,
        "write_ms_runs": [ms(s) for s, _ in writes],
        "later_write_ms_runs": [ms(s) for s, _ in later_writes],
        "read_ms_runs": [ms(s) for s, _ in reads],
        "stored_bytes": sum(parts),
        "bytes_per_version": {
            "first": sum(r.bytes_written for r in first.ranks),
            "later": sum(r.bytes_written for r in second.ranks),
        },
        "write_mb_per_s": mb_per_s(sum(parts), median([s for s, _ in writes])),
        "read_mb_per_s": mb_per_s(sum(parts), median([s for s, _ in reads])),
        "redis_part_values": len(parts),
        "redis_values_per_checkpoint": len(parts) + 1,  # the parts + the manifest (an entry of the history list)
        "largest_value_bytes": max(parts),
        "manifest_bytes": len(raw_manifest),
        "part_bytes_limit": store.settings.part_bytes,
        "session_keys_in_redis": len(session_keys),  # small keys + parts of the versions kept
    }
