"""Streaming VAE decode: chunked == full decode, state export/import mid-stream, context decode."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

from liveact.vae import StreamingDecoder, build_vae, denormalize, get_vae_preset
from liveact.vae.streaming import REPEAT, DecoderState

CHUNKS = (6, 8, 8)  # LiveAct's sampler: 6 latents for chunk 0, 8 for every later chunk
LATENT = 2  # 2x2 latent grid -> 16x16 pixels keeps the tiny VAE at well under a second per decode
# fp32 on CPU: chunks of 6/8/8 measure 0.0 (bitwise). A call of only 1-2 latents on this 2x2 grid
# measures ~4e-6: oneDNN picks another kernel for post_quant_conv's tiny input (not a cache effect;
# a cache from another prefix moves frames by ~1, see below).
EXACT = 1e-5


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    cfg = get_vae_preset("tiny")
    vae = build_vae(cfg)
    z = torch.randn(1, cfg.z_dim, sum(CHUNKS), LATENT, LATENT, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = vae.decode(denormalize(z, cfg)).sample  # (1, 3, 85, 16, 16)
    return cfg, StreamingDecoder(vae, cfg), z, full


def _stream(decoder, z, sizes, state=None):
    frames, start = [], 0
    for n in sizes:
        out, state = decoder.decode(z[:, :, start : start + n], state)
        frames.append(out)
        start += n
    return frames, state


def _max_diff(a, b):
    return (a - b).abs().max().item()


def test_chunked_decode_equals_full_decode(setup):
    cfg, decoder, z, full = setup
    frames, state = _stream(decoder, z, CHUNKS)
    assert [f.shape[2] for f in frames] == [1 + 5 * cfg.temporal_stride, 32, 32]
    assert full.shape == (1, 3, 85, LATENT * cfg.spatial_stride, LATENT * cfg.spatial_stride)
    assert _max_diff(torch.cat(frames, dim=2), full) <= EXACT
    assert state.first_decoded and state.nbytes() > 0
    assert full.min() >= -1 and full.max() <= 1
    # the check is sensitive: chunk 1 decoded after another chunk 0 is far off
    _, other = decoder.decode(torch.zeros_like(z[:, :, : CHUNKS[0]]))
    wrong, _ = decoder.decode(z[:, :, CHUNKS[0] : CHUNKS[0] + CHUNKS[1]], other)
    assert _max_diff(wrong, frames[1]) > 1e3 * EXACT


def test_decode_does_not_modify_the_given_state(setup):
    _, decoder, z, _ = setup
    _, state = _stream(decoder, z, (1,))
    before = state.export()
    decoder.decode(z[:, :, 1:3], state)
    after = state.export()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("cut", [1, CHUNKS[0]])
def test_state_through_safetensors_mid_stream_continues_exactly(setup, cut):
    _, decoder, z, full = setup
    head, state = _stream(decoder, z, (cut,))
    exported = state.export()
    if cut == 1:  # after latent 0 the upsample3d slots hold diffusers' sentinel, the last slot nothing
        assert any(k.endswith(".rep") for k in exported)
        assert REPEAT in state.cache and None in state.cache
    restored = DecoderState.load(safetensors.torch.load(safetensors.torch.save(exported)))
    assert [type(e) for e in restored.cache] == [type(e) for e in state.cache]
    rest = z.shape[2] - cut
    tail, _ = _stream(decoder, z[:, :, cut:], (rest,), restored)
    assert _max_diff(torch.cat(head + tail, dim=2), full) <= EXACT


def test_state_load_refuses_unknown_and_out_of_range_names(setup):
    _, decoder, _, _ = setup
    exported = decoder.initial_state().export()
    with pytest.raises(ValueError, match="unexpected decoder state tensor 'bogus'"):
        DecoderState.load({**exported, "bogus": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"cache\.99"):
        DecoderState.load({**exported, "cache.99": torch.zeros(1)})
    with pytest.raises(ValueError, match="missing"):
        DecoderState.load({})


def test_decode_refuses_a_state_of_another_vae(setup):
    _, decoder, z, _ = setup
    with pytest.raises(ValueError, match="slots"):
        decoder.decode(z[:, :, :1], DecoderState.fresh(decoder.num_slots + 1))
    with pytest.raises(ValueError, match=r"\(B, 16, T, h, w\)"):
        decoder.decode(z[:, :4, :1])


def test_decode_with_context_matches_the_public_recipe(setup):
    cfg, decoder, z, full = setup
    n_ctx, first, later = cfg.decode_context_latents, CHUNKS[0], CHUNKS[1]
    frames0, context = decoder.decode_with_context(None, z[:, :, :first])
    assert frames0.shape[2] == 1 + (first - 1) * cfg.temporal_stride
    assert _max_diff(frames0, full[:, :, : frames0.shape[2]]) <= EXACT  # a stream's start is a plain decode
    assert torch.equal(context, z[:, :, first - n_ctx : first])

    frames1, context = decoder.decode_with_context(context, z[:, :, first : first + later])
    dropped = 1 + (n_ctx - 1) * cfg.temporal_stride  # 9 frames belong to the 3 context latents
    assert frames1.shape == (1, 3, later * cfg.temporal_stride, *full.shape[-2:])
    with torch.no_grad():
        window = decoder.vae.decode(denormalize(z[:, :, first - n_ctx : first + later], cfg)).sample  # 11 latents
    assert window.shape[2] == dropped + frames1.shape[2]
    assert _max_diff(frames1, window[:, :, dropped:]) <= EXACT
    assert torch.equal(context, z[:, :, first + later - n_ctx : first + later])
