"""The session conditioning ``y``: shapes, the Wan I2V mask, the normalised image latent."""

from __future__ import annotations

import torch

from liveact.config import get_preset
from liveact.sampling.chunking import window_video_frames
from liveact.vae import build_vae, condition_mask, denormalize, encode_condition, get_vae_preset, normalize

PIXELS = 16  # 16x16 image -> 2x2 latent grid


def test_encode_condition_shapes_mask_and_latent():
    cfg = get_vae_preset("tiny")
    torch.manual_seed(0)
    vae = build_vae(cfg)
    frames = window_video_frames(get_preset("tiny"))  # 53
    image = torch.rand(2, 3, PIXELS, PIXELS, generator=torch.Generator().manual_seed(1)) * 2 - 1
    y = encode_condition(vae, cfg, image, frames)
    n = cfg.latent_frames(frames)
    grid = PIXELS // cfg.spatial_stride
    assert y.shape == (2, cfg.temporal_stride + cfg.z_dim, n, grid, grid)
    assert n == get_preset("tiny").memory.window_latent_frames
    mask, latent = y[:, : cfg.temporal_stride], y[:, cfg.temporal_stride :]
    assert torch.all(mask[:, :, 0] == 1) and torch.all(mask[:, :, 1:] == 0)

    video = torch.cat([image.unsqueeze(2), torch.zeros(2, 3, frames - 1, PIXELS, PIXELS)], dim=2)
    with torch.no_grad():
        mu = vae.encode(video).latent_dist.mode()
    assert torch.equal(latent, normalize(mu, cfg))


def test_condition_mask_is_wans():
    cfg = get_vae_preset("tiny")
    n, h, w = 3, 2, 2
    msk = torch.ones(1, cfg.video_frames(n), h, w)  # Wan I2V, written out as in its pipeline
    msk[:, 1:] = 0
    msk = torch.cat([torch.repeat_interleave(msk[:, 0:1], repeats=4, dim=1), msk[:, 1:]], dim=1)
    msk = msk.view(1, msk.shape[1] // 4, 4, h, w).transpose(1, 2)
    assert torch.equal(condition_mask(cfg, 1, n, h, w), msk)


def test_normalize_inverts_denormalize_with_wan21_statistics():
    cfg = get_vae_preset("wan2.1")
    z = torch.randn(1, cfg.z_dim, 2, 2, 2, dtype=torch.float64)
    assert torch.allclose(normalize(denormalize(z, cfg), cfg), z)
    assert torch.allclose(denormalize(z, cfg)[0, 0], z[0, 0] * cfg.latents_std[0] + cfg.latents_mean[0])


def test_concurrent_encodes_on_one_vae_do_not_interfere():
    """Sessions share one VAE; diffusers' encode keeps module state, so encodes are serialised."""
    import threading

    from liveact.config import get_preset
    from liveact.sampling.chunking import window_video_frames
    from liveact.vae import build_vae, encode_condition, get_vae_preset

    cfg = get_vae_preset("tiny")
    vae = build_vae(cfg)
    frames = window_video_frames(get_preset("tiny"))
    images = [torch.rand(1, 3, 32, 32) * 2 - 1 for _ in range(4)]
    expected = [encode_condition(vae, cfg, im, frames) for im in images]
    got: dict[int, torch.Tensor] = {}
    threads = [threading.Thread(target=lambda i=i: got.update({i: encode_condition(vae, cfg, images[i], frames)}))
               for i in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(got[i], expected[i]) for i in range(4))
