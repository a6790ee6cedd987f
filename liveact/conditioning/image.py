"""The CLIP image encoder of ``liveact-18b``: transformers' ``CLIPVisionModel`` as open-clip ViT-H/14.

Wan ships the vision tower inside ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`` in
its own module layout (Wan2.1 ``wan/modules/clip.py``, ``XLMRobertaCLIP.visual``), which fuses q, k
and v into one ``to_qkv`` Linear (rows: all of q, then k, then v). ``wan_clip_to_hf`` maps it to
transformers' names, splitting ``to_qkv``; ``hf_clip_to_wan`` is its inverse. Per block i::

    visual.transformer.i.norm1            encoder.layers.i.layer_norm1
    visual.transformer.i.attn.to_qkv      encoder.layers.i.self_attn.{q,k,v}_proj  (split in 3 along rows)
    visual.transformer.i.attn.proj        encoder.layers.i.self_attn.out_proj
    visual.transformer.i.norm2            encoder.layers.i.layer_norm2
    visual.transformer.i.mlp.0 / mlp.2    encoder.layers.i.mlp.fc1 / fc2

plus ``visual.patch_embedding.weight`` (no bias), ``visual.cls_embedding`` (1, 1, C) ->
``embeddings.class_embedding`` (C,), ``visual.pos_embedding`` (1, N, C) ->
``embeddings.position_embedding.weight`` (N, C), ``visual.pre_norm`` -> ``pre_layrnorm`` and
``visual.post_norm`` -> ``post_layernorm``. Expected and ignored: the text tower (``textual.*``),
``log_scale`` and the image projection ``visual.head``, which the block-31 output never uses.
Target names are the vision transformer's (``CLIPVisionModel`` itself in transformers 5, its
``vision_model`` in 4.x).

Encoding follows Wan's ``CLIPModel.visual``: images in [-1, 1] are resized bicubically (no
antialias) to 224x224, mapped to [0, 1], normalised with the OpenAI CLIP mean/std, and the output
is the hidden state after block 31 of 32 (``use_31_block``): pre-LayerNorm applied, post-LayerNorm
not; transformers' ``hidden_states[31]``. Shapes: (B, 3, H, W) -> (B, 257, 1280).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel

from liveact.conditioning.checkpoint import assign_strict, check_layout, load_pth

__all__ = [
    "CLIP_CHECKPOINT",
    "ClipImageEncoder",
    "ClipVisionSpec",
    "build_clip_vision",
    "clip_key_map",
    "clip_preprocess",
    "hf_clip_to_wan",
    "load_clip_image_encoder",
    "wan_clip_to_hf",
]

CLIP_CHECKPOINT = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"

log = logging.getLogger(__name__)

_QKV = "attn.to_qkv"
_HF_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
_CLS, _HF_CLS = "visual.cls_embedding", "embeddings.class_embedding"
_POS, _HF_POS = "visual.pos_embedding", "embeddings.position_embedding.weight"
# Wan module under visual.transformer.i -> transformers module under encoder.layers.i
_BLOCK_MODULES = {"norm1": "layer_norm1", "attn.proj": "self_attn.out_proj", "norm2": "layer_norm2"}
_BLOCK_MODULES |= {"mlp.0": "mlp.fc1", "mlp.2": "mlp.fc2"}
_TOP_KEYS = {
    "visual.patch_embedding.weight": "embeddings.patch_embedding.weight",
    "visual.pre_norm.weight": "pre_layrnorm.weight",
    "visual.pre_norm.bias": "pre_layrnorm.bias",
    "visual.post_norm.weight": "post_layernorm.weight",
    "visual.post_norm.bias": "post_layernorm.bias",
}
_UNUSED_KEYS = frozenset({"visual.head", "log_scale"})
_UNUSED_PREFIX = "textual."


def _unused(key: str) -> bool:
    return key in _UNUSED_KEYS or key.startswith(_UNUSED_PREFIX)


@dataclass(frozen=True)
class ClipVisionSpec:
    """Vision tower sizes and preprocessing; the defaults are open-clip ViT-H/14 as Wan uses it."""

    image_size: int = 224
    patch_size: int = 14
    dim: int = 1280
    ffn_dim: int = 5120  # mlp_ratio 4
    num_heads: int = 16  # open-clip head_width 80
    num_layers: int = 32
    output_blocks: int = 31  # Wan's use_31_block: the output after all but the last block
    eps: float = 1e-5
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP, as Wan
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    @property
    def num_tokens(self) -> int:
        """The class token plus one token per patch."""
        return (self.image_size // self.patch_size) ** 2 + 1

    def hf_config(self) -> CLIPVisionConfig:
        return CLIPVisionConfig(
            hidden_size=self.dim,
            intermediate_size=self.ffn_dim,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_act="gelu",  # exact (erf) GELU: Wan builds ViT-H with activation='gelu'
            layer_norm_eps=self.eps,
        )


def build_clip_vision(spec: ClipVisionSpec, device: str | torch.device = "cpu") -> CLIPVisionModel:
    """Construct the vision tower in eval mode; on ``meta`` nothing is allocated."""
    with torch.device(device):
        model = CLIPVisionModel(spec.hf_config())
    return model.eval().requires_grad_(False)


def _tower(model: CLIPVisionModel) -> torch.nn.Module:
    return getattr(model, "vision_model", model)


def clip_key_map(num_layers: int) -> dict[str, tuple[str, ...]]:
    """Wan key -> transformers key(s); ``to_qkv`` maps to three keys (q, k, v)."""
    table: dict[str, tuple[str, ...]] = {k: (v,) for k, v in _TOP_KEYS.items()}
    table |= {_CLS: (_HF_CLS,), _POS: (_HF_POS,)}
    for i in range(num_layers):
        wan, hf = f"visual.transformer.{i}.", f"encoder.layers.{i}."
        for p in ("weight", "bias"):
            table[f"{wan}{_QKV}.{p}"] = tuple(f"{hf}{q}.{p}" for q in _HF_QKV)
            table |= {f"{wan}{w}.{p}": (f"{hf}{h}.{p}",) for w, h in _BLOCK_MODULES.items()}
    return table


def wan_clip_to_hf(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Map the visual keys of Wan's CLIP checkpoint; missing or unknown keys raise CheckpointError."""
    table = clip_key_map(num_layers)
    check_layout(state, table, "CLIP (Wan layout)", unused=_unused)
    out: dict[str, torch.Tensor] = {}
    for src, dsts in table.items():
        t = state[src]
        if src == _CLS:
            t = t.flatten()  # (1, 1, C) -> (C,); any other shape fails the shape check
        elif src == _POS:
            t = t.squeeze(0)  # (1, N, C) -> (N, C)
        parts = t.chunk(len(dsts), dim=0) if len(dsts) > 1 else (t,)
        out |= dict(zip(dsts, parts, strict=True))
    return out


