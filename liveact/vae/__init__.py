"""The Wan2.1 causal 3-D VAE for LiveAct: presets, strict loading, streaming decode, conditioning."""

from liveact.vae.config import VAE_PRESETS, VaeConfig, get_vae_preset, vae_preset_names
from liveact.vae.encode import condition_mask, encode_condition
from liveact.vae.latents import denormalize, normalize
from liveact.vae.loading import build_vae, load_vae_dir
from liveact.vae.session import DEFAULT_DECODE_MODE, DecodeMode, DecodeSession
from liveact.vae.streaming import DecoderState, StreamingDecoder
from liveact.vae.windows import chunk_windows, encode_chunk_windows

__all__ = [
    "DEFAULT_DECODE_MODE",
    "VAE_PRESETS",
    "DecodeMode",
    "DecodeSession",
    "DecoderState",
    "StreamingDecoder",
    "VaeConfig",
    "build_vae",
    "chunk_windows",
    "condition_mask",
    "denormalize",
    "encode_chunk_windows",
    "encode_condition",
    "get_vae_preset",
    "load_vae_dir",
    "normalize",
    "vae_preset_names",
]
