"""Numerical parity with the public implementation (golden fixture, fp32 on CPU)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from liveact.config import ConfigError
from liveact.model.loading import build_model, load_weights
from liveact.parity import Fixture, config_from_fixture, run_all
from liveact.weight_files import CheckpointError


@pytest.fixture(scope="module")
def report(golden_dir):
    return run_all(golden_dir)


def test_every_fixture_tensor_is_compared(report):
    assert report["unchecked_tensors"] == []


def test_audio_windows_exact(report):
    c = report["checks"]["audio_windows"]
    assert c["compared"] == 4 * report["chunks"]
    assert c["max_abs"] == 0.0


@pytest.mark.parametrize("name", ["timesteps"])
def test_timesteps_exact(report, name):
    assert report["checks"][name]["max_abs"] == 0.0


@pytest.mark.parametrize("name", ["audio_tokens", "teacher_forced_v", "free_v", "free_x", "free_x_final", "cache"])
def test_within_tolerance(report, name):
    c = report["checks"][name]
    assert c["compared"] > 0
    assert c["max_abs"] <= c["tolerance"] == 1e-4, c


def test_every_chunk_and_step_compared(report):
    chunks = report["chunks"]
    assert report["checks"]["teacher_forced_v"]["compared"] == 3 * chunks
    assert report["checks"]["free_x_final"]["compared"] == chunks
    assert sorted(int(k) for k in report["checks"]["free_v"]["per_chunk_max_abs"]) == list(range(chunks))
    # snapshots after chunks 2, 3, 4: 3 steps x 2 layers x (k, v)
    assert report["checks"]["cache"]["compared"] == 3 * 3 * 2 * 2


def test_free_running_error_does_not_grow(report):
    per_chunk = report["checks"]["free_x_final"]["per_chunk_max_abs"]
    assert max(per_chunk.values()) <= 1e-4


def test_quirk_v_with_v_compressor_is_detected(golden_dir):
    """Sanity of the comparison: the 'fixed' V compressor must fail parity from chunk 2 on."""
    import dataclasses

    from liveact.parity import run_free

    fx = Fixture.load(golden_dir)
    fx.config = dataclasses.replace(fx.config, memory=dataclasses.replace(fx.config.memory, compress_v_with_k=False))
    checks = run_free(fx, fx.model())
    per_chunk = checks["free_v"].per_chunk_max_abs
    assert per_chunk[0] <= 1e-4 and per_chunk[1] <= 1e-4
    assert per_chunk[2] > 1e-2


def test_strict_load_names_mismatches(golden_dir):
    fx = Fixture.load(golden_dir)
    weights = fx.weights()
    model = build_model(fx.config)
    bad = dict(weights)
    bad.pop("blocks.1.self_attn.memory_proj_v.weight")
    bad["blocks.0.extra.weight"] = torch.zeros(3)
    bad["head.head.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError) as e:
        load_weights(model, bad)
    msg = str(e.value)
    assert "blocks.1.self_attn.memory_proj_v.weight" in msg
    assert "blocks.0.extra.weight" in msg
    assert "head.head.weight: checkpoint (3, 3), model expects (64, 128)" in msg


def test_fixture_config_it_cannot_express_is_refused(golden_dir):
    meta = json.loads((golden_dir / "liveact-parity-small.json").read_text())
    cfg = json.loads(json.dumps(meta["config"]))
    cfg["model"]["sliding_window"] = 4
    with pytest.raises(ConfigError, match="sliding_window"):
        config_from_fixture(cfg)
    cfg = json.loads(json.dumps(meta["config"]))
    cfg["model"]["head_dim"] = 32
    with pytest.raises(ConfigError, match="head_dim"):
        config_from_fixture(cfg)
    cfg = json.loads(json.dumps(meta["config"]))
    cfg["session"]["cache_slots"] = 16
    with pytest.raises(ConfigError, match="cache_slots"):
        config_from_fixture(cfg)


def test_fixture_with_wrong_keys_fails_not_skips(golden_dir, tmp_path):
    """A fixture whose weight keys do not match: a clear error, never a partial run."""
    shutil.copy(golden_dir / "liveact-parity-small.json", tmp_path / "liveact-parity-small.json")
    tensors = load_file(str(golden_dir / "liveact-parity-small.safetensors"))
    tensors["weights/blocks.0.ffn.0.renamed"] = tensors.pop("weights/blocks.0.ffn.0.weight")
    save_file(tensors, str(tmp_path / "liveact-parity-small.safetensors"))
    with pytest.raises(CheckpointError, match=r"blocks\.0\.ffn\.0\.weight"):
        run_all(tmp_path)
