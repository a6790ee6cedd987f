"""liveact.state.streams: which tensors a checkpoint stores as one stream, read in place, and back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liveact.sampling.capture import StateCapture
from liveact.state import codec
from liveact.state.parts import cut
from liveact.state.schema import SchemaError, StreamRef, layout_group
from liveact.state.streams import ALIGN, layout, streams, unpack

KIB = 1024


def sampler_like(seed: int = 0, layers: int = 3) -> dict[str, torch.Tensor]:
    """Tensors named as a sampler's state (``liveact.sampling.state``), as live views of bigger caches."""
    g = torch.Generator().manual_seed(seed)
    out = {"cond.y": torch.randn(5, 7, generator=g), "noise.state": torch.randint(0, 255, (13,), dtype=torch.uint8),
           "memory.chunks_written": torch.tensor(3)}  # fmt: skip
    for i in range(layers):
        cache = torch.randn(2, 9, 4, generator=g).to(torch.bfloat16)  # (k|v, slots, dim): sink slots 0-2
        out[f"memory.step0.layer{i}.sink.k"] = cache[0, :3]
        out[f"memory.step0.layer{i}.k"] = cache[0, 3:]
        out[f"memory.step0.layer{i}.v_scale"] = torch.rand(6, generator=g)
    return out


def by_first_name(found) -> dict[str, list[str]]:
    return {s.tensors[0].name: [t.name for t in s.tensors] for s in found}


def test_layout_aligns_every_tensor_and_keeps_them_in_order():
    offsets, total = layout([3, 64, 1, 0, 130])
    assert offsets == [0, 64, 128, 192, 192] and total == 322
    assert all(at % ALIGN == 0 for at in offsets)


def test_a_capture_keeps_each_layout_group_in_one_buffer_which_is_one_stream_read_in_place():
    state = sampler_like()
    captured = StateCapture().capture_views(state).tensors
    found = streams(captured)
    groups = {layout_group(n) for n in state}
    assert len(found) == len(groups) == 3  # cond, sink, state
    for s in found:
        assert len({layout_group(t.name) for t in s.tensors}) == 1
        first = captured[s.tensors[0].name]
        assert _address(s.data) == first.data_ptr()  # the buffer itself: no copy
        assert all(t.offset % ALIGN == 0 for t in s.tensors)
    whole = sum(len(s.data) for s in found)
    assert whole < sum(t.nbytes for t in state.values()) + ALIGN * len(state)  # padding only
    back = {}
    for s in found:
        back |= unpack(_ref(s), torch.frombuffer(bytearray(s.data), dtype=torch.uint8))
    assert sorted(back) == sorted(state)
    for name, t in state.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape and torch.equal(back[name], t), name


def test_tensors_apart_or_overlapping_are_streams_of_their_own_and_a_strided_one_is_copied():
    block = torch.arange(1024, dtype=torch.uint8)
    tensors = {
        "a": block[0:100],
        "b": block[128:200],  # 28 bytes after a: padding, same stream
        "c": block[400:500],  # 200 bytes after b: a stream of its own
        "d": block[450:460],  # inside c: overlapping, its own
        "e": torch.arange(12.0).reshape(3, 4).t(),  # not contiguous: its raw bytes, copied
        "f": torch.zeros(0),
    }
    found = by_first_name(streams(tensors))
    assert found == {"a": ["a", "b"], "c": ["c"], "d": ["d"], "e": ["e"], "f": ["f"]}
    ab = next(s for s in streams(tensors) if s.tensors[0].name == "a")
    assert len(ab.data) == 200 and [t.offset for t in ab.tensors] == [0, 128]
    e = next(s for s in streams(tensors) if s.tensors[0].name == "e")
    assert bytes(e.data) == tensors["e"].contiguous().numpy().tobytes()


def test_unsupported_tensors_are_refused_with_their_name():
    with pytest.raises(codec.CodecError, match="'x'"):
        streams({"x": torch.zeros(2, dtype=torch.complex128)})
    with pytest.raises(codec.CodecError, match="'y' is a list"):
        streams({"y": [1, 2]})


def test_a_stream_table_entry_is_checked_before_anything_is_read():
    good = cut({"a": torch.zeros(4), "b": torch.ones(2, dtype=torch.int64)}, 4 * KIB)[0].ref.to_json()
    assert StreamRef.from_json(good).tensors[0].name == "a"
    bad = [
        ({**good, "tensors": [{**good["tensors"][0], "offset": 2}]}, "multiple of its element size"),
        ({**good, "tensors": [{**good["tensors"][0], "dtype": "float128"}]}, "known dtype"),
        ({**good, "tensors": [{**good["tensors"][0], "offset": 64}]}, "after its"),
        ({**good, "parts": None}, "part list"),
    ]
    for obj, message in bad:
        with pytest.raises(SchemaError, match=message):
            StreamRef.from_json(obj)
    block = torch.arange(128, dtype=torch.uint8)
    two = cut({"a": block[:16], "b": block[64:]}, KIB)
    entry = two[0].ref.to_json()
    assert [t["offset"] for t in entry["tensors"]] == [0, 64]
    entry["tensors"][1]["offset"] = 8  # inside a
    with pytest.raises(SchemaError, match="overlaps"):
        StreamRef.from_json(entry)


def _address(view: memoryview) -> int:
    return np.frombuffer(view, dtype=np.uint8).ctypes.data


def _ref(s) -> StreamRef:
    return StreamRef(s.tensors, ())
