"""CLIP image encoder: Wan key mapping (round trip and semantics), block-31 output, preprocessing, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from liveact.conditioning.image import (
    ClipImageEncoder,
    ClipVisionSpec,
    build_clip_vision,
    clip_key_map,
    clip_preprocess,
    hf_clip_to_wan,
    load_clip_image_encoder,
    wan_clip_to_hf,
)
from liveact.weight_files import CheckpointError

SPEC = ClipVisionSpec(image_size=28, patch_size=14, dim=32, ffn_dim=64, num_heads=4, num_layers=3, output_blocks=2)
# Wan's CLIP preprocessing constants (wan/modules/clip.py, _clip): OpenAI CLIP mean / std
WAN_MEAN = (0.48145466, 0.4578275, 0.40821073)
WAN_STD = (0.26862954, 0.26130258, 0.27577711)
VIT_H_PARAMS = 630_766_080  # 32 blocks of 19,677,440 + patch 752,640 + cls 1,280 + pos 328,960 + 2 LayerNorms
OPEN_CLIP_PROJ = 1280 * 1024  # visual.head / open_clip's proj, unused by the block-31 output


def _random_model(seed: int = 0):
    model = build_clip_vision(SPEC)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if "norm" in name and name.endswith("weight") else 0.3 * noise)
    return model


def _wan_checkpoint(model) -> dict[str, torch.Tensor]:
    """The Wan CLIP file's layout: visual tower + (ignored) text tower, log_scale and image head."""
    wan = hf_clip_to_wan(model.state_dict(), SPEC.num_layers)
    wan["visual.head"] = torch.randn(SPEC.dim, 16)
    wan["log_scale"] = torch.tensor(4.6)
    wan["textual.token_embedding.weight"] = torch.randn(10, 8)
    return wan


