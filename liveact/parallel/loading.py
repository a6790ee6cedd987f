"""A tensor-parallel rank's DiT: only its shard is ever read, cast or placed on its device.

The model is built on ``meta``, the checkpoint's headers are checked against it (full shapes), the
meta model is sharded for this rank (``shard_dit``: shapes only), and each tensor is then read from
its file as the rank's slice (``shard_slices``: rows of a column-parallel layer, columns of a
row-parallel one, the rank's K and V rows of the packed audio ``kv_linear``), cast to its runtime
dtype and put on the rank's device (``load_checkpoint_dir``). A rank's peak is its shard plus one
tensor. Fresh weights (no checkpoint: tests, the tiny preset without weights) are built whole from
the seed on every rank and sharded, so every rank starts from the same model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from liveact.config import LiveActConfig
from liveact.model.dit import LiveActDiT
from liveact.model.loading import CheckpointIndex, build_model, load_checkpoint_dir
from liveact.parallel.tp import TPComm, shard_dit, shard_slices
from liveact.pipeline.engine import load_dit
from liveact.weight_files import check_state_dict, dit_dir


def load_dit_shard(
    config: LiveActConfig, root: Path | None, device: torch.device, dtype: torch.dtype, comm: TPComm, seed: int = 0
) -> LiveActDiT:
    """Rank ``comm.rank``'s shard of the DiT on ``device`` in ``dtype``, in eval mode."""
    if root is None:
        return shard_dit(load_dit(config, None, device, seed, dtype), comm)
    directory = dit_dir(root)
    index = CheckpointIndex.read(directory)
    model = build_model(config, device="meta")
    check_state_dict(model, index.shapes)  # the full shapes, before the model is sharded
    slices = shard_slices(model, comm.rank, comm.size)
    shard_dit(model, comm)
    return load_checkpoint_dir(model, directory, device, dtype, slices, index).eval()
