"""The ConvKV memory: fixed-size per-layer K/V caches in latent-frame slots.

Legend: B batch, fl tokens per latent frame, T = slots*fl cached tokens, H heads, D head_dim.

One ``LayerKV`` holds K and V of one transformer layer for one denoising step, shape (B, T, H, D),
K *before* RoPE (the attention rotates the whole cache by slot index on every forward).
Slot layout (defaults of ``MemoryConfig``)::

    slots 0-1   sink: chunk 0 frames 0-1, never overwritten
    slot  2     C(previous slots 2-5 + previous chunk frame 0): recursive long-term memory
    slot  3     C(previous chunk frames 1-5)
    slots 4-5   previous chunk frames 6-7, raw
    slots 6-13  the chunk being generated

Chunk 0 writes slots 0-5 and attends to them only; every later chunk writes slots 6-13 and attends
to all 14. Before a chunk writes, if the chunk slots hold a previous chunk, the update rule folds
them into the persistent part (``LayerKV.compact``). Running the update eagerly (for a checkpoint)
and skipping it later is bitwise identical to running it lazily.

``UnboundedLayerKV`` is the baseline for benchmarks and tests only: it keeps every frame. Attention
takes any ``KVCache``: these two, the training rollout's ``RolloutLayerKV``, or a ``Draft`` of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from liveact.config import MemoryConfig
from liveact.memory import fp8
from liveact.memory.compress import compress_tokens

SINK_PREFIX = "sink."  # export names of the sink slots' tensors: "sink.k", "sink.v", "sink.k_scale", ...


@dataclass
class AttendView:
    """What one self-attention forward attends to: un-rotated keys and their temporal positions."""

    k: torch.Tensor  # (B, key_frames*fl, H, D), before RoPE
    v: torch.Tensor  # (B, key_frames*fl, H, D)
    key_frames: int  # keys sit at temporal positions 0..key_frames-1
    query_t0: int  # the chunk's queries sit at query_t0..query_t0+frames-1
    bounded: bool  # positions are slot indices (bounded) rather than absolute frames
    skip: tuple[int, int] | None = None  # key frames [a, b) left out after RoPE (``MemoryConfig.unattended_slots``)


class LayerKV:
    """Fixed-size K/V storage of one layer for one denoising step (see module docstring)."""

    def __init__(
        self,
        cfg: MemoryConfig,
        batch: int,
        frame_tokens: int,
        heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        self.cfg = cfg
        self.fl = frame_tokens
        self.dtype = dtype
        shape = (batch, cfg.total_slots * frame_tokens, heads, head_dim)
        store = fp8.FP8_DTYPE if cfg.fp8 else dtype
        self.k = torch.zeros(shape, dtype=store, device=device)
        self.v = torch.zeros(shape, dtype=store, device=device)
        scale_shape = (*shape[:-1], 1)
        self.k_scale = torch.ones(scale_shape, device=device) if cfg.fp8 else None
        self.v_scale = torch.ones(scale_shape, device=device) if cfg.fp8 else None
        self.chunks_written = 0
        self.compacted = False  # the update for the chunk in the chunk slots has already run

    # -- slot access (handles fp8 storage) ---------------------------------------------------------
    def _tok(self, slot: int) -> int:
        return slot * self.fl

    def get(self, slot0: int, slot1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V of slots [slot0, slot1) in the compute dtype."""
        a, b = self._tok(slot0), self._tok(slot1)
        if self.cfg.fp8:
            assert self.k_scale is not None and self.v_scale is not None
            return (
                fp8.dequantize(self.k[:, a:b], self.k_scale[:, a:b], self.dtype),
                fp8.dequantize(self.v[:, a:b], self.v_scale[:, a:b], self.dtype),
            )
        return self.k[:, a:b], self.v[:, a:b]

    def put(self, slot0: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v (B, n*fl, H, D) into slots starting at slot0."""
        a = self._tok(slot0)
        b = a + k.shape[1]
        if self.cfg.fp8:
            assert self.k_scale is not None and self.v_scale is not None
            self.k[:, a:b], self.k_scale[:, a:b] = fp8.quantize(k)
            self.v[:, a:b], self.v_scale[:, a:b] = fp8.quantize(v)
        else:
            self.k[:, a:b] = k
            self.v[:, a:b] = v

    # -- the update rule ---------------------------------------------------------------------------
    @property
    def needs_update(self) -> bool:
        return self.chunks_written >= 2 and not self.compacted

    def compact(self, weight_k: torch.Tensor | None, weight_v: torch.Tensor | None) -> None:
        """Fold the chunk slots into the persistent part, if they hold an un-folded chunk.

        weight_k / weight_v are the depthwise kernels (``memory_proj_k`` / ``memory_proj_v``).
        Which one V uses and whether the mean replaces the conv is decided by the config here.
        """
        if not self.needs_update:
            return
        wk, wv = select_weights(self.cfg, weight_k, weight_v)
        g = self.cfg.compress_group
        for move in update_moves(self.cfg):
            if move.compress and self.cfg.compressor == "none":
                continue  # the sliding window keeps no compressed memory
            k, v = self.get(move.src0, move.src1)
            if move.compress:
                k, v = compress_tokens(k, wk, g), compress_tokens(v, wv, g)
            self.put(move.dst, k.clone(), v.clone())
        self.compacted = True

    def append(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        weight_k: torch.Tensor | None,
        weight_v: torch.Tensor | None,
        commit: bool = True,
    ) -> AttendView:
        """Write one chunk's un-rotated K/V (B, frames*fl, H, D) and return what it attends to.

        ``commit=False`` writes a draft: the chunk attends to it, but the cache still expects the same
        chunk next (a later draft or the committing write overwrites it).
        """
        cfg = self.cfg
        chunk = self.chunks_written
        frames = chunk_frames(cfg, chunk, self.fl, k)
        self.compact(weight_k, weight_v)
        start = cfg.query_slot_start(chunk)
        self.put(start, k, v)
        if commit:
            self.chunks_written += 1
            self.compacted = False
        end = start + frames
        k_all, v_all = self.get(0, end)
        return AttendView(k_all, v_all, end, start, bounded=True, skip=cfg.unattended_slots(chunk))

    # -- persistence -------------------------------------------------------------------------------
    def persistent_names(self) -> list[str]:
        """``sink.<t>`` (slots [0, sink)) and ``<t>`` (slots [sink, persistent)) for each stored tensor t."""
        return list(self.persistent_views())

    def persistent_views(self) -> dict[str, torch.Tensor]:
        """Views (no copy) of the persistent slots by export name: (B, sink*fl, H, D) and (B, (persistent-sink)*fl,
        H, D); they change when the cache next compacts. Call after ``compact``.

        The sink slots come apart from the rest (``sink.k`` and ``k``, ...): they never change after chunk 0, so a
        checkpoint store that addresses its parts by content writes them once per session.
        """
        if self.needs_update:
            raise RuntimeError("compact() the cache before exporting its persistent part")
        return self._persistent()

    def persistent_specs(self) -> dict[str, tuple[torch.Size, torch.dtype]]:
        """``persistent_views``' shapes and dtypes, at any time (the slots' sizes are fixed; nothing compacts)."""
        return {name: (t.shape, t.dtype) for name, t in self._persistent().items()}

    def _persistent(self) -> dict[str, torch.Tensor]:
        s, n = self._tok(self.cfg.sink_slots), self._tok(self.cfg.persistent_slots)
        stored = {"k": self.k, "v": self.v}
        if self.cfg.fp8:
            assert self.k_scale is not None and self.v_scale is not None
            stored |= {"k_scale": self.k_scale, "v_scale": self.v_scale}
        views: dict[str, torch.Tensor] = {}
        for name, t in stored.items():
            views[SINK_PREFIX + name] = t[:, :s]
            views[name] = t[:, s:n]
        return views

    @torch.no_grad()
    def load_persistent(self, tensors: dict[str, torch.Tensor], chunks_written: int) -> None:
        for whole in (self.k, self.v, self.k_scale, self.v_scale):
            if whole is not None:
                whole.zero_()  # the chunk slots too: written before they are next read
        for name, dst in self.persistent_views().items():
            src = tensors[name]
            if tuple(src.shape) != tuple(dst.shape) or src.dtype != dst.dtype:
                raise ValueError(
                    f"persistent {name}: expected {tuple(dst.shape)} {dst.dtype}, got {tuple(src.shape)} {src.dtype}"
                )
            dst.copy_(src)
        self.chunks_written = chunks_written
        self.compacted = True

    def nbytes(self) -> int:
        tensors = [self.k, self.v, self.k_scale, self.v_scale]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def chunk_frames(cfg: MemoryConfig, chunk: int, frame_tokens: int, k: torch.Tensor) -> int:
    """Latent frames of chunk ``chunk``; refuses K/V (B, tokens, H, D) of another length."""
    frames = cfg.chunk_latent_frames(chunk)
    if k.shape[1] != frames * frame_tokens:
        raise ValueError(
            f"chunk {chunk} must have {frames} latent frames ({frames * frame_tokens} tokens), got {k.shape[1]} tokens"
        )
    return frames


@dataclass(frozen=True)
class SlotMove:
    """One step of the update rule: slots [src0, src1) -> slot(s) from ``dst``, compressed or copied."""

    dst: int
    src0: int
    src1: int
    compress: bool  # True: C folds the ``compress_group`` source slots into the one slot ``dst``


class KVCache(Protocol):
    """What attention appends a chunk's K/V to: any cache here (serving, baseline, rollout) or a ``Draft``."""

    def append(
        self, k: torch.Tensor, v: torch.Tensor, weight_k: torch.Tensor | None, weight_v: torch.Tensor | None
    ) -> AttendView: ...


