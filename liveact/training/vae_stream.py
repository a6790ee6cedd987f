"""Streamed VAE reconstruction for training: a no-gradient warm-up, then a window with gradients.

Legend: B batch, T video frames of the window, Cz latent channels, n latent frames, H x W pixels.

A stream reaches the causal VAE's steady state only after its caches have seen more frames than any
affordable training window holds (the tiny VAE's encoder and decoder each reach back ~100 frames).
``streamed_reconstruction`` runs the first ``1 + 4m`` frames of a window through encoder and decoder
as a stream without gradients (building their caches, as a serving session does), then encodes,
samples and decodes the remaining frames with gradients against those caches (truncated
backpropagation through time). With ``m = 0`` it is the ordinary full-window reconstruction.

The encoder takes frame 0 alone and then groups of ``temporal_stride`` frames (diffusers' ``_encode``),
the decoder one latent at a time (``_decode``); both keep their causal-conv caches in plain lists, which
diffusers rebinds and never writes into, so a no-gradient warm-up cache is safe to reuse under autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

__all__ = ["StreamedReconstruction", "streamed_reconstruction"]


@dataclass
class StreamedReconstruction:
    recon: torch.Tensor  # (B, 3, Tg, H, W): the decoded frames of the gradient part
    target: torch.Tensor  # (B, 3, Tg, H, W): the input frames they reconstruct
    mean: torch.Tensor  # (B, Cz, ng, h, w): posterior mean of the gradient part
    logvar: torch.Tensor  # (B, Cz, ng, h, w)


def _fresh_cache(module: torch.nn.Module) -> list:
    return [None] * sum(isinstance(m, WanCausalConv3d) for m in module.modules())


def _encode(vae: AutoencoderKLWan, x: torch.Tensor, cache: list, at_start: bool) -> torch.Tensor:
    """x (B, 3, T, H, W) -> quant_conv output (B, 2Cz, n, h, w); T = 1 + 4k at a stream's start, else 4k."""
    stride = vae.config.scale_factor_temporal
    groups = [x[:, :, :1]] if at_start else []
    rest = x[:, :, 1:] if at_start else x
    if rest.shape[2] % stride:
        raise ValueError(f"{rest.shape[2]} frames after the stream start are not a multiple of {stride}")
    groups += list(rest.split(stride, dim=2)) if rest.shape[2] else []
    out = [vae.encoder(g, feat_cache=cache, feat_idx=[0]) for g in groups]
    return vae.quant_conv(torch.cat(out, dim=2))


def _decode(vae: AutoencoderKLWan, z: torch.Tensor, cache: list, at_start: bool) -> torch.Tensor:
    """z (B, Cz, n, h, w) -> frames (B, 3, Tv, H, W) clamped to [-1, 1], as diffusers' ``_decode``."""
    x = vae.post_quant_conv(z)
    frames = []
    for i in range(x.shape[2]):
        first = at_start and i == 0
        frames.append(vae.decoder(x[:, :, i : i + 1], feat_cache=cache, feat_idx=[0], first_chunk=first))
    return torch.cat(frames, dim=2).clamp(-1.0, 1.0)


def streamed_reconstruction(
    vae: AutoencoderKLWan, x: torch.Tensor, warm_latents: int, generator: torch.Generator | None
) -> StreamedReconstruction:
    """x (B, 3, T, H, W) in [-1, 1], T = 1 + 4k; the first ``1 + 4 (warm_latents - 1)`` frames warm up.

    ``generator`` draws the posterior sample of the gradient part (None: the posterior mean, as
    ``latent_dist.mode()``). The warm-up decodes its posterior means.
    """
    stride = vae.config.scale_factor_temporal
    total = x.shape[2]
    split = 1 + stride * (warm_latents - 1) if warm_latents > 0 else 0  # frames of the warm-up
    if warm_latents < 0 or (total - 1) % stride or split >= total:
        raise ValueError(f"cannot warm up {warm_latents} latents of a {total}-frame window (T must be 1 + 4k)")
    enc_cache, dec_cache = _fresh_cache(vae.encoder), _fresh_cache(vae.decoder)
    if split:
        with torch.no_grad():
            moments = _encode(vae, x[:, :, :split], enc_cache, at_start=True)
            _decode(vae, moments.chunk(2, dim=1)[0], dec_cache, at_start=True)
    tail = x[:, :, split:]
    mean, logvar = _encode(vae, tail, enc_cache, at_start=not split).chunk(2, dim=1)
    logvar = logvar.clamp(-30.0, 20.0)  # as diffusers' DiagonalGaussianDistribution
    z = mean
    if generator is not None:
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    recon = _decode(vae, z, dec_cache, at_start=not split)
    return StreamedReconstruction(recon=recon, target=tail, mean=mean, logvar=logvar)
