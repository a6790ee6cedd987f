"""Tensor parallelism: shard a ``LiveActDiT`` across a process group by attention heads.

Legend: C = H*D model channels, H heads, D head_dim, tp ranks, r this rank, Hl = H/tp local heads,
Cl = Hl*D local channels; rank r keeps heads [r*Hl, (r+1)*Hl), i.e. channels [r*Cl, (r+1)*Cl).

Per block:

* self-attention: ``q``/``k``/``v`` column-parallel (the rank's heads), ``o`` row-parallel with an
  all-reduce; the qk ``RMSNorm`` normalises over the *full* C, so ``ShardedRMSNorm`` all-reduces the
  sum of squares; the depthwise ConvKV compressors (``memory_proj_k``/``_v``) keep the rank's
  channels, so each rank's caches hold its heads only (``LiveActDiT.local_heads``).
* image+text cross-attention: ``q``/``k``/``v``/``k_img``/``v_img`` column, ``o`` row, norms sharded.
* audio cross-attention: ``q_linear`` column, ``proj`` row; ``kv_linear`` packs its output as
  [K | V], so the rank's heads are sliced out of *both* halves (not a contiguous chunk).
* FFN: first Linear column, second row.

Replicated: adaLN modulation, the LayerNorms, patch/time/text/CLIP embeddings, the head and the audio
projection. Each block therefore all-reduces 4 activations (self ``o``, cross ``o``, audio ``proj``,
FFN out) plus 4 (B, S, 1) sums of squares for the norms.

Who does what is behind ``TPComm``: ``DeepSpeedComm`` wraps the evenly-split layers in DeepSpeed's
``LinearLayer`` (column) / ``LinearAllreduce`` (row, ``inference_all_reduce``) and all-reduces the
norm statistics with ``deepspeed.comm.all_reduce``; the packed ``kv_linear``, the norms and the
depthwise convs are sliced here by hand (DeepSpeed's contiguous split does not fit them).
``LocalComm`` slices everything by hand and takes any all-reduce function (tests simulate ranks
with threads in one process).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from liveact.config import ModelConfig
from liveact.model.dit import LiveActDiT
from liveact.model.layers import RMSNorm
from liveact.model.loading import TensorSlice

AllReduce = Callable[[torch.Tensor], None]  # in-place sum over the group


class TPComm(Protocol):
    rank: int
    size: int

    def all_reduce(self, t: torch.Tensor) -> None: ...

    def column(self, linear: nn.Linear) -> nn.Module: ...

    def row(self, linear: nn.Linear) -> nn.Module: ...


def check_tp(m: ModelConfig, tp: int) -> None:
    """Raise ValueError unless tp evenly shards heads and the FFN."""
    if tp < 1:
        raise ValueError(f"tensor-parallel size must be >= 1, got {tp}")
    if m.num_heads % tp:
        raise ValueError(f"tp={tp} does not divide num_heads={m.num_heads}")
    if m.ffn_dim % tp:
        raise ValueError(f"tp={tp} does not divide ffn_dim={m.ffn_dim}")


def shard_range(total: int, rank: int, tp: int) -> slice:
    """Rank r's contiguous share [r*total/tp, (r+1)*total/tp)."""
    if total % tp:
        raise ValueError(f"{total} is not divisible by tp={tp}")
    n = total // tp
    return slice(rank * n, (rank + 1) * n)


# -- hand-sliced layers ---------------------------------------------------------------------------
def column_slice(linear: nn.Linear, rows: slice | torch.Tensor) -> nn.Linear:
    """A plain Linear holding output rows ``rows`` of ``linear`` (weight and bias)."""
    w = linear.weight.detach()[rows]
    out = nn.Linear(linear.in_features, w.shape[0], bias=linear.bias is not None, dtype=w.dtype, device=w.device)
    with torch.no_grad():
        out.weight.copy_(w)
        if linear.bias is not None:
            out.bias.copy_(linear.bias.detach()[rows])
    return out


class RowParallelLinear(nn.Module):
    """Input columns ``cols`` of a Linear; partial products all-reduced, then the full bias added once."""

    def __init__(self, linear: nn.Linear, cols: slice, all_reduce: AllReduce) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach()[:, cols].clone(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.in_features = self.weight.shape[1]
        self.out_features = self.weight.shape[0]
        self._all_reduce = all_reduce

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight)
        self._all_reduce(out)
        return out if self.bias is None else out + self.bias


