"""A checkpoint's tensors as content-addressed Redis values: cut, digested, verified on the way back.

``cut`` takes each tensor's raw bytes (``codec.raw_bytes``) and cuts them into parts of at most
``part_bytes`` with their sha256; a part's key is its digest (``SessionKeys.part``), so a tensor
that did not change since the last version (the ConvKV sink slots, the conditioning) has the same
parts, which the store then refreshes instead of sending again. ``assemble`` checks each fetched
part's size and digest before it becomes a tensor. ``PartIO`` moves parts in pipelined rounds of
about ``PIPELINE_BYTES``, one key per command so that parts may live on different Redis Cluster
shards (the SETs through ``liveact.state.bulk``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
import torch
from redis.asyncio.cluster import RedisCluster

from liveact.state import codec
from liveact.state.redis_memory import part_sizes
from liveact.state.schema import PartDigest, TensorRef

__all__ = ["PIPELINE_BYTES", "CutTensor", "PartIO", "PartProblem", "assemble", "cut"]

PIPELINE_BYTES = 256 * 1024 * 1024  # bytes of parts in flight per pipeline round trip (bounds memory)
PartWrite = Callable[[list[tuple[str, memoryview]]], Awaitable[None]]  # SET (key, bytes) pairs with the session TTL


class PartProblem(ValueError):
    """A fetched part that is missing or does not match its digest, or bytes that are not the tensor."""


@dataclass(frozen=True)
class CutTensor:
    """One tensor's entry in a manifest and the zero-copy views of its parts' bytes (same order)."""

    ref: TensorRef
    views: tuple[memoryview, ...]


def cut(tensors: Mapping[str, torch.Tensor], part_bytes: int) -> list[CutTensor]:
    """Every tensor (CPU; sorted by name) as parts of at most ``part_bytes`` with their sha256, each filling its
    Redis size class (``redis_memory.part_sizes``: no allocator slack, the tail of a tensor too)."""
    out = []
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise codec.CodecError(f"{name!r} is a {type(t).__name__}, not a torch.Tensor")
        raw = codec.raw_bytes(t)
        views = codec.views_of(raw, part_sizes(len(raw), part_bytes))
        parts = tuple(PartDigest(codec.digest(v), len(v)) for v in views)
        out.append(CutTensor(TensorRef(name, codec.dtype_name(t.dtype), tuple(t.shape), parts), tuple(views)))
    return out


def assemble(ref: TensorRef, blobs: list[bytes | None]) -> torch.Tensor:
    """The tensor ``ref`` describes from its fetched parts (None: missing); ``PartProblem`` says what is wrong."""
    buf = bytearray(ref.nbytes)
    at = 0
    for i, (part, blob) in enumerate(zip(ref.parts, blobs, strict=True)):
        if blob is None:
            raise PartProblem(f"tensor {ref.name!r} part {i} is missing (expired or deleted)")
        if len(blob) != part.bytes or codec.digest(blob) != part.sha256:
            raise PartProblem(f"tensor {ref.name!r} part {i} does not match its sha256/size ({len(blob)} bytes)")
        buf[at : at + len(blob)] = blob
        at += len(blob)
    try:
        return codec.from_raw(buf, ref.dtype, ref.shape)
    except codec.CodecError as exc:
        raise PartProblem(f"tensor {ref.name!r}: {exc}") from exc


class PartIO:
    """Parts in and out of Redis (redis-py errors pass through: the store translates them).

    The SETs go through ``write`` (``liveact.state.bulk.BulkWriter``: a blocking connection in a
    worker thread, no copy of the bytes); everything else through the asyncio ``client``.
    """

    def __init__(self, client: aioredis.Redis | RedisCluster, write: PartWrite, ttl_ms: int, part_bytes: int
                 ) -> None:  # fmt: skip
        self.client, self.write, self.ttl_ms, self.part_bytes = client, write, ttl_ms, part_bytes

    async def refresh(self, keys: list[str]) -> list[bool]:
        """Give each existing key the session TTL again; whether each exists (a part that need not be sent)."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.pexpire(key, self.ttl_ms)
        return [bool(found) for found in await pipe.execute()]

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
        await self.refresh(keys)
