"""Building the DiT (on the meta device for big presets) and loading checkpoints strictly, tensor by tensor.

A checkpoint directory holds the public layout: ``diffusion_pytorch_model.safetensors`` or shards
named by ``diffusion_pytorch_model.safetensors.index.json``'s ``weight_map``. Every key and shape
is checked against the file headers before anything is loaded; any missing shard, missing/unexpected
key or mis-shaped tensor raises ``CheckpointError`` naming the first mismatches. There is never a
partial load.

Loading at real size (liveact-18b: 18.9 B parameters) never makes a full-precision copy of the model:
the model is built on ``meta``, then each tensor is read from its file, cast to the dtype it runs in
(``parameter_dtype``: the runtime dtype, float32 for ``FP32_PARAMETERS``), moved to the device and
put in place, one at a time. A tensor-parallel rank passes its ``TensorSlice`` per split parameter
(``liveact.parallel.tp.shard_slices``): row ranges are read straight from the file, a column range
(a row-parallel layer) is copied out of its tensor read whole, so a rank's peak is its shard plus one
tensor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from liveact.config import LiveActConfig
from liveact.model.dit import LiveActDiT, parameter_dtype
from liveact.weight_files import (
    CONFIG_FILE,
    INDEX_FILE,
    SHOW_MISMATCHES,
    SINGLE_FILE,
    CheckpointError,
    SafetensorsFile,
    check_state_dict,
    shard_files,
)


def build_model(
    config: LiveActConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> LiveActDiT:
    """Construct the DiT; on ``meta`` no memory is allocated (for shapes, keys, parameter counts)."""
    with torch.device(device):
        model = LiveActDiT(config)
    return model.to(dtype=dtype) if str(device) != "meta" else model


@dataclass(frozen=True)
class TensorSlice:
    """The part of a full checkpoint tensor one rank keeps: ``ranges`` along ``dim``, concatenated."""

    dim: int
    ranges: tuple[tuple[int, int], ...]  # [start, stop) pairs, in order

    @staticmethod
    def of(dim: int, index: slice | torch.Tensor) -> TensorSlice:
        if isinstance(index, slice):
            return TensorSlice(dim, ((int(index.start), int(index.stop)),))
        runs: list[tuple[int, int]] = []  # an index tensor as contiguous runs (a packed [K | V]: two)
        for i in index.tolist():
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        return TensorSlice(dim, tuple(runs))

    def shape(self, full: tuple[int, ...]) -> tuple[int, ...]:
        out = list(full)
        out[self.dim] = sum(stop - start for start, stop in self.ranges)
        return tuple(out)

    def read(self, f: SafetensorsFile, key: str) -> torch.Tensor:
        """Only this part of ``key``: row ranges straight from the file; along another dim, the tensor
        is read whole and the part copied out (one tensor's transient)."""
        if self.dim == 0:
            parts = [f.read(key, rows=r) for r in self.ranges]
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        whole = f.read(key)
        lead = (slice(None),) * self.dim
        parts = [whole[(*lead, slice(start, stop))] for start, stop in self.ranges]
        return torch.cat(parts, dim=self.dim) if len(parts) > 1 else parts[0].contiguous()


@dataclass(frozen=True)
class CheckpointIndex:
    """Which file holds each tensor of a checkpoint directory, and its full shape (headers only, each
    file's header parsed once: ``readers`` then read the tensors)."""

    files: Mapping[str, Path]
    shapes: Mapping[str, tuple[int, ...]]
    readers: Mapping[Path, SafetensorsFile]

    @staticmethod
    def read(directory: str | Path) -> CheckpointIndex:
        where = shard_files(directory)
        readers = {path: SafetensorsFile(path) for path in sorted(set(where.values()))}
        absent = sorted(k for k, path in where.items() if k not in readers[path].entries)
        if absent:
            raise CheckpointError(f"keys listed in the index but absent from their shard: {absent[:SHOW_MISMATCHES]}")
        shapes = {k: readers[path].shape(k) for k, path in where.items()}
        return CheckpointIndex(files=where, shapes=shapes, readers=readers)


def load_weights(model: LiveActDiT, state: Mapping[str, torch.Tensor]) -> LiveActDiT:
    """Strictly load ``state`` (any float dtype; cast to each parameter's dtype)."""
    check_state_dict(model, {k: tuple(v.shape) for k, v in state.items()})
    own = model.state_dict()
    cast = {k: v.to(dtype=own[k].dtype) for k, v in state.items()}
    meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(cast, strict=True, assign=meta)
    return model


def load_checkpoint_dir(
    model: LiveActDiT,
    directory: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    slices: Mapping[str, TensorSlice] | None = None,
    index: CheckpointIndex | None = None,
) -> LiveActDiT:
    """Load a (sharded) safetensors checkpoint directory into ``model``, tensor by tensor, all-or-nothing.

    ``device``: where the weights go (None: the model's device, cpu for a meta model). ``dtype``: the
    runtime dtype (``parameter_dtype`` per parameter; None: each parameter's current dtype). ``slices``:
    for a tensor-parallel rank's sharded model, the part of each split tensor it keeps; its full shapes
    must have been checked (``check_state_dict`` on the unsharded model with ``index.shapes``), and the
    sliced shapes are checked here. ``index``: the directory's headers, when the caller read them already.
    """
    index = index if index is not None else CheckpointIndex.read(directory)
    slices = slices or {}
    if not slices:
        check_state_dict(model, index.shapes)
    targets = model.state_dict(keep_vars=True)  # key -> the Parameter / buffer to replace
    wrong = [
        f"{k}: rank slice {sliced}, model {tuple(t.shape)}"
        for k, t in targets.items()
        if k in slices and (sliced := slices[k].shape(index.shapes[k])) != tuple(t.shape)
    ]
    if wrong or set(slices) - set(targets):
        raise CheckpointError(f"tensor-parallel slices do not match the sharded model: {wrong[:SHOW_MISMATCHES]}")
    first = next(iter(targets.values()))
    place = torch.device(device) if device is not None else (torch.device("cpu") if first.is_meta else first.device)
    for path, f in index.readers.items():
        for key in f.keys():
            if index.files.get(key) != path:
                continue
            old = targets[key]
            run_dtype = old.dtype if dtype is None or not old.is_floating_point() else parameter_dtype(key, dtype)
            piece = slices[key].read(f, key) if key in slices else f.read(key)
            _put(model, key, piece.to(dtype=run_dtype).to(place))  # cast on the host: one tensor at a time
    left = [k for k, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"{len(left)} tensors were not loaded: {left[:SHOW_MISMATCHES]}")
    return model


def _put(model: nn.Module, key: str, value: torch.Tensor) -> None:
    """Replace parameter or buffer ``key`` of ``model`` by ``value`` (a parameter keeps requires_grad)."""
    prefix, _, name = key.rpartition(".")
    module = model.get_submodule(prefix)
    old = module._parameters.get(name)
    if old is not None:
        module._parameters[name] = nn.Parameter(value, requires_grad=old.requires_grad)
    else:
        module._buffers[name] = value


def save_checkpoint_dir(model: LiveActDiT, directory: str | Path, max_shard_bytes: int | None = None) -> Path:
    """Write ``model`` as a checkpoint directory that ``load_checkpoint_dir`` reads.

    One file, or (``max_shard_bytes``) shards of at most that size plus the index (``save_state_dir``).
    ``config.json`` records the ``LiveActConfig`` the weights were trained with (for people; loading
    checks keys and shapes against the preset, not this file).
    """
    d = save_state_dir(model.state_dict(), directory, max_shard_bytes)
    model.config.save(d / CONFIG_FILE)
    return d


def save_state_dir(
    state: Mapping[str, torch.Tensor], directory: str | Path, max_shard_bytes: int | None = None
) -> Path:
    """Write tensors in the public layout: ``SINGLE_FILE``, or shards named like the release's
    (``diffusion_pytorch_model-00001-of-00004.safetensors``) and ``INDEX_FILE`` mapping each key to its
    shard. Each file is written under a temporary name and renamed, the index last, so a reader never
    sees half a checkpoint."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in state.items():
        nbytes = v.numel() * v.element_size()
        if max_shard_bytes is not None and groups[-1] and size + nbytes > max_shard_bytes:
            groups.append({})
            size = 0
        groups[-1][k] = v.detach().contiguous()
        size += nbytes
    stem = SINGLE_FILE.removesuffix(".safetensors")
    names = (
        [SINGLE_FILE]
        if max_shard_bytes is None
        else [f"{stem}-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    )
    for name, group in zip(names, groups, strict=True):
        partial = d / f".{name}.partial"
        save_file(group, partial, metadata={"format": "pt"})
        partial.replace(d / name)
    if max_shard_bytes is not None:
        total = sum(v.numel() * v.element_size() for v in state.values())
        weight_map = {k: name for name, group in zip(names, groups, strict=True) for k in group}
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        partial = d / f".{INDEX_FILE}.partial"
        partial.write_text(json.dumps(index, indent=2))
        partial.replace(d / INDEX_FILE)
    return d
