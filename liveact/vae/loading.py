"""Building diffusers' ``AutoencoderKLWan`` from a ``VaeConfig`` and loading it strictly from disk.

A VAE directory has the diffusers layout: ``config.json`` + ``diffusion_pytorch_model.safetensors``.
The config's architecture fields must equal the ``VaeConfig``'s, and every key and shape is checked
before anything is loaded (``CheckpointError`` names the first mismatches); there is never a partial
load and nothing is ever downloaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from safetensors import safe_open

from liveact.vae.config import VaeConfig
from liveact.weight_files import SINGLE_FILE, CheckpointError, check_state_dict

__all__ = ["CONFIG_FILE", "build_vae", "load_vae_dir"]

CONFIG_FILE = "config.json"

log = logging.getLogger(__name__)


def build_vae(
    cfg: VaeConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> AutoencoderKLWan:
    """Construct the VAE (fresh weights) in eval mode; on ``meta`` no memory is allocated."""
    with torch.device(device):
        vae = AutoencoderKLWan(**cfg.diffusers_kwargs())
    if str(device) != "meta" and dtype != torch.float32:  # built in float32; skip a no-op cast's warning
        vae = vae.to(dtype=dtype)
    return vae.eval()


def _check_config(cfg: VaeConfig, path: Path) -> None:
    """Refuse a config.json whose architecture fields differ from ``cfg`` (absent fields are not checked)."""
    saved = json.loads(path.read_text())
    differ = []
    for key, ours in cfg.diffusers_kwargs().items():
        if key in saved and saved[key] != ours:
            differ.append(f"{key}: file {saved[key]!r}, config {cfg.name!r} has {ours!r}")
    if differ:
        raise CheckpointError(f"{path} does not describe VAE preset {cfg.name!r}: " + "; ".join(differ))


def load_vae_dir(
    cfg: VaeConfig,
    directory: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> AutoencoderKLWan:
    """Load a diffusers-format VAE directory into a model built from ``cfg``, all-or-nothing."""
    d = Path(directory)
    files = {name: d / name for name in (CONFIG_FILE, SINGLE_FILE)}
    absent = [name for name, p in files.items() if not p.is_file()]
    if absent:
        raise CheckpointError(f"{d}: VAE file(s) missing: {absent}")
    _check_config(cfg, files[CONFIG_FILE])
    vae = build_vae(cfg, "meta")
    with safe_open(files[SINGLE_FILE], framework="pt") as f:
        check_state_dict(vae, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
        state = {k: f.get_tensor(k).to(device=device, dtype=dtype) for k in f.keys()}
    vae.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*vae.named_parameters(), *vae.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"tensors still on the meta device after loading: {left}")
    log.info("loaded VAE %r from %s (%d tensors)", cfg.name, d, len(state))
    return vae.eval()


FRESH_VAE_SEED = 0  # fresh VAE weights never depend on a session seed: every process builds the same VAE


def load_vae(vae_config: VaeConfig, vae_dir: str | Path | None, seed: int = FRESH_VAE_SEED) -> AutoencoderKLWan:
    """The VAE in ``vae_dir`` (diffusers format), or, when None, fresh weights that depend on ``seed`` only.

    Fresh weights are built under their own seed (the global RNG is left as it was), so the embedded
    pipeline and the decoder service build the same untrained VAE in every process.
    """
    if vae_dir is not None:
        return load_vae_dir(vae_config, vae_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_vae(vae_config)
