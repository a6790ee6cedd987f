"""A sampler exported after chunk k and restored in a fresh sampler continues bit for bit."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from liveact.sampling.noise import SeededNoise
from liveact.sampling.state import SamplerStateError, export_sampler, restore_sampler
from liveact.sampling.stream import StreamingSampler
from liveact.testing import fresh_model, micro_config, synthetic_session

TOTAL = 6


def _sampler(cfg, seed=7):
    model = fresh_model(cfg)
    cond, feats = synthetic_session(model, chunks=TOTAL)
    return StreamingSampler(model, cond, SeededNoise(seed)), feats


def _with_cfg(cfg):
    return dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, audio_cfg=2.0))


@pytest.mark.parametrize("variant", ["plain", "fp8", "audio_cfg"])
@pytest.mark.parametrize("split_at", [1, 3])
def test_restored_sampler_continues_bitwise(variant, split_at):
    cfg = micro_config(fp8=True) if variant == "fp8" else micro_config()
    if variant == "audio_cfg":
        cfg = _with_cfg(cfg)
    ref, feats = _sampler(cfg)
    expected = [ref.next_chunk(feats).latent for _ in range(TOTAL)]

    first, _ = _sampler(cfg)
    for _ in range(split_at):
        first.next_chunk(feats)
    state = export_sampler(first)
    assert all(t.device.type == "cpu" for t in state.values())
    assert ("cond.null_audio" in state) == (variant == "audio_cfg")
    first.next_chunk(feats)  # the exporter goes on: the exported copies must not change
    again = restore_sampler(first.model, state, torch.device("cpu"))
    assert again.chunk_index == split_at
    rest = [again.next_chunk(feats).latent for _ in range(TOTAL - split_at)]
    for i, got in enumerate(rest):
        assert torch.equal(got, expected[split_at + i]), f"chunk {split_at + i} differs after restore"


def test_restore_refuses_foreign_state():
    cfg = micro_config()
    sampler, feats = _sampler(cfg)
    sampler.next_chunk(feats)
    state = export_sampler(sampler)
    with pytest.raises(SamplerStateError, match=r"no 'noise\.state'"):
        restore_sampler(sampler.model, {k: v for k, v in state.items() if k != "noise.state"}, torch.device("cpu"))
    with pytest.raises(SamplerStateError, match="unknown tensors"):
        restore_sampler(sampler.model, {**state, "surprise": torch.zeros(1)}, torch.device("cpu"))
    bigger = fresh_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dim=64, ffn_dim=128)))
    with pytest.raises(SamplerStateError, match="does not fit"):
        restore_sampler(bigger, state, torch.device("cpu"))


@pytest.mark.parametrize("variant", ["plain", "fp8"])
def test_capture_fills_the_same_buffers_with_export_samplers_bytes_and_restores_bitwise(variant):
    """The checkpoint's copy in the DiT thread: export_sampler's names and bytes, into host buffers allocated once
    per session, which the next chunks do not touch; a sampler restored from them continues bit for bit."""
    from liveact.sampling.capture import StateCapture

    cfg = micro_config(fp8=variant == "fp8")
    ref, feats = _sampler(cfg)
    expected = [ref.next_chunk(feats).latent for _ in range(TOTAL)]
    sampler, _ = _sampler(cfg)
    capture = StateCapture()
    pointers = None
    for k in range(3):
        sampler.next_chunk(feats)
        captured = capture.capture(sampler)
        captured.wait()
        exported = export_sampler(sampler)
        assert sorted(captured.tensors) == sorted(exported) and captured.stall_s > 0
        for name, t in exported.items():
            assert torch.equal(captured.tensors[name].view(torch.uint8), t.view(torch.uint8)), (k, name)
        now = {n: t.data_ptr() for n, t in captured.tensors.items()}
        assert pointers is None or now == pointers  # reused: no allocation after the first capture
        pointers = now
    assert capture.nbytes == sum(t.nbytes for t in exported.values())
    held = {n: t.clone() for n, t in captured.tensors.items()}
    sampler.next_chunk(feats)  # the session goes on; the buffers keep the captured state
    sampler.next_chunk(feats)  # this chunk compacts: the persistent slots change, the buffers do not
    assert all(torch.equal(captured.tensors[n].view(torch.uint8), t.view(torch.uint8)) for n, t in held.items())
    again = restore_sampler(sampler.model, held, torch.device("cpu"))
    rest = [again.next_chunk(feats).latent for _ in range(TOTAL - 3)]
    assert all(torch.equal(got, expected[3 + i]) for i, got in enumerate(rest))


def test_capture_copies_the_sink_slots_and_conditioning_once():
    """From the second capture on, the tensors chunk 0 fixed keep their first copy (white box: a planted byte in
    such a buffer survives the next capture, one in a changing tensor's buffer does not)."""
    from liveact.sampling.capture import StateCapture
    from liveact.state.schema import fixed_after_first_chunk

    sampler, feats = _sampler(micro_config())
    capture = StateCapture()
    sampler.next_chunk(feats)
    first = capture.capture(sampler).tensors
    fixed = [n for n in first if fixed_after_first_chunk(n)]
    assert any(".sink." in n for n in fixed) and "cond.y" in fixed
    planted_fixed, planted_changing = fixed[0], "memory.step0.layer0.k"
    first[planted_fixed].view(-1)[0] += 1
    first[planted_changing].view(-1)[0] += 1
    sampler.next_chunk(feats)
    second = capture.capture(sampler).tensors
    exported = export_sampler(sampler)
    assert not torch.equal(second[planted_fixed], exported[planted_fixed])  # not copied again
    assert torch.equal(second[planted_changing], exported[planted_changing])


@pytest.mark.parametrize("variant", ["plain", "fp8"])
def test_a_sampler_restored_from_checkpoint_streams_continues_bitwise(variant):
    """What a resume gets from the store: the capture's buffers as streams, read back as views of one buffer per
    stream (offsets inside it; the RNG state too), restore a sampler that continues bit for bit."""
    from liveact.sampling.capture import StateCapture
    from liveact.state.parts import cut
    from liveact.state.streams import unpack

    cfg = micro_config(fp8=variant == "fp8")
    ref, feats = _sampler(cfg)
    expected = [ref.next_chunk(feats).latent for _ in range(TOTAL)]
    first, _ = _sampler(cfg)
    for _ in range(2):
        first.next_chunk(feats)
    captured = StateCapture().capture(first).tensors
    state = {}
    for stream in cut(captured, 4096):
        data = torch.frombuffer(bytearray(b"".join(stream.views)), dtype=torch.uint8)
        state |= unpack(stream.ref, data)
    assert any(t.storage_offset() for t in state.values())  # views inside their stream's buffer
    again = restore_sampler(first.model, state, torch.device("cpu"))
    rest = [again.next_chunk(feats).latent for _ in range(TOTAL - 2)]
    assert all(torch.equal(got, want) for got, want in zip(rest, expected[2:], strict=True))


@pytest.mark.parametrize("variant", ["plain", "fp8"])
def test_capture_buffers_prepared_at_the_start_are_the_ones_the_first_checkpoint_fills(variant):
    """``StateCapture.for_sampler`` allocates from the specs before chunk 0 (no compaction, nothing changes); the
    first capture after chunk 2 copies into those very buffers (no allocation on the DiT thread), exactly
    ``export_sampler``'s bytes."""
    from liveact.sampling.capture import StateCapture
    from liveact.sampling.state import sampler_specs, sampler_views

    sampler, feats = _sampler(micro_config(fp8=variant == "fp8"))
    specs, device = sampler_specs(sampler)
    capture = StateCapture.for_sampler(sampler)
    for _ in range(2):
        sampler.next_chunk(feats)
    views = sampler_views(sampler)
    assert {n: (v.shape, v.dtype) for n, v in views.items()} == specs and device.type == "cpu"
    capture._preparing.join()
    prepared = {n: t.data_ptr() for n, t in capture.buffers.items()}
    captured = capture.capture(sampler).tensors
    assert {n: t.data_ptr() for n, t in captured.items()} == prepared  # filled in place
    exported = export_sampler(sampler)
    assert all(torch.equal(captured[n].view(torch.uint8), exported[n].view(torch.uint8)) for n in exported)