def _wan_reference(sd: dict[str, torch.Tensor], images: torch.Tensor, blocks: int) -> torch.Tensor:
    """Wan's CLIPModel.visual(use_31_block) semantics on a Wan-layout state dict."""
    x = F.interpolate(images, size=(SPEC.image_size,) * 2, mode="bicubic", align_corners=False)
    x = (x * 0.5 + 0.5 - torch.tensor(WAN_MEAN).view(1, 3, 1, 1)) / torch.tensor(WAN_STD).view(1, 3, 1, 1)
    b, c, h = x.shape[0], SPEC.dim, SPEC.num_heads
    x = F.conv2d(x, sd["visual.patch_embedding.weight"], stride=SPEC.patch_size).flatten(2).transpose(1, 2)
    x = torch.cat([sd["visual.cls_embedding"].expand(b, -1, -1), x], dim=1) + sd["visual.pos_embedding"]
    x = F.layer_norm(x, (c,), sd["visual.pre_norm.weight"], sd["visual.pre_norm.bias"], SPEC.eps)
    for i in range(blocks):
        p = f"visual.transformer.{i}."
        y = F.layer_norm(x, (c,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], SPEC.eps)
        qkv = F.linear(y, sd[p + "attn.to_qkv.weight"], sd[p + "attn.to_qkv.bias"]).view(b, -1, 3, h, c // h)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)
        x = x + F.linear(a, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        y = F.layer_norm(x, (c,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], SPEC.eps)
        y = F.gelu(F.linear(y, sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"]))
        x = x + F.linear(y, sd[p + "mlp.2.weight"], sd[p + "mlp.2.bias"])
    return x  # no post_norm


def _images(seed: int = 1, b: int = 2) -> torch.Tensor:
    return torch.rand(b, 3, 45, 37, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def model():
    return _random_model()


@pytest.fixture
def checkpoint(tmp_path, model):
    torch.save(_wan_checkpoint(model), tmp_path / "clip.pth")
    return tmp_path / "clip.pth"


def test_key_map_covers_every_tensor(model):
    table = clip_key_map(SPEC.num_layers)
    assert len(table) == 7 + 12 * SPEC.num_layers  # 6 weight+bias pairs per block
    targets = [k for dsts in table.values() for k in dsts]
    assert sorted(targets) == sorted(model.state_dict())
    assert table["visual.transformer.0.attn.to_qkv.bias"] == tuple(
        f"encoder.layers.0.self_attn.{c}_proj.bias" for c in "qkv"
    )


def test_round_trip_through_wan_layout_is_exact(model, checkpoint):
    enc = load_clip_image_encoder(checkpoint, SPEC)
    loaded, ours = enc.model.state_dict(), model.state_dict()
    assert sorted(loaded) == sorted(ours)
    assert all(torch.equal(loaded[k], ours[k]) for k in ours)
    assert torch.equal(enc.model.embeddings.position_ids, torch.arange(SPEC.num_tokens)[None])
    with torch.no_grad():
        assert torch.equal(enc.encode(_images()), ClipImageEncoder(model, SPEC).encode(_images()))


def test_output_is_wan_block_output_without_post_norm(model):
    enc = ClipImageEncoder(model, SPEC)
    out = enc.encode(_images())
    assert out.shape == (2, SPEC.num_tokens, SPEC.dim) == (2, 5, 32)
    reference = _wan_reference(hf_clip_to_wan(model.state_dict(), SPEC.num_layers), _images(), SPEC.output_blocks)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    all_blocks = _wan_reference(hf_clip_to_wan(model.state_dict(), SPEC.num_layers), _images(), SPEC.num_layers)
    assert not torch.allclose(out, all_blocks, atol=1e-3)  # the last block is really left out


def test_preprocessing_constants_and_resize():
    spec = ClipVisionSpec()
    assert spec.mean == WAN_MEAN and spec.std == WAN_STD
    grey = torch.full((1, 3, 64, 48), 0.2)
    x = clip_preprocess(grey, spec)
    assert x.shape == (1, 3, 224, 224)
    expected = (torch.tensor([0.6, 0.6, 0.6]) - torch.tensor(WAN_MEAN)) / torch.tensor(WAN_STD)
    torch.testing.assert_close(x[0, :, 100, 100], expected, atol=1e-5, rtol=0)


def test_unused_keys_are_ignored_but_others_are_named(model):
    wan = _wan_checkpoint(model)
    assert len(wan_clip_to_hf(wan, SPEC.num_layers)) == len(model.state_dict())
    del wan["visual.transformer.2.attn.to_qkv.bias"]
    wan["visual.transformer.0.attn.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"1 missing keys.*to_qkv\.bias.*1 unexpected.*attn\.extra"):
        wan_clip_to_hf(wan, SPEC.num_layers)


def test_misshaped_tensor_is_named(model, tmp_path):
    wan = _wan_checkpoint(model)
    wan["visual.pos_embedding"] = torch.zeros(1, SPEC.num_tokens + 1, SPEC.dim)
    torch.save(wan, tmp_path / "clip.pth")
    with pytest.raises(CheckpointError, match=r"mis-shaped.*position_embedding\.weight: checkpoint \(6, 32\)"):
        load_clip_image_encoder(tmp_path / "clip.pth", SPEC)


def test_vit_h_builds_on_meta_with_its_parameter_count():
    spec = ClipVisionSpec()
    model = build_clip_vision(spec, "meta")
    assert all(p.is_meta for p in model.parameters())
    n = sum(p.numel() for p in model.parameters())
    assert n == VIT_H_PARAMS and n + OPEN_CLIP_PROJ == 632_076_800  # open_clip's ViT-H/14 visual: ~632M
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (
        1280,
        32,
        16,
        5120,
    )
    assert (cfg.patch_size, cfg.image_size, cfg.hidden_act, cfg.layer_norm_eps) == (14, 224, "gelu", 1e-5)
    assert spec.num_tokens == 257 and spec.output_blocks == 31