class Committing(Protocol):
    """A cache whose ``append`` can write a draft (every cache here: serving, baseline, rollout)."""

    def append(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        weight_k: torch.Tensor | None,
        weight_v: torch.Tensor | None,
        commit: bool = True,
    ) -> AttendView: ...


class Draft:
    """A cache whose ``append`` writes drafts: the sample-level context's denoising steps use it."""

    def __init__(self, cache: Committing) -> None:
        self.cache = cache

    def append(
        self, k: torch.Tensor, v: torch.Tensor, weight_k: torch.Tensor | None, weight_v: torch.Tensor | None
    ) -> AttendView:
        return self.cache.append(k, v, weight_k, weight_v, commit=False)


def update_moves(cfg: MemoryConfig) -> list[SlotMove]:
    """The update rule as moves, in the order they run (each reads slots no earlier move wrote).

    The sink stays; compressed slot j <- C(``compress_group`` slots from ``sink + j*group``); the recent
    slots <- the last ``recent_slots`` slots. Both the serving cache (in place) and the training
    rollout cache (functional) apply exactly these moves.
    """
    g = cfg.compress_group
    moves = [
        SlotMove(cfg.sink_slots + j, cfg.sink_slots + j * g, cfg.sink_slots + (j + 1) * g, True)
        for j in range(cfg.compressed_slots)
    ]
    recent_dst = cfg.sink_slots + cfg.compressed_slots
    moves.append(SlotMove(recent_dst, cfg.total_slots - cfg.recent_slots, cfg.total_slots, False))
    return moves


def select_weights(
    cfg: MemoryConfig, weight_k: torch.Tensor | None, weight_v: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The kernels C uses for K and V: none for the mean; V takes K's when ``compress_v_with_k``."""
    if cfg.compressor != "conv":
        return None, None
    return weight_k, (weight_k if cfg.compress_v_with_k else weight_v)


class UnboundedLayerKV:
    """Baseline: keeps every frame's K/V, no compression; positions are absolute frame indices."""

    def __init__(self, cfg: MemoryConfig, frame_tokens: int) -> None:
        self.cfg = cfg
        self.fl = frame_tokens
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.chunks_written = 0

    def append(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        weight_k: torch.Tensor | None = None,
        weight_v: torch.Tensor | None = None,
        commit: bool = True,
    ) -> AttendView:
        t0 = 0 if self.k is None else self.k.shape[1] // self.fl
        k_all = k.clone() if self.k is None else torch.cat([self.k, k], dim=1)
        v_all = v.clone() if self.v is None else torch.cat([self.v, v], dim=1)
        if commit:
            self.k, self.v = k_all, v_all
            self.chunks_written += 1
        return AttendView(k=k_all, v=v_all, key_frames=k_all.shape[1] // self.fl, query_t0=t0, bounded=False)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v) if t is not None)
