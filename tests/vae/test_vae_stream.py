"""Streamed VAE training reconstruction: a warm-up without gradients then a window with them computes
what one full causal encode + decode of the whole window gives for those frames."""

from __future__ import annotations

import pytest
import torch

from liveact.training.vae_stream import streamed_reconstruction
from liveact.vae import build_vae, get_vae_preset


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return build_vae(get_vae_preset("tiny")).eval()


@pytest.mark.parametrize("warm", [0, 1, 3])
def test_streamed_tail_equals_full_reconstruction(vae, warm):
    x = torch.rand(1, 3, 21, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1  # (B, 3, T, H, W)
    with torch.no_grad():
        full = vae.decode(vae.encode(x).latent_dist.mode()).sample
        mean = vae.encode(x).latent_dist.mean
    out = streamed_reconstruction(vae, x, warm, generator=None)
    split = 1 + 4 * (warm - 1) if warm else 0
    assert out.recon.shape == out.target.shape == (1, 3, 21 - split, 32, 32)
    torch.testing.assert_close(out.target, x[:, :, split:])
    torch.testing.assert_close(out.recon, full[:, :, split:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.mean, mean[:, :, warm:], atol=1e-5, rtol=1e-5)


def test_gradients_reach_only_through_the_window(vae):
    x = torch.rand(1, 3, 13, 32, 32) * 2 - 1
    out = streamed_reconstruction(vae, x, 2, generator=torch.Generator().manual_seed(0))
    (out.recon - out.target).abs().mean().backward()
    grads = [p.grad for p in vae.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    vae.zero_grad(set_to_none=True)


@pytest.mark.parametrize(("frames", "warm"), [(20, 1), (13, 4), (13, -1)])
def test_bad_windows_are_refused(vae, frames, warm):
    with pytest.raises(ValueError, match="cannot warm up"):
        streamed_reconstruction(vae, torch.zeros(1, 3, frames, 32, 32), warm, None)


def test_vae_stage_refuses_clips_shorter_than_warm_up_and_window(tmp_path):
    import numpy as np

    from liveact.training.config import TrainConfig, VaeStageConfig
    from liveact.training.vae_stage import train_vae

    st = VaeStageConfig(steps=1, batch=1, clip_frames=13, warmup_latents=5)  # longest window: 13 + 16 frames
    clips = [np.zeros((28, 32, 32, 3), np.uint8)]
    with pytest.raises(ValueError, match="1 clips are shorter than the 29 frames"):
        train_vae("vae_tune", TrainConfig(data="d"), st, get_vae_preset("tiny"), clips, tmp_path, tmp_path, None, False)
