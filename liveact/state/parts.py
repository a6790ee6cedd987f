"""A checkpoint's tensors as content-addressed Redis values: cut, digested, verified on the way back.

``cut`` takes a rank's streams (``liveact.state.streams``: its tensors as they lie in the capture's
buffers) and cuts each stream's bytes into parts of at most ``part_bytes`` with their sha256; a part's
key is its digest (``SessionKeys.part``), so a stream that did not change since the last version (the
ConvKV sink slots, the conditioning) has the same parts, which the store then refreshes instead of
sending again. ``place`` checks each fetched part's size and digest before it lands in its stream's
buffer. ``PartIO`` moves parts in pipelined rounds, one key per command so that parts may live on
different Redis Cluster shards, every command on a blocking connection in a worker thread
(``liveact.state.bulk`` says why).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from liveact.state import codec
from liveact.state.bulk import BlockingClient, PartConnection
from liveact.state.redis_memory import part_sizes
from liveact.state.schema import PartDigest, StreamRef
from liveact.state.streams import streams

__all__ = ["PIPELINE_BYTES", "CutStream", "PartIO", "PartProblem", "PartSlot", "cut", "place", "slots"]

PIPELINE_BYTES = 256 * 1024 * 1024  # bytes of parts in flight per pipeline round trip (bounds memory)


class PartProblem(ValueError):
    """A fetched part that is missing or does not match its digest, or bytes that are not the tensor."""


@dataclass(frozen=True)
class CutStream:
    """One stream's entry in a manifest and the zero-copy views of its parts' bytes (same order)."""

    ref: StreamRef
    views: tuple[memoryview, ...]


def cut(tensors: Mapping[str, torch.Tensor], part_bytes: int) -> list[CutStream]:
    """``tensors`` (CPU) as streams (``liveact.state.streams``) cut into parts of at most ``part_bytes`` with their
    sha256, each filling its Redis size class (``redis_memory.part_sizes``: no allocator slack, the tail too)."""
    out = []
    for stream in streams(tensors):
        views = codec.views_of(stream.data, part_sizes(len(stream.data), part_bytes))
        parts = tuple(PartDigest(codec.digest(v), len(v)) for v in views)
        out.append(CutStream(StreamRef(stream.tensors, parts), tuple(views)))
    return out


@dataclass(frozen=True)
class PartSlot:
    """Where a fetched part goes: its stream's buffer and the offset in it."""

    stream: int  # index in the rank's stream list
    offset: int
    part: PartDigest
    index: int  # the part's position in its stream (for messages)


def slots(table: Sequence[StreamRef]) -> list[PartSlot]:
    """Every part of a rank's streams with its destination, in stream order."""
    out = []
    for s, stream in enumerate(table):
        at = 0
        for i, part in enumerate(stream.parts):
            out.append(PartSlot(s, at, part, i))
            at += part.bytes
    return out


def place(table: Sequence[StreamRef], buffers: Sequence[torch.Tensor], slot: PartSlot, blob: bytes | None) -> None:
    """Check a fetched part against its digest and size and copy it into its stream's buffer; ``PartProblem`` says
    which tensors a missing or damaged part holds."""
    if blob is None:
        raise PartProblem(f"part {slot.index} of {_holding(table[slot.stream], slot)} is missing (expired or deleted)")
    if len(blob) != slot.part.bytes or codec.digest(blob) != slot.part.sha256:
        raise PartProblem(f"part {slot.index} of {_holding(table[slot.stream], slot)} does not match its "
                          f"sha256/size ({len(blob)} bytes)")  # fmt: skip
    target: memoryview = buffers[slot.stream].numpy().data  # the buffer itself
    target[slot.offset : slot.offset + len(blob)] = blob


def _holding(stream: StreamRef, slot: PartSlot) -> str:
    end = slot.offset + slot.part.bytes
    names = [t.name for t in stream.tensors if t.offset < end and t.end > slot.offset] or [stream.tensors[0].name]
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return f"tensor {names[0]!r}{more}"


class PartIO:
    """Parts in and out of Redis, every command on ``link`` (``liveact.state.bulk``: a blocking connection
    in a worker thread; redis-py errors pass through: the store translates them).

    Commands go in pipelined rounds, one key per command, so that parts may live on different Redis
    Cluster shards; SETs and GETs in rounds of about ``PIPELINE_BYTES`` (bounded memory in flight).
    """

    def __init__(self, link: PartConnection, ttl_ms: int, part_bytes: int) -> None:
        self.link, self.ttl_ms, self.part_bytes = link, ttl_ms, part_bytes

    async def write(self, parts: list[tuple[str, memoryview]]) -> None:
        """SET every part with the session TTL (each a view of the caller's buffer: sent without a copy)."""
        if parts:
            await self.link.run(functools.partial(_set_all, parts=parts, ttl_ms=self.ttl_ms))

    async def refresh(self, keys: list[str]) -> list[bool]:
        """Give each existing key the session TTL again; whether each exists (a part that need not be sent)."""
        if not keys:
            return []
        found = await self.link.run(functools.partial(_each, keys=keys, command=("PEXPIRE", self.ttl_ms)))
        return [bool(f) for f in found]

    async def read(self, keys: list[str]) -> list[bytes | None]:
        """GET every key, in rounds of about ``PIPELINE_BYTES``."""
        per_round = max(1, PIPELINE_BYTES // self.part_bytes)
        out: list[bytes | None] = []
        for start in range(0, len(keys), per_round):
            out += await self.link.run(functools.partial(_each, keys=keys[start : start + per_round], command=("GET",)))
        return out

    async def delete(self, keys: list[str]) -> None:
        if keys:  # UNLINK one key per command: a ClusterPipeline runs multi-key commands at once, unqueued
            await self.link.run(functools.partial(_each, keys=keys, command=("UNLINK",)))

    async def touch(self, keys: list[str]) -> None:
        await self.refresh(keys)


def _set_all(client: BlockingClient, parts: list[tuple[str, memoryview]], ttl_ms: int) -> None:
    pipe, in_flight = client.pipeline(transaction=False), 0
    for key, view in parts:
        pipe.set(key, view, px=ttl_ms)  # a memoryview: sent as it is (no copy)
        in_flight += len(view)
        if in_flight >= PIPELINE_BYTES:
            pipe.execute()
            pipe, in_flight = client.pipeline(transaction=False), 0
    if len(pipe):
        pipe.execute()


def _each(client: BlockingClient, keys: list[str], command: tuple[str | int, ...]) -> list[Any]:
    """``command`` (name first, then its arguments after the key) for every key, in one pipeline; the replies."""
    name, *args = command
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command(name, key, *args)
    return pipe.execute()
