"""Checkpoints across tensor-parallel degrees: per-rank sampler states re-split by attention heads.

A rank's sampler state (``liveact.sampling.state.export_sampler``) holds its heads' share of
every ConvKV cache, ``memory.<cache>.{k,v}`` of shape (B, tokens, H/tp, D) plus, with FP8 storage,
``{k,v}_scale`` (B, tokens, H/tp, 1), and replicated tensors every rank has identically (RNG state,
conditioning, ``memory.chunks_written``). ``reshard`` concatenates the shards along the head axis
and splits them for another degree; the replicated tensors must agree across the input ranks.

Resuming at the same degree needs no reshard and is bitwise. A resharded state continues within
fp32 tolerance: the all-reduces of the new degree sum partial products in another order.
"""

from __future__ import annotations

import torch

from liveact.state.schema import MEMORY, MEMORY_KV_SUFFIXES

__all__ = ["HEAD_AXIS", "ReshardError", "reshard", "sharded_name"]

HEAD_AXIS = 2  # (B, tokens, heads, head_dim)


class ReshardError(ValueError):
    """Shards that do not belong together (other names, shapes, or replicated tensors that differ)."""


def sharded_name(name: str) -> bool:
    """Whether ``name`` is split by heads across ranks (a ConvKV cache tensor)."""
    return name.startswith(MEMORY) and name.endswith(MEMORY_KV_SUFFIXES)


def reshard(states: list[dict[str, torch.Tensor]], tp: int) -> list[dict[str, torch.Tensor]]:
    """Rank states at degree ``len(states)`` -> ``tp`` rank states (rank order kept)."""
    if not states:
        raise ReshardError("no rank states given")
    names = set(states[0])
    for r, state in enumerate(states[1:], 1):
        if set(state) != names:
            raise ReshardError(f"rank {r} holds other tensors than rank 0: {sorted(set(state) ^ names)[:5]}")
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(tp)]
    for name in sorted(names):
        parts = [s[name] for s in states]
        if sharded_name(name):
            whole = torch.cat(parts, dim=HEAD_AXIS)
            heads = whole.shape[HEAD_AXIS]
            if heads % tp:
                raise ReshardError(f"{name}: {heads} heads do not split over tp={tp}")
            for r, piece in enumerate(whole.chunk(tp, dim=HEAD_AXIS)):
                out[r][name] = piece.contiguous()
        else:
            if any(not torch.equal(parts[0], p) for p in parts[1:]):
                raise ReshardError(f"{name} should be the same on every rank but differs")
            for r in range(tp):
                out[r][name] = parts[0].clone()
    return out
