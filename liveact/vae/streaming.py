"""Streaming VAE decode: the one place that drives the Wan VAE decoder's causal-conv cache.

Legend: B batch, Cz latent channels (16), T latent frames of a call, h x w latent grid,
Tv video frames, H x W = (h x w) * spatial stride.

The Wan decoder turns one latent frame at a time into video frames; each causal 3-D conv keeps the
last ``CACHE_T`` (2) frames of its input in a slot of a flat list (``feat_cache``, indexed by a
one-element counter ``feat_idx``). diffusers' public ``decode`` clears that list at its start and end,
so it cannot continue a stream. ``StreamingDecoder`` calls ``vae.decoder`` itself with a cache list
that lives in an explicit, immutable ``DecoderState``; decoding a sequence chunk by chunk equals one
full ``vae.decode`` of it (bitwise in fp32). The VAE object is never mutated, so sessions can share it.

Latent 0 of a stream gives 1 frame, each later latent ``temporal_stride`` (4) frames.

``decode_with_context`` is the public implementation's alternative: no cache is kept; each call
decodes [previous chunk's last clean latents + the new ones] from a fresh cache and drops the
frames that belong to the context (3 context latents: 1 + 2*4 = 9 frames).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

from liveact.vae.config import VaeConfig
from liveact.vae.latents import check_latents, denormalize

__all__ = ["REPEAT", "DecoderState", "StreamingDecoder"]

# diffusers' sentinel in an upsample3d slot: the first latent passed through without a time conv.
REPEAT = "Rep"

CacheEntry = torch.Tensor | str | None

# export() names: a tensor slot is "cache.NN", a REPEAT slot "cache.NN.rep" (an empty tensor),
# an empty (None) slot has no name.
SLOTS_KEY = "num_slots"
FIRST_KEY = "first_decoded"
_SLOT = re.compile(r"cache\.(\d+)(\.rep)?")


def _slot_name(i: int) -> str:
    return f"cache.{i:02d}"


@dataclass(frozen=True)
class DecoderState:
    """A stream's decoder cache: one entry per causal conv slot, and whether latent 0 was decoded."""

    cache: tuple[CacheEntry, ...]
    first_decoded: bool = False

    @classmethod
    def fresh(cls, num_slots: int) -> DecoderState:
        return cls(cache=(None,) * num_slots)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.cache if isinstance(t, torch.Tensor))

    def export(self) -> dict[str, torch.Tensor]:
        """Plain named tensors (safetensors-compatible); None slots are absent, REPEAT slots ``.rep``."""
        out = {SLOTS_KEY: torch.tensor([len(self.cache)]), FIRST_KEY: torch.tensor([self.first_decoded])}
        for i, entry in enumerate(self.cache):
            if isinstance(entry, torch.Tensor):
                out[_slot_name(i)] = entry.contiguous()
            elif entry == REPEAT:
                out[f"{_slot_name(i)}.rep"] = torch.zeros(0)
            elif entry is not None:
                raise TypeError(f"decoder cache slot {i} holds {entry!r}, which has no exported form")
        return out

    @classmethod
    def load(cls, tensors: Mapping[str, torch.Tensor], device: str | torch.device | None = None) -> DecoderState:
        """Import what ``export`` produced; refuses unknown, duplicate or out-of-range names."""
        meta = {SLOTS_KEY, FIRST_KEY}
        if absent := sorted(meta - set(tensors)):
            raise ValueError(f"decoder state is missing {absent}")
        cache: list[CacheEntry] = [None] * int(tensors[SLOTS_KEY].item())
        for name, t in tensors.items():
            if name in meta:
                continue
            match = _SLOT.fullmatch(name)
            if match is None or int(match[1]) >= len(cache):
                raise ValueError(f"unexpected decoder state tensor {name!r} (num_slots={len(cache)})")
            i = int(match[1])
            if cache[i] is not None:
                raise ValueError(f"decoder cache slot {i} is given twice")
            cache[i] = REPEAT if match[2] else t.to(device) if device is not None else t
        return cls(cache=tuple(cache), first_decoded=bool(tensors[FIRST_KEY].item()))


class StreamingDecoder:
    """Decodes normalised latents chunk by chunk against an explicit ``DecoderState``."""

    def __init__(self, vae: AutoencoderKLWan, cfg: VaeConfig) -> None:
        if vae.config.patch_size is not None:
            raise ValueError("patchified VAEs (Wan2.2) are not supported; LiveAct uses the Wan2.1 VAE")
        self.vae = vae
        self.cfg = cfg
        # as diffusers' clear_cache sizes its list: one slot per causal conv (some stay unused)
        self.num_slots = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())

    def initial_state(self) -> DecoderState:
        return DecoderState.fresh(self.num_slots)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, state: DecoderState | None = None) -> tuple[torch.Tensor, DecoderState]:
        """latents (B, Cz, T, h, w) normalised -> frames (B, 3, Tv, H, W) in [-1, 1] and the next state.

        ``state`` is not modified (None: a new stream). Tv = 1 + 4(T-1) at a stream's start, else 4T.
        """
        check_latents(latents, self.cfg)
        if latents.shape[2] == 0:
            raise ValueError("no latent frames to decode")
        state = self.initial_state() if state is None else state
        if len(state.cache) != self.num_slots:
            raise ValueError(f"decoder state has {len(state.cache)} slots, this VAE has {self.num_slots}")
        z = denormalize(latents, self.cfg).to(self.vae.dtype)
        x = self.vae.post_quant_conv(z)  # (B, Cz, T, h, w); 1x1x1, as decode() runs it
        cache = list(state.cache)  # diffusers rebinds slots, never writes into their tensors
        first = not state.first_decoded
        frames = []
        for i in range(x.shape[2]):
            frames.append(self.vae.decoder(x[:, :, i : i + 1], feat_cache=cache, feat_idx=[0], first_chunk=first))
            first = False
        out = torch.cat(frames, dim=2).clamp(-1.0, 1.0)  # (B, 3, Tv, H, W)
        return out, DecoderState(cache=tuple(cache), first_decoded=True)

    def decode_with_context(
        self, context: torch.Tensor | None, new_latents: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The public implementation's decode: context (B, Cz, Tc, h, w) | None, new (B, Cz, T, h, w).

        Decodes [context + new] from a fresh cache and drops the context's 1 + 4(Tc-1) frames.
        Returns frames (B, 3, Tv, H, W) for the new latents and the next context: the last
        ``decode_context_latents`` (3) latents of [context + new].
        """
        check_latents(new_latents, self.cfg, "new_latents")
        if context is None:
            z, drop = new_latents, 0
        else:
            check_latents(context, self.cfg, "context")
            z, drop = torch.cat([context, new_latents], dim=2), self.cfg.video_frames(context.shape[2])
        frames, _ = self.decode(z)
        return frames[:, :, drop:], z[:, :, -self.cfg.decode_context_latents :].clone()
