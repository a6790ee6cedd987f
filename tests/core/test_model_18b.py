"""The liveact-18b preset: the published key set and shapes on the meta device; strict loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from liveact.config import ConfigError, get_preset
from liveact.model.loading import build_model, load_checkpoint_dir
from liveact.weight_files import INDEX_FILE, CheckpointError

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "liveact-18b.json"
PUBLISHED_PARAMS = 18.88e9


@pytest.fixture(scope="module")
def meta_model():
    return build_model(get_preset("liveact-18b"), device="meta")


def test_key_set_and_shapes_are_pinned(meta_model):
    pinned = {k: tuple(v) for k, v in json.loads(MANIFEST.read_text()).items()}
    ours = {k: tuple(v.shape) for k, v in meta_model.state_dict().items()}
    assert sorted(set(pinned) - set(ours)) == []
    assert sorted(set(ours) - set(pinned)) == []
    assert {k: ours[k] for k in pinned if ours[k] != pinned[k]} == {}


def test_parameter_count_within_one_percent(meta_model):
    n = meta_model.num_parameters()
    assert abs(n - PUBLISHED_PARAMS) / PUBLISHED_PARAMS < 0.01, n


def test_meta_build_allocates_nothing(meta_model):
    assert all(p.is_meta for p in meta_model.parameters())


def test_fp32_islands_survive_bf16_cast():
    from liveact.config import get_preset as gp

    model = build_model(gp("tiny")).to_runtime_dtype(torch.bfloat16)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert dtypes["time_projection.1.weight"] == torch.float32
    assert dtypes["blocks.0.modulation"] == torch.float32
    assert dtypes["head.modulation"] == torch.float32
    assert dtypes["blocks.0.self_attn.q.weight"] == torch.bfloat16


def test_unknown_preset_names_choices():
    with pytest.raises(ConfigError, match=r"unknown preset 'liveact-7b'.*liveact-18b.*tiny"):
        get_preset("liveact-7b")


def _write_sharded(model, directory: Path, shards: int = 3) -> dict[str, str]:
    state = model.state_dict()
    keys = sorted(state)
    weight_map = {}
    for i in range(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i::shards]}
        save_file(part, str(directory / name))
        weight_map |= {k: name for k in part}
    (directory / INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return weight_map


def test_sharded_directory_loads_exactly(tmp_path):
    cfg = get_preset("tiny")
    src = build_model(cfg).init_weights(3)
    _write_sharded(src, tmp_path)
    dst = load_checkpoint_dir(build_model(cfg, device="meta"), tmp_path)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_missing_shard_is_named(tmp_path):
    cfg = get_preset("tiny")
    _write_sharded(build_model(cfg), tmp_path)
    (tmp_path / "diffusion_pytorch_model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError, match="00002-of-00003"):
        load_checkpoint_dir(build_model(cfg), tmp_path)


def test_unexpected_and_misshaped_keys_are_named_and_nothing_loads(tmp_path):
    cfg = get_preset("tiny")
    state = build_model(cfg).init_weights(1).state_dict()
    state["blocks.0.self_attn.q.weight"] = torch.zeros(7, 7)
    state["blocks.9.ffn.0.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    target = build_model(cfg).init_weights(2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_dir(target, tmp_path)
    assert "blocks.9.ffn.0.weight" in str(e.value)
    assert "blocks.0.self_attn.q.weight: checkpoint (7, 7), model expects (128, 128)" in str(e.value)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_empty_directory_says_what_is_missing(tmp_path):
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model\.safetensors"):
        load_checkpoint_dir(build_model(get_preset("tiny")), tmp_path)
