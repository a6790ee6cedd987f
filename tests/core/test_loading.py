"""Loading the DiT tensor by tensor: straight into the runtime dtype and device, a TP rank reading its slices only."""

from __future__ import annotations

import pytest
import torch

from liveact.config import get_preset
from liveact.model.dit import FP32_PARAMETERS
from liveact.model.loading import (
    CheckpointIndex,
    TensorSlice,
    build_model,
    load_checkpoint_dir,
    save_checkpoint_dir,
    save_state_dir,
)
from liveact.parallel.loading import load_dit_shard
from liveact.parallel.tp import LocalComm, shard_dit, shard_slices
from liveact.pipeline.engine import load_dit
from liveact.testing import fresh_model, tp_test_config
from liveact.weight_files import INDEX_FILE, CheckpointError, builtin_dir, dit_dir


def _randomized(config, seed: int = 5):
    """Random values in every parameter (biases, norms, compressors too), so every slice matters."""
    model = fresh_model(config, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def sharded_dir(tmp_path_factory):
    """tp_test_config's weights as bf16 shards of at most 40 kB, with the index (like the release's)."""
    model = _randomized(tp_test_config())
    d = tmp_path_factory.mktemp("dit")
    save_state_dir({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, d, max_shard_bytes=40_000)
    return d


def test_sharded_layout_round_trips(sharded_dir):
    index = CheckpointIndex.read(sharded_dir)
    assert (sharded_dir / INDEX_FILE).is_file() and len(set(index.files.values())) >= 4
    model = load_checkpoint_dir(build_model(tp_test_config(), device="meta"), sharded_dir)
    assert not any(p.is_meta for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # dtype=None: the model's own (fp32)


def test_runtime_dtype_load_equals_load_then_cast():
    """bf16 straight from the files == the old path (fp32 model, then to_runtime_dtype), bit for bit."""
    config = get_preset("tiny")
    root = builtin_dir("tiny")
    assert root is not None
    direct = load_dit(config, root, torch.device("cpu"), dtype=torch.bfloat16)
    old = load_checkpoint_dir(build_model(config, device="meta"), dit_dir(root)).to_runtime_dtype(torch.bfloat16)
    got, want = direct.state_dict(), old.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    kept = [k for k, v in got.items() if v.dtype == torch.float32]
    assert kept and all(any(k.startswith(f) or k.endswith(f) for f in FP32_PARAMETERS) for k in kept)


@pytest.mark.parametrize("tp", [2, 4])
def test_rank_slices_equal_sharding_the_loaded_model(sharded_dir, tp):
    config = tp_test_config()
    full = load_checkpoint_dir(build_model(config, device="meta"), sharded_dir, dtype=torch.bfloat16)
    for rank in range(tp):
        comm = LocalComm(rank, tp, lambda t: None)
        want = shard_dit(load_checkpoint_dir(build_model(config, device="meta"), sharded_dir), comm)
        want.to_runtime_dtype(torch.bfloat16)
        got = load_dit_shard(config, sharded_dir, torch.device("cpu"), torch.bfloat16, comm)
        g, w = got.state_dict(), want.state_dict()
        assert g.keys() == w.keys() == full.state_dict().keys()
        for k in w:
            assert g[k].dtype == w[k].dtype and torch.equal(g[k], w[k]), (rank, k)
        split = shard_slices(build_model(config, device="meta"), rank, tp)
        local = sum(t.numel() for t in g.values())
        assert local < sum(t.numel() for t in full.state_dict().values())
        assert split and all(g[k].numel() * tp == full.state_dict()[k].numel() for k in split)
        assert all(p.is_contiguous() and p.untyped_storage().nbytes() == p.numel() * p.element_size()
                   for p in got.parameters() if p.dtype == torch.bfloat16)  # fmt: skip  # owns, not a file view


def test_packed_kv_slice_reads_both_halves():
    piece = TensorSlice.of(0, torch.cat([torch.arange(2, 4), torch.arange(10, 12)]))
    assert piece.ranges == ((2, 4), (10, 12)) and piece.shape((16, 3)) == (4, 3)


def test_mis_shaped_checkpoint_is_refused_before_anything_loads(tmp_path):
    config = tp_test_config()
    state = _randomized(config).state_dict()
    key = "blocks.1.self_attn.o.weight"
    state[key] = state[key][:, :-1].contiguous()
    save_state_dir(state, tmp_path, max_shard_bytes=40_000)
    comm = LocalComm(0, 2, lambda t: None)
    for load in (lambda: load_dit(config, tmp_path, torch.device("cpu")),
                 lambda: load_dit_shard(config, tmp_path, torch.device("cpu"), torch.float32, comm)):  # fmt: skip
        with pytest.raises(CheckpointError, match=r"mis-shaped.*blocks\.1\.self_attn\.o\.weight"):
            load()


def test_save_checkpoint_dir_shards_and_single_file_load_the_same(tmp_path):
    model = _randomized(tp_test_config())
    a = load_checkpoint_dir(build_model(model.config, device="meta"), save_checkpoint_dir(model, tmp_path / "one"))
    b = load_checkpoint_dir(
        build_model(model.config, device="meta"), save_checkpoint_dir(model, tmp_path / "many", 30_000)
    )
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_safetensors_reader_matches_the_library(tmp_path):
    """Plain reads (no memory map) give what safetensors gives: every dtype, a scalar, row ranges."""
    from safetensors.torch import load_file, save_file

    from liveact.weight_files import SafetensorsFile

    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, 3, generator=g)
    tensors = {
        "bf16": base.to(torch.bfloat16), "f32": base, "f16": base.half(), "f64": base.double(),
        "fp8": base.to(torch.float8_e4m3fn), "i64": torch.arange(12).reshape(3, 4), "flag": base > 0,
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4),
    }  # fmt: skip
    path = tmp_path / "t.safetensors"
    save_file(tensors, path)
    want, f = load_file(path), SafetensorsFile(path)
    assert sorted(f.keys()) == sorted(want)
    for key, t in want.items():
        got = f.read(key)
        assert got.dtype == t.dtype and got.shape == t.shape
        assert torch.equal(got.reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)), key
    assert torch.equal(f.read("bf16", rows=(2, 5)), want["bf16"][2:5])
    piece = TensorSlice.of(1, slice(1, 4)).read(f, "f32")
    assert torch.equal(piece, want["f32"][:, 1:4]) and piece.is_contiguous()
    two = TensorSlice(0, ((0, 1), (4, 6))).read(f, "f16")
    assert torch.equal(two, torch.cat([want["f16"][0:1], want["f16"][4:6]]))
