"""Chunk-window encoding lines up with context-mode decoding: each later chunk's window starts at the
frame the decode's single-frame context latent stands for, and the decoded frames land where they belong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liveact.config import get_preset
from liveact.training.run import session_chunk_latents
from liveact.vae import StreamingDecoder, build_vae, chunk_windows, encode_chunk_windows, get_vae_preset, normalize

CFG = get_vae_preset("tiny")


def test_windows_of_a_session():
    assert chunk_windows(CFG, [6, 8, 8]) == [(0, 21, 6), (12, 53, 8), (44, 85, 8)]  # 41-frame later windows
    for start, end, keep in chunk_windows(CFG, [6, 8, 8, 8])[1:]:
        s = (start // CFG.temporal_stride) + CFG.decode_context_latents  # the chunk's first global latent
        # the decode drops the context's frames; what is left starts at the global first frame of latent s
        assert start + CFG.video_frames(CFG.decode_context_latents) == CFG.video_frames(s) and end - start == 41
        assert keep == 8


def test_session_chunks_fit_the_clip():
    config = get_preset("tiny")
    assert session_chunk_latents(config, 150) == [6, 8, 8, 8, 8]  # 149 frames
    assert session_chunk_latents(config, 148) == [6, 8, 8, 8]


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return build_vae(CFG).eval()


def test_each_chunk_is_its_own_fresh_window(vae):
    video = torch.rand(1, 3, 60, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    latents = encode_chunk_windows(vae, CFG, video, [6, 8])
    assert latents.shape[2] == 14
    with torch.no_grad():
        first = vae.encode(video[:, :, :21]).latent_dist.mode()
        second = vae.encode(video[:, :, 12:53]).latent_dist.mode()[:, :, -8:]
    torch.testing.assert_close(latents[:, :, :6], normalize(first, CFG))
    torch.testing.assert_close(latents[:, :, 6:], normalize(second, CFG))
    frames, context = StreamingDecoder(vae, CFG).decode_with_context(latents[:, :, :6], latents[:, :, 6:])
    assert frames.shape[2] == 32 and context.shape[2] == CFG.decode_context_latents


def test_too_short_a_video_is_refused(vae):
    with pytest.raises(ValueError, match="cannot cover chunks"):
        encode_chunk_windows(vae, CFG, torch.zeros(1, 3, 40, 32, 32), [6, 8])


def test_chunk_pairs_train_exactly_what_a_session_decodes(vae):
    """vae_context's reconstruction of chunk k (posterior means) is the session's decode of chunk k."""
    from liveact.training.vae_pairs import chunk_pair_reconstruction, chunk_pairs

    layout = [6, 8, 8]
    pairs = chunk_pairs(CFG, layout)
    assert [(p.prev, p.cur, p.first) for p in pairs] == [((0, 21), (12, 53), True), ((0, 41), (32, 73), False)]
    video = torch.rand(1, 3, 85, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    latents = encode_chunk_windows(vae, CFG, video, layout)
    decoder = StreamingDecoder(vae, CFG)
    with torch.no_grad():
        chunk0, context = decoder.decode_with_context(None, latents[:, :, :6])
        chunk1, context = decoder.decode_with_context(context, latents[:, :, 6:14])
        chunk2, _ = decoder.decode_with_context(context, latents[:, :, 14:22])
        first = chunk_pair_reconstruction(vae, CFG, video[:, :, :53], pairs[0], None)
        second = chunk_pair_reconstruction(vae, CFG, video[:, :, 12:85], pairs[1], None)
    torch.testing.assert_close(first.recon[0], chunk1, rtol=0, atol=1e-5)
    torch.testing.assert_close(first.recon[1], chunk0, rtol=0, atol=1e-5)  # chunk 0's own decode, also trained
    torch.testing.assert_close(second.recon[0], chunk2, rtol=0, atol=1e-5)
    assert len(second.recon) == 1
    torch.testing.assert_close(first.target[0], video[:, :, 21:53], rtol=0, atol=0)  # chunk 1's frames
    torch.testing.assert_close(second.target[0], video[:, :, 53:85], rtol=0, atol=0)


def test_mouth_weight_counts_errors_in_the_mouth_box_more():
    from liveact.training.vae_stage import weighted_l1

    mouth = torch.zeros(8, 8)
    mouth[5:7, 2:6] = 1.0  # 8 of 64 pixels
    weight = (1.0 + 4.0 * mouth).expand(2, 1, 1, 8, 8)  # (B, 1, 1, H, W)
    in_mouth, elsewhere = torch.zeros(2, 3, 5, 8, 8), torch.zeros(2, 3, 5, 8, 8)  # |recon - target|
    in_mouth[..., 5, 3] = 1.0
    elsewhere[..., 0, 0] = 1.0
    assert weighted_l1(in_mouth, None) == weighted_l1(elsewhere, None)  # unweighted: the same
    assert weighted_l1(in_mouth, weight) == pytest.approx(5 * float(weighted_l1(elsewhere, weight)))
    uniform = torch.full_like(in_mouth, 0.3)
    assert weighted_l1(uniform, weight) == pytest.approx(0.3)  # normalised: a uniform error keeps its size


@pytest.mark.integration
def test_mouth_pixels_mark_the_rendered_mouth_box():
    from liveact.data.clip import synth_clip
    from liveact.data.measure import locate_mouth, mouth_pixels

    clip = synth_clip(3, seconds=1.0)
    mask = mouth_pixels(clip.reference)  # (H, W)
    y0, y1, x0, x1 = locate_mouth(clip.reference).box
    assert mask.sum() == (y1 - y0) * (x1 - x0) and mask[y0:y1, x0:x1].all()
    h, w = mask.shape
    assert 0.5 * h < 0.5 * (y0 + y1) < 0.9 * h and abs(0.5 * (x0 + x1) - 0.5 * w) < 0.1 * w  # below centre, centred
    assert 0.01 < mask.mean() < 0.1  # a small part of the frame
    assert mouth_pixels(np.zeros((64, 64, 3), np.uint8)).sum() == 0  # no face: no emphasis


@pytest.mark.integration
def test_mouth_scores_see_a_mouth_blurred_shut():
    from liveact.data.clip import synth_clip
    from liveact.training.vae_report import mouth_scores

    clip = synth_clip(5, seconds=3.0)
    original = clip.frames[None]  # (1, T, H, W, 3)
    same = mouth_scores(original, original, [clip.reference])
    assert same == {"mouth_box_l1": 0.0, "mouth_opening_r": 1.0, "mouth_opening_ratio": 1.0}
    shut = np.repeat(clip.reference[None, None], original.shape[1], axis=1)  # the closed-mouth reference throughout
    scores = mouth_scores(original, shut, [clip.reference])
    assert scores["mouth_box_l1"] > 0.02 and scores["mouth_opening_r"] == 0.0 and scores["mouth_opening_ratio"] < 0.2