class ShardedRMSNorm(nn.Module):
    """``RMSNorm`` over the full C when this rank holds channels ``cols`` only.

    The float32 sum of squares is all-reduced and divided by the full C (not C/tp).
    """

    def __init__(self, norm: RMSNorm, cols: slice, all_reduce: AllReduce) -> None:
        super().__init__()
        self.eps = norm.eps
        self.full_dim = norm.weight.shape[0]
        self.weight = nn.Parameter(norm.weight.detach()[cols].clone(), requires_grad=False)
        self._all_reduce = all_reduce

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        sumsq = xf.pow(2).sum(dim=-1, keepdim=True)
        self._all_reduce(sumsq)
        normed = xf * torch.rsqrt(sumsq / self.full_dim + self.eps)
        return normed.type_as(x) * self.weight


def slice_depthwise(conv: nn.Conv1d, channels: slice) -> nn.Conv1d:
    """A depthwise Conv1d (groups = channels) restricted to ``channels``."""
    w = conv.weight.detach()[channels]
    n = w.shape[0]
    out = nn.Conv1d(
        n,
        n,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        groups=n,
        bias=conv.bias is not None,
        dtype=w.dtype,
        device=w.device,
    )
    with torch.no_grad():
        out.weight.copy_(w)
        if conv.bias is not None:
            out.bias.copy_(conv.bias.detach()[channels])
    return out


def packed_kv_rows(c: int, channels: slice) -> torch.Tensor:
    """Output rows of a packed [K | V] (2C) Linear that belong to ``channels``: K's, then V's."""
    idx = torch.arange(channels.start, channels.stop)
    return torch.cat([idx, idx + c])


# -- communicators --------------------------------------------------------------------------------
class LocalComm:
    """Slices every layer by hand; all-reduces with the given function (identity-free: tp ranks)."""

    def __init__(self, rank: int, size: int, all_reduce: AllReduce) -> None:
        self.rank = rank
        self.size = size
        self._all_reduce = all_reduce

    def all_reduce(self, t: torch.Tensor) -> None:
        self._all_reduce(t)

    def column(self, linear: nn.Linear) -> nn.Module:
        return column_slice(linear, shard_range(linear.out_features, self.rank, self.size))

    def row(self, linear: nn.Linear) -> nn.Module:
        return RowParallelLinear(linear, shard_range(linear.in_features, self.rank, self.size), self.all_reduce)


class DeepSpeedComm:
    """DeepSpeed's ``LinearLayer`` / ``LinearAllreduce`` over ``group``; norms via ``deepspeed.comm``."""

    def __init__(self, group) -> None:
        import deepspeed.comm as dist

        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group=group)
        self.size = dist.get_world_size(group=group)

    def all_reduce(self, t: torch.Tensor) -> None:
        self._dist.all_reduce(t, group=self.group)

    def column(self, linear: nn.Linear) -> nn.Module:
        from deepspeed.module_inject.layers import LinearLayer

        rows = shard_range(linear.out_features, self.rank, self.size)
        expected = linear.weight.detach()[rows].clone()
        layer = LinearLayer(linear, self.group)
        _check_split(layer.weight, expected, "column")
        layer.in_features, layer.out_features = linear.in_features, layer.weight.shape[0]
        return layer

    def row(self, linear: nn.Linear) -> nn.Module:
        from deepspeed.module_inject.layers import LinearAllreduce

        cols = shard_range(linear.in_features, self.rank, self.size)
        expected = linear.weight.detach()[:, cols].clone()
        layer = LinearAllreduce(linear, self.group)
        _check_split(layer.weight, expected, "row")
        layer.in_features, layer.out_features = layer.weight.shape[1], linear.out_features
        return layer


def _check_split(got: torch.Tensor, expected: torch.Tensor, kind: str) -> None:
    """DeepSpeed's split must be the per-head slice: by shape, and by value unless on meta (shapes only)."""
    same = tuple(got.shape) == tuple(expected.shape)
    if same and not got.is_meta:
        same = torch.equal(got.detach().cpu(), expected.cpu())
    if not same:
        raise RuntimeError(
            f"DeepSpeed's {kind} split {tuple(got.shape)} is not the per-head slice {tuple(expected.shape)}"
        )


