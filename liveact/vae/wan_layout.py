"""The Wan2.1 VAE's original key layout (``Wan2.1_VAE.pth``, as the Wan and SoulX-LiveAct releases ship it)
and diffusers' ``AutoencoderKLWan`` layout: one name for each tensor in both, from the ``VaeConfig``.

The two differ in names only (every tensor keeps its shape and values):

* a residual block is ``residual.{0,2,3,6}`` + ``shortcut`` (norm, conv, norm, conv) in the original,
  ``norm1 / conv1 / norm2 / conv2`` + ``conv_shortcut`` in diffusers;
* the middle is ``middle.{0,1,2}`` (block, attention, block) vs ``mid_block.resnets.{0,1}`` + ``attentions.0``;
* the ends are ``conv1`` / ``head.{0,2}`` vs ``conv_in`` / ``norm_out`` / ``conv_out``; the model's own
  ``conv1`` / ``conv2`` are ``quant_conv`` / ``post_quant_conv``;
* the encoder's blocks keep their flat order (``downsamples.i`` = ``down_blocks.i``), while the decoder's flat
  ``upsamples.i`` are grouped by stage: stage s holds ``num_res_blocks + 1`` blocks and, except the last
  stage, one upsampler, so flat index ``s * (num_res_blocks + 2) + k``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from liveact.vae.config import VaeConfig

_RESIDUAL = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma": "residual.3.gamma",
             "conv2": "residual.6", "conv_shortcut": "shortcut"}  # fmt: skip
_ATTENTION = ("norm.gamma", "to_qkv", "proj")
_ENDS = {"conv_in": "conv1", "norm_out.gamma": "head.0.gamma", "conv_out": "head.2"}
_TOP = {"quant_conv": "conv1", "post_quant_conv": "conv2"}


def original_name(cfg: VaeConfig, key: str) -> str:
    """The original layout's name of diffusers key ``key`` (``ValueError`` for a key neither layout has)."""
    part, _, rest = key.partition(".")
    if part in _TOP:
        return _TOP[part] + "." + rest
    if part not in ("encoder", "decoder"):
        raise ValueError(f"not a Wan VAE key: {key}")
    return f"{part}.{_coder_name(cfg, part, rest)}"


def _coder_name(cfg: VaeConfig, coder: str, rest: str) -> str:
    for ours, theirs in _ENDS.items():
        if rest == ours or rest.startswith(ours + "."):
            return theirs + rest[len(ours) :]
    parts = rest.split(".")
    if parts[0] == "mid_block":
        kind, index, tail = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle.{2 * index}.{_residual(tail)}"
        if kind == "attentions" and index == 0 and tail.startswith(_ATTENTION):
            return f"middle.1.{tail}"
    elif coder == "encoder" and parts[0] == "down_blocks":
        index, tail = parts[1], ".".join(parts[2:])
        return f"downsamples.{index}.{_residual(tail) if not tail.startswith(('resample', 'time_conv')) else tail}"
    elif coder == "decoder" and parts[0] == "up_blocks":
        stage, kind, k, tail = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        first = stage * (cfg.num_res_blocks + 2)
        if kind == "resnets":
            return f"upsamples.{first + k}.{_residual(tail)}"
        if kind == "upsamplers" and k == 0:
            return f"upsamples.{first + cfg.num_res_blocks + 1}.{tail}"
    raise ValueError(f"not a Wan VAE key: {coder}.{rest}")


def _residual(tail: str) -> str:
    for ours, theirs in _RESIDUAL.items():
        if tail.startswith(ours + ".") or tail == ours:
            return theirs + tail[len(ours) :]
    raise ValueError(f"not a residual block key: {tail}")


def names(cfg: VaeConfig, diffusers_keys: list[str]) -> dict[str, str]:
    """original name -> diffusers key, for every key of a model built from ``cfg``."""
    return {original_name(cfg, k): k for k in diffusers_keys}


def to_original(cfg: VaeConfig, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers state dict in the original layout (how the releases ship it)."""
    return {original_name(cfg, k): v for k, v in state.items()}
