"""Building diffusers' ``AutoencoderKLWan`` from a ``VaeConfig`` and loading it strictly from disk.

Two formats load: a diffusers directory (``config.json`` + ``diffusion_pytorch_model.safetensors``, whose
architecture fields must equal the ``VaeConfig``'s) and ``Wan2.1_VAE.pth``, the original Wan layout the
official releases ship (renamed on load, ``wan_layout``). ``load_vae`` takes either, or a model directory
holding one (``vae/`` first). Every key and shape is checked before anything is loaded
(``CheckpointError`` names the file and the first mismatches); there is never a partial load and nothing
is ever downloaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from safetensors import safe_open

from liveact.vae import wan_layout
from liveact.vae.config import VaeConfig
from liveact.weight_files import (
    SHOW_MISMATCHES,
    SINGLE_FILE,
    VAE_SUBDIR,
    CheckpointError,
    check_state_dict,
    config_kind,
    key_problems,
    load_pth,
)

__all__ = ["CONFIG_FILE", "WAN_VAE_FILE", "build_vae", "load_vae", "load_vae_dir", "load_vae_pth", "vae_source"]

CONFIG_FILE = "config.json"
WAN_VAE_FILE = "Wan2.1_VAE.pth"  # the original-layout VAE of the Wan and SoulX-LiveAct releases

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
    return _assign(vae, state, f"VAE {cfg.name!r} from {d}")


def load_vae_pth(
    cfg: VaeConfig,
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> AutoencoderKLWan:
    """Load ``Wan2.1_VAE.pth`` (the original Wan key layout) into a model built from ``cfg``, all-or-nothing."""
    p = Path(path)
    state = load_pth(p)
    vae = build_vae(cfg, "meta")
    shapes = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    names = wan_layout.names(cfg, list(shapes))  # original name -> diffusers key
    problems = key_problems(state, names)
    wrong = [f"{k}: file {tuple(state[k].shape)}, expected {shapes[names[k]]}" for k in sorted(set(state) & set(names))
             if tuple(state[k].shape) != shapes[names[k]]]  # fmt: skip
    if wrong:
        problems.append(f"{len(wrong)} mis-shaped tensors, first: {wrong[:SHOW_MISMATCHES]}")
    if problems:
        raise CheckpointError(f"{p}: not the {cfg.name!r} VAE in the original Wan layout: " + "; ".join(problems))
    converted = {names[k]: v.to(device=device, dtype=dtype) for k, v in state.items()}
    return _assign(vae, converted, f"VAE {cfg.name!r} from {p} (original Wan layout)")


def _assign(vae: AutoencoderKLWan, state: dict[str, torch.Tensor], what: str) -> AutoencoderKLWan:
    """Put checked ``state`` into the meta-built ``vae`` (strict, by assignment); nothing may stay on meta."""
    vae.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*vae.named_parameters(), *vae.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"tensors still on the meta device after loading: {left}")
    log.info("loaded %s (%d tensors)", what, len(state))
    return vae.eval()


def vae_source(path: str | Path) -> Path | None:
    """The VAE weights ``path`` names: a diffusers directory or a ``.pth`` file, or the one a model directory
    holds (its ``vae/``, else its ``Wan2.1_VAE.pth``); None when it holds neither."""
    p = Path(path)
    if p.is_file():
        return p
    for inside in (p / VAE_SUBDIR, p / WAN_VAE_FILE):  # a release's own config.json is the DiT's: look inside first
        if inside.exists():
            return inside
    if config_kind(p / CONFIG_FILE, "_class_name") == AutoencoderKLWan.__name__ and (p / SINGLE_FILE).is_file():
        return p
    return None


FRESH_VAE_SEED = 0  # fresh VAE weights never depend on a session seed: every process builds the same VAE


def load_vae(vae_config: VaeConfig, path: str | Path | None, seed: int = FRESH_VAE_SEED) -> AutoencoderKLWan:
    """The VAE ``path`` names (``vae_source``: a diffusers directory, ``Wan2.1_VAE.pth``, or a model directory
    holding one), or, when None, fresh weights that depend on ``seed`` only.

    Fresh weights are built under their own seed (the global RNG is left as it was), so the embedded
    pipeline and the decoder service build the same untrained VAE in every process.
    """
    if path is not None:
        source = vae_source(path)
        if source is None:
            raise CheckpointError(
                f"{path}: no VAE found: expected a diffusers VAE directory ({CONFIG_FILE} + {SINGLE_FILE}), "
                f"{VAE_SUBDIR}/ holding one, or {WAN_VAE_FILE} (the original Wan layout)"
            )
        if source.is_file():
            return load_vae_pth(vae_config, source)
        return load_vae_dir(vae_config, source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_vae(vae_config)