# -- the layout: how each block layer is split ----------------------------------------------------
# (module path inside a block, kind); one table for sharding a built model (``shard_dit``) and for
# reading only a rank's slices of a checkpoint (``shard_slices``).
COLUMN, ROW, NORM, DEPTHWISE, PACKED_KV = "column", "row", "norm", "depthwise", "packed_kv"
BLOCK_LAYOUT: tuple[tuple[str, str], ...] = (
    ("self_attn.q", COLUMN), ("self_attn.k", COLUMN), ("self_attn.v", COLUMN), ("self_attn.o", ROW),
    ("self_attn.norm_q", NORM), ("self_attn.norm_k", NORM),
    ("self_attn.memory_proj_k", DEPTHWISE), ("self_attn.memory_proj_v", DEPTHWISE),
    ("cross_attn.q", COLUMN), ("cross_attn.k", COLUMN), ("cross_attn.v", COLUMN),
    ("cross_attn.k_img", COLUMN), ("cross_attn.v_img", COLUMN), ("cross_attn.o", ROW),
    ("cross_attn.norm_q", NORM), ("cross_attn.norm_k", NORM), ("cross_attn.norm_k_img", NORM),
    ("audio_cross_attn.q_linear", COLUMN), ("audio_cross_attn.kv_linear", PACKED_KV), ("audio_cross_attn.proj", ROW),
    ("ffn.0", COLUMN), ("ffn.2", ROW),
)  # fmt: skip


def _layer_slices(kind: str, module: nn.Module, c: int, rank: int, tp: int) -> dict[str, TensorSlice]:
    """Parameter name -> slice for one layer of ``kind`` (replicated parameters are absent)."""
    if kind == COLUMN:
        rows = TensorSlice.of(0, shard_range(module.out_features, rank, tp))
        return {"weight": rows, **({"bias": rows} if module.bias is not None else {})}
    if kind == ROW:
        return {"weight": TensorSlice.of(1, shard_range(module.in_features, rank, tp))}  # bias: replicated
    cols = TensorSlice.of(0, shard_range(c, rank, tp))
    if kind == NORM:
        return {"weight": cols} if isinstance(module, RMSNorm) else {}
    if kind == DEPTHWISE:
        return {"weight": cols, **({"bias": cols} if module.bias is not None else {})}
    if kind == PACKED_KV:
        rows = TensorSlice.of(0, packed_kv_rows(c, shard_range(c, rank, tp)))
        return {"weight": rows, **({"bias": rows} if module.bias is not None else {})}
    raise ValueError(f"unknown layer kind {kind!r}")


def shard_slices(model: LiveActDiT, rank: int, tp: int) -> dict[str, TensorSlice]:
    """Checkpoint key -> the slice rank ``rank`` of ``tp`` keeps, for every split parameter of the
    *unsharded* ``model`` (meta is enough); keys not listed are replicated whole."""
    m = model.config.model
    check_tp(m, tp)
    if tp == 1:
        return {}
    out: dict[str, TensorSlice] = {}
    for i, blk in enumerate(model.blocks):
        for path, kind in BLOCK_LAYOUT:
            for name, piece in _layer_slices(kind, blk.get_submodule(path), m.dim, rank, tp).items():
                out[f"blocks.{i}.{path}.{name}"] = piece
    return out


def _shard_layer(kind: str, module: nn.Module, cols: slice, c: int, comm: TPComm) -> nn.Module:
    if kind == COLUMN:
        return comm.column(module)
    if kind == ROW:
        return comm.row(module)
    if kind == NORM:
        return ShardedRMSNorm(module, cols, comm.all_reduce) if isinstance(module, RMSNorm) else module
    if kind == DEPTHWISE:
        return slice_depthwise(module, cols)
    if kind == PACKED_KV:
        return column_slice(module, packed_kv_rows(c, cols))
    raise ValueError(f"unknown layer kind {kind!r}")


@torch.no_grad()
def shard_dit(model: LiveActDiT, comm: TPComm) -> LiveActDiT:
    """Shard ``model`` in place for rank ``comm.rank`` of ``comm.size`` (see module docstring and
    ``BLOCK_LAYOUT``). Every rank must start from the same weights; on the meta device only the
    shapes are sharded (``liveact.model.loading`` then reads each rank's slices). tp=1 leaves the
    model untouched."""
    m = model.config.model
    tp = comm.size
    check_tp(m, tp)
    if tp == 1:
        return model
    c = m.dim
    cols = shard_range(c, comm.rank, tp)
    for blk in model.blocks:
        for path, kind in BLOCK_LAYOUT:
            parent_path, _, name = path.rpartition(".")
            parent = blk.get_submodule(parent_path)
            sharded = _shard_layer(kind, parent.get_submodule(name), cols, c, comm)
            if isinstance(parent, nn.Sequential):
                parent[int(name)] = sharded
            else:
                setattr(parent, name, sharded)
        blk.self_attn.num_heads = m.num_heads // tp
    model.tp_rank, model.tp_size = comm.rank, tp
    return model