def hf_clip_to_wan(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """The inverse of ``wan_clip_to_hf`` for the visual keys (q, k, v fused back into ``to_qkv``)."""
    table = clip_key_map(num_layers)
    check_layout(state, [h for dsts in table.values() for h in dsts], "CLIP (transformers layout)")
    out = {src: torch.cat([state[d] for d in dsts], dim=0) for src, dsts in table.items()}
    out[_CLS] = out[_CLS].reshape(1, 1, -1)
    out[_POS] = out[_POS].unsqueeze(0)
    return out


def clip_preprocess(images: torch.Tensor, spec: ClipVisionSpec) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 3, S, S) float32, in Wan's order: resize, rescale to [0, 1], normalise."""
    s = spec.image_size
    x = F.interpolate(images.float(), size=(s, s), mode="bicubic", align_corners=False)
    x = x * 0.5 + 0.5  # [-1, 1] -> [0, 1]
    mean = x.new_tensor(spec.mean).view(1, 3, 1, 1)
    std = x.new_tensor(spec.std).view(1, 3, 1, 1)
    return (x - mean) / std


class ClipImageEncoder:
    """Reference images (B, 3, H, W) in [-1, 1] -> CLIP tokens (B, num_tokens, dim) after ``output_blocks``."""

    def __init__(self, model: CLIPVisionModel, spec: ClipVisionSpec) -> None:
        self.model = model
        self.spec = spec

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        p = next(self.model.parameters())
        pixels = clip_preprocess(images.to(p.device), self.spec).to(p.dtype)  # (B, 3, S, S)
        out = self.model(pixel_values=pixels, output_hidden_states=True)
        return out.hidden_states[self.spec.output_blocks]  # index 0 is the pre-LayerNorm'd embedding


def load_clip_image_encoder(
    checkpoint: str | Path,
    spec: ClipVisionSpec | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ClipImageEncoder:
    """Load the vision tower from Wan's CLIP checkpoint (text tower ignored), all-or-nothing."""
    spec = spec or ClipVisionSpec()
    model = build_clip_vision(spec, "meta")
    state = wan_clip_to_hf(load_pth(checkpoint), spec.num_layers)
    template = build_clip_vision(dataclasses.replace(spec, num_layers=0))  # for non-persistent buffers
    assign_strict(_tower(model), state, dtype, template=_tower(template))
    model = model.to(device)
    log.info("loaded CLIP vision tower from %s (%d tensors, %s)", checkpoint, len(state), dtype)
    return ClipImageEncoder(model, spec)
