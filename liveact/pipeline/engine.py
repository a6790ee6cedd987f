"""``Engine``: every model a session needs, loaded once and shared by sessions.

Components per preset (sizes from ``LiveActConfig``): the DiT, the VAE (``config.vae`` preset),
the text/image conditioning encoders and the audio feature backend.

Weights come from local directories only:

* ``tiny``: the built-in weights in ``liveact/weights/tiny`` (``dit/`` and ``vae/``) when present,
  otherwise freshly initialised weights (the output is then not a face; a warning says so). The
  fresh VAE is seeded by ``FRESH_VAE_SEED`` (``load_vae``), so every process builds the same one.
* ``liveact-18b``: ``model_dir`` is the SoulX-LiveAct release as published: the DiT checkpoint
  (``diffusion_pytorch_model*.safetensors`` [+ index], at the top or in ``dit/``), the VAE as
  ``Wan2.1_VAE.pth`` (original Wan layout, renamed on load) or ``vae/`` (diffusers format), the audio model
  as ``chinese-wav2vec2-base/`` or ``wav2vec2/``, and the Wan encoder files
  (``models_t5_umt5-xxl-enc-bf16.pth``, ``google/umt5-xxl/``,
  ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from liveact.audio import AudioConfig, FeatureBackend, load_backend
from liveact.conditioning import ConditioningEncoders, build_encoders
from liveact.config import ConfigError, LiveActConfig, get_preset
from liveact.model.dit import LiveActDiT
from liveact.model.loading import build_model, load_checkpoint_dir
from liveact.vae import StreamingDecoder, VaeConfig, get_vae_preset
from liveact.vae.loading import load_vae
from liveact.weight_files import audio_dir, dit_dir, weights_root

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
KV_CACHES = ("auto", "fp8", "model")


@dataclass
class Engine:
    config: LiveActConfig
    model: LiveActDiT
    vae_config: VaeConfig
    decoder: StreamingDecoder
    encoders: ConditioningEncoders
    audio_config: AudioConfig
    audio_backend: FeatureBackend
    device: torch.device
    trained: bool  # False: fresh weights, output is not meaningful video

    @property
    def vae(self):  # the diffusers AutoencoderKLWan shared by every session
        return self.decoder.vae


def runtime_dtype(device: str | torch.device, name: str = "auto") -> torch.dtype:
    """The DiT's dtype: ``name`` from ``DTYPES``, or "auto" = bf16 on CUDA, fp32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r} must be 'auto' or one of {sorted(DTYPES)}")
    return DTYPES[name]


def runtime_config(
    preset: str, kv_cache: str = "auto", context: str | None = None, compressor: str | None = None
) -> LiveActConfig:
    """``preset``'s config with the KV cache storage chosen: "auto" (the preset's), "fp8" or "model" (the DiT dtype).

    ``context`` / ``compressor`` (None: the preset's) select the ablations a model was trained for: the
    sampler's "clean" sample-level context, the "none" (sliding-window) memory.
    """
    config = get_preset(preset)
    memory = {} if compressor is None else {"compressor": compressor}
    if kv_cache != "auto":
        if kv_cache not in KV_CACHES:
            raise ConfigError(f"kv cache {kv_cache!r} must be one of {KV_CACHES}")
        memory["fp8"] = kv_cache == "fp8"
    sampler = {} if context is None else {"context": context}
    if not memory and not sampler:
        return config
    return dataclasses.replace(
        config,
        memory=dataclasses.replace(config.memory, **memory),
        sampler=dataclasses.replace(config.sampler, **sampler),
    )


def load_dit(
    config: LiveActConfig, root: Path | None, device: torch.device, seed: int = 0, dtype: torch.dtype = torch.float32
) -> LiveActDiT:
    """The DiT alone, in eval mode on ``device``: from ``root`` (its ``dit/`` or itself), or fresh from ``seed``.

    ``dtype``: the runtime dtype (``FP32_PARAMETERS`` stay float32). A checkpoint goes from its files
    into ``dtype`` on ``device`` tensor by tensor (``load_checkpoint_dir``): no full-precision copy.
    Tensor-parallel ranks load their shard instead (``liveact.parallel.loading.load_dit_shard``).
    """
    if root is None:
        return build_model(config).init_weights(seed).to(device).to_runtime_dtype(dtype).eval()
    return load_checkpoint_dir(build_model(config, device="meta"), dit_dir(root), device, dtype).eval()


def load_engine(
    preset: str = "tiny",
    model_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    dtype: str = "auto",
    kv_cache: str = "auto",
    context: str | None = None,
    compressor: str | None = None,
    model: LiveActDiT | None = None,
) -> Engine:
    """Build every component of ``preset``; ``model_dir`` overrides the built-in weights.

    ``model``: a DiT loaded already (a tensor-parallel rank 0's shard); else ``load_dit`` loads it.

    ``dtype`` / ``kv_cache``: the DiT's runtime dtype and cache storage (``runtime_dtype``, ``runtime_config``);
    ``context`` / ``compressor``: an ablation's sampler context and memory (``runtime_config``).
    """
    config = runtime_config(preset, kv_cache, context, compressor)
    vae_config = get_vae_preset(config.vae)
    if vae_config.temporal_stride != config.model.vae_scale:
        raise ConfigError(
            f"VAE preset {config.vae!r} has temporal stride {vae_config.temporal_stride}, "
            f"but the model assumes vae_scale={config.model.vae_scale}"
        )
    device = torch.device(device)
    root = weights_root(preset, model_dir)

    if root is None:
        log.warning("no trained weights for preset %r: using fresh weights, the video will not show a face", preset)
    if model is None:
        model = load_dit(config, root, device, seed, runtime_dtype(device, dtype))
    vae = load_vae(vae_config, root)  # its vae/ (diffusers) or Wan2.1_VAE.pth (the release's original layout)
    vae = vae.to(device).eval()

    audio_config = AudioConfig.for_model(config.model)
    audio = None if root is None or audio_config.backend == "mel" else audio_dir(root)
    return Engine(
        config=config,
        model=model,
        vae_config=vae_config,
        decoder=StreamingDecoder(vae, vae_config),
        encoders=build_encoders(preset, config.model, root, device=device),
        audio_config=audio_config,
        audio_backend=load_backend(audio_config, audio, device=device),
        device=device,
        trained=root is not None,
    )
