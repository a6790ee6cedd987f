"""Building the DiT (on the meta device for big presets) and loading checkpoints strictly.

A checkpoint directory holds the public layout: ``diffusion_pytorch_model.safetensors`` or shards
named by ``diffusion_pytorch_model.safetensors.index.json``'s ``weight_map``. Every key and shape
is checked before anything is loaded; any missing shard, missing/unexpected key or mis-shaped
tensor raises ``CheckpointError`` naming the first mismatches. There is never a partial load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open

from liveact.config import LiveActConfig
from liveact.model.dit import LiveActDiT
from liveact.weight_files import (
    CONFIG_FILE,
    SHOW_MISMATCHES,
    SINGLE_FILE,
    CheckpointError,
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


def load_weights(model: LiveActDiT, state: Mapping[str, torch.Tensor]) -> LiveActDiT:
    """Strictly load ``state`` (any float dtype; cast to each parameter's dtype)."""
    check_state_dict(model, {k: tuple(v.shape) for k, v in state.items()})
    own = model.state_dict()
    cast = {k: v.to(dtype=own[k].dtype) for k, v in state.items()}
    meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(cast, strict=True, assign=meta)
    return model


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
        raise CheckpointError(f"keys listed in the index but absent from their shard: {absent[:SHOW_MISMATCHES]}")
    check_state_dict(model, shapes)
    state: dict[str, torch.Tensor] = {}
    for path in sorted(set(where.values())):
        with safe_open(path, framework="pt") as f:
            state.update({k: f.get_tensor(k) for k in f.keys() if where.get(k) == path})
    return load_weights(model, state)


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
