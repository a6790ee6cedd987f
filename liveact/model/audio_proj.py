"""Audio projection: a 53-frame feature window -> 32 audio tokens per latent frame.

Legend: B batch, Fv video frames of the window (1 + (n_latent-1)*vae_scale), W taps per frame
(audio_window), L feature layers, Ca feature channels.

Latent frame 0 takes all W taps of video frame 0. Latent frame g >= 1 covers video frames
1+4(g-1)..4+4(g-1) and takes the lower-half taps (0..W//2) of its first frame, the centre tap of the
middle frames and the upper-half taps (W//2..W-1) of its last frame: W + vae_scale - 1 taps.
"""

from __future__ import annotations

import torch
from torch import nn

from liveact.config import ModelConfig


def split_window(audio: torch.Tensor, vae_scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """audio (B, Fv, W, L, Ca) -> first (B, 1, W, L, Ca), later (B, n-1, W+vae_scale-1, L, Ca)."""
    b, fv, w, layers, ch = audio.shape
    if (fv - 1) % vae_scale:
        raise ValueError(f"window of {fv} video frames is not 1 + k*{vae_scale}")
    mid = w // 2
    first = audio[:, :1]
    later = audio[:, 1:].reshape(b, (fv - 1) // vae_scale, vae_scale, w, layers, ch)
    group = torch.cat(
        [
            later[:, :, 0, : mid + 1],  # (B, G, mid+1, L, Ca)
            later[:, :, 1:-1, mid],  # (B, G, vae_scale-2, L, Ca)
            later[:, :, -1, mid:],  # (B, G, W-mid, L, Ca)
        ],
        dim=2,
    )
    return first, group


class AudioProjModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        per_tap = cfg.audio_layers * cfg.audio_channels
        self.tokens = cfg.audio_context_tokens
        self.out_dim = cfg.audio_output_dim
        self.proj1 = nn.Linear(cfg.audio_window * per_tap, cfg.audio_intermediate_dim)
        self.proj1_vf = nn.Linear(cfg.audio_seq_len_vf * per_tap, cfg.audio_intermediate_dim)
        self.proj2 = nn.Linear(cfg.audio_intermediate_dim, cfg.audio_intermediate_dim)
        self.proj3 = nn.Linear(cfg.audio_intermediate_dim, self.tokens * self.out_dim)
        self.norm = nn.LayerNorm(self.out_dim, eps=cfg.audio_norm_eps) if cfg.norm_output_audio else nn.Identity()

    def forward(self, first: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        """first (B, 1, W, L, Ca), later (B, G, W', L, Ca) -> tokens (B, 1+G, N_a, C_a)."""
        b = first.shape[0]
        h0 = torch.relu(self.proj1(first.flatten(2)))  # (B, 1, I)
        h1 = torch.relu(self.proj1_vf(later.flatten(2)))  # (B, G, I)
        h = torch.relu(self.proj2(torch.cat([h0, h1], dim=1)))  # (B, 1+G, I)
        tokens = self.proj3(h).view(b, h.shape[1], self.tokens, self.out_dim)
        out: torch.Tensor = self.norm(tokens)  # nn.Module calls are untyped (Any) in torch
        return out
