"""A stream's state <-> the bytes of ``liveact.v1.StreamSnapshot.state`` (and of ``resume_state``).

A snapshot travels through a client (the generator keeps it in its session checkpoint) and comes
back to a possibly different replica, so it must be safe to read whatever it holds: it is a
safetensors blob (a JSON header plus raw little-endian buffers), read only by
``safetensors.torch.load``; never pickle, never ``torch.load``. Its header metadata names the kind
of state (``KIND_KEY``: which service's stream wrote it) and the layout version (``VERSION_KEY``),
so bytes from another service, another layout, a truncated copy or plain garbage are refused with
a ``SnapshotError`` (a ``ValueError``) that says which, before any tensor is used. The services
put what else must match on resume (a VAE preset's name, say) in string metadata next to them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

__all__ = ["KIND_KEY", "VERSION", "VERSION_KEY", "Snapshot", "SnapshotError", "pack", "unpack"]

KIND_KEY = "liveact.snapshot"  # metadata: which stream kind wrote the state ("audio_encoder", "decoder")
VERSION_KEY = "liveact.snapshot.version"
VERSION = "1"  # raise when a kind's tensor layout changes incompatibly
_HEADER_LENGTH_BYTES = 8  # safetensors: a little-endian u64 header length, then the JSON header
_METADATA = "__metadata__"


class SnapshotError(ValueError):
    """Bytes that are not a snapshot of the expected kind and version."""


@dataclass(frozen=True)
class Snapshot:
    tensors: dict[str, torch.Tensor]  # CPU tensors, as the stream's ``state_dict()`` gave them
    metadata: dict[str, str] = field(default_factory=dict)  # the writer's extra metadata (kind and version removed)


def pack(kind: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """One safetensors blob: ``tensors`` (moved to the CPU, contiguous) and ``kind`` + version + ``metadata``."""
    meta = dict(metadata or {})
    if reserved := sorted({KIND_KEY, VERSION_KEY} & set(meta)):
        raise ValueError(f"metadata keys {reserved} are reserved for the snapshot's kind and version")
    meta |= {KIND_KEY: kind, VERSION_KEY: VERSION}
    flat = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    return st_save(flat, metadata=meta)


def unpack(data: bytes, kind: str, what: str = "resume_state") -> Snapshot:
    """The tensors and metadata of a ``kind`` snapshot; ``SnapshotError`` naming ``what`` otherwise."""
    meta = _metadata(data, what)
    if KIND_KEY not in meta:
        raise SnapshotError(f"{what} is a safetensors blob but not a LiveAct stream snapshot (no {KIND_KEY!r})")
    if meta[KIND_KEY] != kind:
        raise SnapshotError(
            f"{what} is a snapshot of an {meta[KIND_KEY]!r} stream, not of an {kind!r} one: "
            "give each service the state its own stream answered"
        )
    if meta.get(VERSION_KEY) != VERSION:
        raise SnapshotError(
            f"{what} has snapshot layout version {meta.get(VERSION_KEY)!r}, this server reads {VERSION!r}: "
            "resume on a server of the version that took the snapshot"
        )
    try:
        tensors = st_load(bytes(data))
    except Exception as exc:  # SafetensorError: offsets that do not cover the buffer, bad dtypes
        raise SnapshotError(f"{what} is damaged ({len(data)} bytes): {exc}") from None
    extra = {k: v for k, v in meta.items() if k not in (KIND_KEY, VERSION_KEY)}
    return Snapshot(tensors=tensors, metadata=extra)


def _metadata(data: bytes, what: str) -> dict[str, str]:
    """The header's string metadata, read without trusting the blob (length checked before parsing)."""
    if len(data) < _HEADER_LENGTH_BYTES:
        raise SnapshotError(f"{what} of {len(data)} bytes is too short to be a snapshot (empty or truncated)")
    size = int.from_bytes(data[:_HEADER_LENGTH_BYTES], "little")
    if size > len(data) - _HEADER_LENGTH_BYTES:
        raise SnapshotError(
            f"{what} is not a snapshot or is truncated: its header claims {size} bytes, {len(data)} bytes in all"
        )
    try:
        header = json.loads(bytes(data[_HEADER_LENGTH_BYTES : _HEADER_LENGTH_BYTES + size]))
        meta = header.get(_METADATA, {}) if isinstance(header, dict) else None
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or absurdly nested
        meta = None
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise SnapshotError(f"{what} is not a snapshot: its header is not a safetensors header")
    return meta
