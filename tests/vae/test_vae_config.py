"""VAE presets, the real Wan2.1 size on the meta device, and strict loading from a diffusers directory."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import safetensors.torch
import torch
from diffusers import AutoencoderKLWan

from liveact.config import ConfigError
from liveact.vae import build_vae, get_vae_preset, load_vae_dir, vae_preset_names
from liveact.vae.loading import CONFIG_FILE
from liveact.weight_files import SINGLE_FILE, CheckpointError

WAN21_PARAMS = 126.9e6


def test_presets_and_frozen():
    assert vae_preset_names() == ["tiny", "wan2.1"]
    cfg = get_vae_preset("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.z_dim = 8  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown VAE preset"):
        get_vae_preset("wan2.2")


def test_wan21_preset_is_diffusers_defaults():
    defaults = {k: p.default for k, p in inspect.signature(AutoencoderKLWan.__init__).parameters.items()}
    for key, value in get_vae_preset("wan2.1").diffusers_kwargs().items():
        assert defaults[key] == value, key


def test_wan21_builds_on_meta_with_its_parameter_count():
    vae = build_vae(get_vae_preset("wan2.1"), "meta")
    n = sum(p.numel() for p in vae.parameters())
    assert abs(n - WAN21_PARAMS) / WAN21_PARAMS < 0.01, n
    assert all(p.is_meta for p in vae.parameters())


def test_frame_arithmetic_and_validation():
    cfg = get_vae_preset("tiny")
    assert cfg.latent_frames(53) == 14 and cfg.video_frames(14) == 53
    assert cfg.video_frames(8, first=False) == 32
    with pytest.raises(ConfigError, match="not 1 \\+ a multiple of 4"):
        cfg.latent_frames(52)
    with pytest.raises(ConfigError, match="strides"):
        dataclasses.replace(cfg, temporal_stride=8)
    with pytest.raises(ConfigError, match="latents_mean"):
        dataclasses.replace(cfg, latents_mean=(0.0,))


@pytest.fixture
def saved_tiny(tmp_path):
    cfg = get_vae_preset("tiny")
    torch.manual_seed(0)
    vae = build_vae(cfg)
    vae.save_pretrained(tmp_path)
    return cfg, vae, tmp_path


def test_load_vae_dir_round_trip(saved_tiny):
    cfg, vae, d = saved_tiny
    loaded = load_vae_dir(cfg, d)
    theirs = loaded.state_dict()
    assert theirs.keys() == vae.state_dict().keys()
    assert all(torch.equal(v, theirs[k]) for k, v in vae.state_dict().items())
    assert not loaded.training


@pytest.mark.parametrize("name", [CONFIG_FILE, SINGLE_FILE])
def test_load_vae_dir_names_a_missing_file(saved_tiny, name):
    cfg, _, d = saved_tiny
    (d / name).unlink()
    with pytest.raises(CheckpointError, match=f"missing: \\['{name}'\\]"):
        load_vae_dir(cfg, d)


def _rewrite(d, edit):
    state = safetensors.torch.load_file(d / SINGLE_FILE)
    edit(state)
    safetensors.torch.save_file(state, d / SINGLE_FILE)


def test_load_vae_dir_names_wrong_keys(saved_tiny):
    cfg, _, d = saved_tiny
    _rewrite(d, lambda s: s.update({"decoder.conv_in.weight_renamed": s.pop("decoder.conv_in.weight")}))
    with pytest.raises(CheckpointError) as err:
        load_vae_dir(cfg, d)
    assert "1 missing keys, first: ['decoder.conv_in.weight']" in str(err.value)
    assert "1 unexpected keys, first: ['decoder.conv_in.weight_renamed']" in str(err.value)


def test_load_vae_dir_names_a_wrong_shape(saved_tiny):
    cfg, _, d = saved_tiny
    _rewrite(d, lambda s: s.update({"decoder.conv_in.bias": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"decoder.conv_in.bias: checkpoint \(3,\), model expects"):
        load_vae_dir(cfg, d)


def test_load_vae_dir_refuses_another_architecture(saved_tiny):
    cfg, _, d = saved_tiny
    with pytest.raises(CheckpointError, match="base_dim: file 8"):
        load_vae_dir(get_vae_preset("wan2.1"), d)
    saved = json.loads((d / CONFIG_FILE).read_text())
    assert saved["temperal_downsample"] == list(cfg.temperal_downsample)
