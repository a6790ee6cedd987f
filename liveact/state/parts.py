"""A checkpoint's tensors as bounded Redis values: packed, cut into parts, verified on the way back.

``encode_shards`` packs each rank's tensors (safetensors, ``codec``) and cuts the blob into parts of
at most ``part_bytes`` with their sha256; ``decode_shard`` checks each fetched part's size and
digest before joining and unpacking. ``PartIO`` moves parts in pipelined rounds of about
``PIPELINE_BYTES``, one key per command so that parts may live on different Redis Cluster shards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis
import torch
from redis.asyncio.cluster import RedisCluster

from liveact.state import codec
from liveact.state.schema import PartRef

__all__ = ["PIPELINE_BYTES", "PartIO", "decode_shard", "encode_shards"]

PIPELINE_BYTES = 256 * 1024 * 1024  # bytes of parts in flight per pipeline round trip (bounds memory)


def encode_shards(shards: Sequence[Mapping[str, torch.Tensor]], part_bytes: int) -> list[list[tuple[memoryview, str]]]:
    """Per rank, the packed blob's parts with their sha256 (zero-copy views keep the blobs alive)."""
    return [
        [(view, codec.digest(view)) for view in codec.part_views(codec.pack(shard), part_bytes)] for shard in shards
    ]


def decode_shard(rank: int, parts: list[PartRef], blobs: list[bytes]) -> tuple[str, dict[str, torch.Tensor]]:
    """(problem, tensors) of one rank's fetched parts; ``problem`` is '' when all match and decode."""
    for i, (part, blob) in enumerate(zip(parts, blobs, strict=True)):
        if len(blob) != part.bytes or codec.digest(blob) != part.sha256:
            return f"rank {rank} part {i} does not match its sha256/size ({len(blob)} bytes)", {}
    try:
        return "", codec.unpack(codec.join(blobs))
    except codec.CodecError as exc:
        return f"rank {rank}: {exc}", {}


class PartIO:
    """Parts in and out of Redis (redis-py errors pass through: the store translates them)."""

    def __init__(self, client: aioredis.Redis | RedisCluster, ttl_ms: int, part_bytes: int) -> None:
        self.client, self.ttl_ms, self.part_bytes = client, ttl_ms, part_bytes

    async def write(self, parts: list[tuple[str, memoryview]]) -> None:
        """SET every part with the session TTL, pipelined in rounds of about PIPELINE_BYTES."""
        pipe, in_flight = self.client.pipeline(transaction=False), 0
        for key, view in parts:
            pipe.set(key, view, px=self.ttl_ms)
            in_flight += len(view)
            if in_flight >= PIPELINE_BYTES:
                await pipe.execute()
                pipe, in_flight = self.client.pipeline(transaction=False), 0
        if len(pipe):
            await pipe.execute()

    async def read(self, keys: list[str]) -> list[bytes | None]:
        """GET every key (one per request, so keys may live on different cluster shards)."""
        per_round = max(1, PIPELINE_BYTES // self.part_bytes)
        out: list[bytes | None] = []
        for start in range(0, len(keys), per_round):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[start : start + per_round]:
                pipe.get(key)
            out += await pipe.execute()
        return out

    async def delete(self, keys: list[str]) -> None:
        if keys:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:  # not pipe.unlink: a ClusterPipeline runs multi-key commands at once, unqueued
                pipe.execute_command("UNLINK", key)
            await pipe.execute()

    async def touch(self, keys: list[str]) -> None:
        if keys:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.pexpire(key, self.ttl_ms)
            await pipe.execute()
