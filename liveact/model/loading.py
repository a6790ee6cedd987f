"""Building the DiT (on the meta device for big presets) and loading checkpoints strictly.

A checkpoint directory holds the public layout: ``diffusion_pytorch_model.safetensors`` or shards
named by ``diffusion_pytorch_model.safetensors.index.json``'s ``weight_map``. Every key and shape
is checked before anything is loaded; any missing shard, missing/unexpected key or mis-shaped
tensor raises ``CheckpointError`` naming the first mismatches. There is never a partial load.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open

from liveact.config import LiveActConfig
from liveact.model.dit import LiveActDiT

SINGLE_FILE = "diffusion_pytorch_model.safetensors"
INDEX_FILE = "diffusion_pytorch_model.safetensors.index.json"
_SHOW = 5  # mismatches named in an error


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message names the first mismatches."""


def build_model(
    config: LiveActConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> LiveActDiT:
    """Construct the DiT; on ``meta`` no memory is allocated (for shapes, keys, parameter counts)."""
    with torch.device(device):
        model = LiveActDiT(config)
    return model.to(dtype=dtype) if str(device) != "meta" else model


def key_problems(have: Iterable[str], want: Iterable[str], ignore: Callable[[str], bool] | None = None) -> list[str]:
    """Human-readable differences between two key sets (missing, then unexpected), first few named.

    ``ignore`` marks present-but-unwanted keys that are expected to be there (e.g. an unused tower).
    """
    have_set, want_set = set(have), set(want)
    missing = sorted(want_set - have_set)
    unexpected = sorted(k for k in have_set - want_set if ignore is None or not ignore(k))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys, first: {missing[:_SHOW]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:_SHOW]}")
    return problems


def check_state_dict(model: torch.nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Raise CheckpointError unless ``shapes`` has exactly the model's keys with the model's shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    misshaped = sorted(k for k in set(expected) & set(shapes) if tuple(shapes[k]) != expected[k])
    problems = key_problems(shapes, expected)
    if misshaped:
        shown = [f"{k}: checkpoint {tuple(shapes[k])}, model expects {expected[k]}" for k in misshaped[:_SHOW]]
        problems.append(f"{len(misshaped)} mis-shaped tensors, first: {shown}")
    if problems:
        raise CheckpointError("checkpoint does not match the model: " + "; ".join(problems))


def load_weights(model: LiveActDiT, state: Mapping[str, torch.Tensor]) -> LiveActDiT:
    """Strictly load ``state`` (any float dtype; cast to each parameter's dtype)."""
    check_state_dict(model, {k: tuple(v.shape) for k, v in state.items()})
    own = model.state_dict()
    cast = {k: v.to(dtype=own[k].dtype) for k, v in state.items()}
    meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(cast, strict=True, assign=meta)
    return model


def shard_files(directory: str | Path) -> dict[str, Path]:
    """key -> shard path for a checkpoint directory; raises CheckpointError if a shard is missing."""
    d = Path(directory)
    index = d / INDEX_FILE
    if index.exists():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        files = {name: d / name for name in sorted(set(weight_map.values()))}
        absent = [n for n, p in files.items() if not p.exists()]
        if absent:
            raise CheckpointError(f"{d}: {len(absent)} shard(s) named by {INDEX_FILE} are missing: {absent[:_SHOW]}")
        return {k: files[v] for k, v in weight_map.items()}
    single = d / SINGLE_FILE
    if not single.exists():
        raise CheckpointError(f"{d}: neither {INDEX_FILE} nor {SINGLE_FILE} found")
    with safe_open(single, framework="pt") as f:
        return {k: single for k in f.keys()}


def load_checkpoint_dir(model: LiveActDiT, directory: str | Path) -> LiveActDiT:
    """Load a (sharded) safetensors checkpoint directory into ``model``, all-or-nothing."""
    where = shard_files(directory)
    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(set(where.values())):
        with safe_open(path, framework="pt") as f:
            for k in f.keys():
                if where.get(k) == path:
                    shapes[k] = tuple(f.get_slice(k).get_shape())
    absent = sorted(set(where) - set(shapes))
    if absent:
        raise CheckpointError(f"keys listed in the index but absent from their shard: {absent[:_SHOW]}")
    check_state_dict(model, shapes)
    state: dict[str, torch.Tensor] = {}
    for path in sorted(set(where.values())):
        with safe_open(path, framework="pt") as f:
            state.update({k: f.get_tensor(k) for k in f.keys() if where.get(k) == path})
    return load_weights(model, state)


CONFIG_FILE = "config.json"


def save_checkpoint_dir(model: LiveActDiT, directory: str | Path) -> Path:
    """Write ``model`` as a single-file checkpoint directory that ``load_checkpoint_dir`` reads.

    ``config.json`` records the ``LiveActConfig`` the weights were trained with (for people; loading
    checks keys and shapes against the preset, not this file). The weights file is written under a
    temporary name and renamed, so a reader never sees half of it.
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    partial = d / f".{SINGLE_FILE}.partial"
    save_file(state, partial, metadata={"format": "pt"})
    partial.replace(d / SINGLE_FILE)
    model.config.save(d / CONFIG_FILE)
    return d
