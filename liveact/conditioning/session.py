"""Choosing a preset's conditioning encoders, and computing a session's conditioning once.

``build_encoders`` returns the text + image encoder pair of a preset: the weight-free tiny encoders
for ``tiny``; umT5-XXL and CLIP ViT-H/14 loaded from a Wan weights directory for ``liveact-18b``.
Built pairs are kept per (preset, sizes, directory, device, dtypes), so a process loads the real
encoders' weights (about 11 GB of umT5 in bf16, 2.5 GB of CLIP in fp32) once. ``ConditioningCache``
holds one session's results: the text context per prompt (a session may switch prompts) and the
CLIP tokens per reference image.

Shape contract, whatever the preset: ``encode_text`` gives one (L_i <= text_len, text_dim) tensor
per prompt, unpadded; ``encode_image`` maps (B, 3, H, W) in [-1, 1] to (B, clip_tokens, clip_dim).
These are exactly the inputs of ``LiveActDiT.encode_context``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from liveact.conditioning.tiny import TinyImageTokenizer, TinyTextEncoder
from liveact.config import ConfigError, ModelConfig, preset_names
from liveact.weight_files import CheckpointError

__all__ = [
    "ConditioningCache",
    "ConditioningEncoders",
    "EncoderPair",
    "ImageEncoder",
    "TextEncoder",
    "build_encoders",
    "clear_encoder_cache",
]

log = logging.getLogger(__name__)

_TINY = "tiny"
_WAN = "liveact-18b"


class TextEncoder(Protocol):
    def encode(self, prompts: Sequence[str]) -> list[torch.Tensor]: ...


class ImageEncoder(Protocol):
    def encode(self, images: torch.Tensor) -> torch.Tensor: ...


class ConditioningEncoders(Protocol):
    def encode_text(self, prompts: Sequence[str]) -> list[torch.Tensor]: ...

    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class EncoderPair:
    """A text encoder and an image encoder, as one ``ConditioningEncoders``."""

    text: TextEncoder
    image: ImageEncoder

    def encode_text(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        return self.text.encode(prompts)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image.encode(images)


_BUILT: dict[tuple, EncoderPair] = {}


def clear_encoder_cache() -> None:
    """Forget every built encoder pair (frees the real encoders' weights once nothing else holds them)."""
    _BUILT.clear()


def build_encoders(
    preset_name: str,
    model_config: ModelConfig,
    weights_dir: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    text_dtype: torch.dtype = torch.bfloat16,
    image_dtype: torch.dtype = torch.float32,
) -> ConditioningEncoders:
    """The preset's encoder pair, built once per process for the same arguments."""
    wdir = None if weights_dir is None else str(Path(weights_dir).resolve())
    key = (preset_name, model_config, wdir, str(device), text_dtype, image_dtype)
    if key not in _BUILT:
        if preset_name == _TINY:
            pair = EncoderPair(
                TinyTextEncoder(model_config.text_len, model_config.text_dim),
                TinyImageTokenizer(model_config.clip_tokens, model_config.clip_dim),
            )
        elif preset_name == _WAN:
            pair = _build_wan(model_config, wdir, device, text_dtype, image_dtype)
        else:
            raise ConfigError(f"no conditioning encoders for preset {preset_name!r}; choose one of {preset_names()}")
        _BUILT[key] = pair
    return _BUILT[key]


def _build_wan(
    m: ModelConfig,
    weights_dir: str | None,
    device: str | torch.device,
    text_dtype: torch.dtype,
    image_dtype: torch.dtype,
) -> EncoderPair:
    # imported here so the tiny path never imports the transformers models
    from liveact.conditioning import image, text

    t5, clip = text.UMT5Spec(), image.ClipVisionSpec()
    expected = {
        text.T5_CHECKPOINT: "umT5-XXL encoder weights (Wan layout)",
        text.T5_TOKENIZER_DIR + "/": "its tokenizer directory (AutoTokenizer files)",
        image.CLIP_CHECKPOINT: "open-clip XLM-R ViT-H/14 weights (Wan layout)",
    }
    listing = "; ".join(f"{name} ({what})" for name, what in expected.items())
    if weights_dir is None:
        raise CheckpointError(f"preset {_WAN!r} needs weights_dir, a directory holding: {listing}")
    d = Path(weights_dir)
    absent = [name for name in expected if not (d / name).exists()]
    if absent:
        raise CheckpointError(f"{d}: conditioning weights missing: {absent}; expected: {listing}")
    sizes = {
        "text_dim": (m.text_dim, t5.dim),
        "clip_dim": (m.clip_dim, clip.dim),
        "clip_tokens": (m.clip_tokens, clip.num_tokens),
    }
    wrong = [f"{k}={ours} (encoder gives {theirs})" for k, (ours, theirs) in sizes.items() if ours != theirs]
    if wrong:
        raise ConfigError(f"model config does not match the {_WAN} encoders: {wrong}")
    enc_text = text.load_umt5_encoder(
        d / text.T5_CHECKPOINT, d / text.T5_TOKENIZER_DIR, m.text_len, t5, device, text_dtype
    )
    enc_image = image.load_clip_image_encoder(d / image.CLIP_CHECKPOINT, clip, device, image_dtype)
    return EncoderPair(enc_text, enc_image)


def _digest(t: torch.Tensor) -> str:
    """Content key of a tensor: shape, dtype and bytes."""
    c = t.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{tuple(c.shape)}|{c.dtype}".encode())
    h.update(c.view(torch.uint8).numpy().tobytes() if c.numel() else b"")
    return h.hexdigest()


class ConditioningCache:
    """One session's conditioning, each computed once: text context per prompt, CLIP tokens per image."""

    def __init__(self, encoders: ConditioningEncoders) -> None:
        self.encoders = encoders
        self._text: dict[str, torch.Tensor] = {}
        self._image: dict[str, torch.Tensor] = {}

    def text(self, prompt: str) -> torch.Tensor:
        """(L <= text_len, text_dim) for ``prompt``."""
        if prompt not in self._text:
            (self._text[prompt],) = self.encoders.encode_text([prompt])
        return self._text[prompt]

    def image(self, image: torch.Tensor) -> torch.Tensor:
        """(1, clip_tokens, clip_dim) for one reference image (3, H, W) or (1, 3, H, W) in [-1, 1]."""
        batch = image.unsqueeze(0) if image.dim() == 3 else image
        if batch.dim() != 4 or batch.shape[0] != 1:
            raise ValueError(f"expected one image (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
        key = _digest(batch)
        if key not in self._image:
            self._image[key] = self.encoders.encode_image(batch)
        return self._image[key]
