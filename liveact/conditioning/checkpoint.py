"""Reading Wan ``.pth`` checkpoints safely and loading them into meta-built transformers modules.

``load_pth`` never unpickles code (``weights_only=True``) and memory-maps the file, so tensors a
mapping ignores (the CLIP text tower) are never read. ``check_layout`` refuses a checkpoint with
a missing or unknown source key; ``assign_strict`` checks every target key and shape
against the module before anything is loaded. Errors are ``CheckpointError`` naming the first
mismatches; there is never a partial load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from liveact.weight_files import CheckpointError, check_state_dict, key_problems, load_pth

__all__ = ["assign_strict", "check_layout", "load_pth"]

_SHOW = 5  # mismatches named in an error


def check_layout(
    keys: Iterable[str],
    expected: Iterable[str],
    what: str,
    unused: Callable[[str], bool] = lambda key: False,
) -> None:
    """Raise CheckpointError unless ``keys`` hold every ``expected`` key and nothing else but ``unused`` keys."""
    problems = key_problems(keys, expected, unused)
    if problems:
        raise CheckpointError(f"{what} checkpoint does not have the expected layout: " + "; ".join(problems))


def assign_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
    template: nn.Module | None = None,
) -> None:
    """Load ``state`` into ``module`` (built on meta) by assignment, floats cast to ``dtype``.

    Tensors shared between keys (tied embeddings) are cast once and stay shared. Non-persistent
    buffers (not in any checkpoint) are copied from ``template``, a small real-device build.
    """
    check_state_dict(module, {k: tuple(v.shape) for k, v in state.items()})
    cast: dict[int, torch.Tensor] = {}
    for v in state.values():
        if id(v) not in cast:
            cast[id(v)] = v.to(dtype) if v.is_floating_point() else v
    module.load_state_dict({k: cast[id(v)] for k, v in state.items()}, strict=True, assign=True)
    if template is not None:
        fill = dict(template.named_buffers())
        for name, buf in list(module.named_buffers()):
            if buf.is_meta and name in fill:
                owner, _, leaf = name.rpartition(".")
                setattr(module.get_submodule(owner), leaf, fill[name].clone())
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"tensors still on the meta device after loading: {left[:_SHOW]}")
