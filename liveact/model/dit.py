"""``LiveActDiT``: the causal audio diffusion transformer, one chunk per forward.

Legend: B batch, Cz latent channels (16), F latent frames of the chunk, h x w latent grid,
S = F * (h/2) * (w/2) tokens, C model dim.

Per session, ``encode_context`` turns text and CLIP features into the cross-attention context.
Per chunk, ``project_audio`` turns the chunk's feature window into audio tokens. Per denoising step,
``forward`` predicts the velocity of the chunk's noisy latent against that step's ConvKV caches.

Parameters that stay float32 when the rest runs in bf16: ``time_embedding``, ``time_projection``
and the ``modulation`` tables (see ``FP32_PARAMETERS``); norms compute in float32 regardless.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from liveact.config import LiveActConfig
from liveact.memory.cache import KVCache
from liveact.model.audio_proj import AudioProjModel, split_window
from liveact.model.block import BlockInputs, LiveActBlock
from liveact.model.layers import FP32LayerNorm, timestep_sinusoid
from liveact.model.rope import Rope3D

FP32_PARAMETERS = ("time_embedding.", "time_projection.", "modulation", "head.modulation")


def parameter_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype parameter ``name`` runs in when the model runs in ``dtype``: float32 for ``FP32_PARAMETERS``."""
    keep = any(name.startswith(k) or name.endswith(k) for k in FP32_PARAMETERS)
    return torch.float32 if keep else dtype


class ImageProj(nn.Module):
    """``img_emb``: LayerNorm -> Linear -> GELU(erf) -> Linear -> LayerNorm on CLIP tokens."""

    def __init__(self, in_dim: int, out_dim: int, eps: float) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.LayerNorm(in_dim, eps=eps),
            nn.Linear(in_dim, in_dim),
            nn.GELU(),
            nn.Linear(in_dim, out_dim),
            nn.LayerNorm(out_dim, eps=eps),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.proj(x)  # nn.Module calls are untyped (Any) in torch
        return out


class Head(nn.Module):
    def __init__(self, dim: int, patch_out: int, eps: float) -> None:
        super().__init__()
        self.norm = FP32LayerNorm(dim, eps)
        self.head = nn.Linear(dim, patch_out)
        self.modulation = nn.Parameter(torch.zeros(1, 2, dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x (B, S, C), e (B, C) float32 -> (B, S, patch_out)."""
        shift, scale = (self.modulation.float() + e.unsqueeze(1)).chunk(2, dim=1)
        out: torch.Tensor = self.head((self.norm(x).float() * (1 + scale) + shift).type_as(x))
        return out


class LiveActDiT(nn.Module):
    def __init__(self, config: LiveActConfig) -> None:
        super().__init__()
        m = config.model
        self.config = config
        c = m.dim
        self.patch_embedding = nn.Conv3d(m.in_dim, c, kernel_size=m.patch_size, stride=m.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(m.text_dim, c), nn.GELU(approximate="tanh"), nn.Linear(c, c))
        self.time_embedding = nn.Sequential(nn.Linear(m.freq_dim, c), nn.SiLU(), nn.Linear(c, c))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))
        self.blocks = nn.ModuleList([LiveActBlock(m, config.memory.compress_group) for _ in range(m.num_layers)])
        self.head = Head(c, m.patch_out, m.eps)
        self.img_emb = ImageProj(m.clip_dim, c, m.clip_norm_eps)
        self.audio_proj = AudioProjModel(m)
        self.rope = Rope3D(m)

    # -- per session ---------------------------------------------------------------------------
    def encode_context(self, text: Sequence[torch.Tensor], clip: torch.Tensor) -> torch.Tensor:
        """text: B tensors (L_i <= text_len, text_dim), unpadded; clip (B, clip_tokens, clip_dim).

        Returns (B, clip_tokens + text_len, C). Text is zero-padded to text_len *before* the text
        embedding and every row is attended (no mask), as the public implementation does.
        """
        m = self.config.model
        rows = []
        for u in text:
            if u.shape[0] > m.text_len:
                raise ValueError(f"text context has {u.shape[0]} tokens, more than text_len={m.text_len}")
            rows.append(torch.cat([u, u.new_zeros(m.text_len - u.shape[0], u.shape[1])]))
        txt = self.text_embedding(torch.stack(rows).to(self.dtype))
        img = self.img_emb(clip.to(self.dtype))
        return torch.cat([img, txt], dim=1)

    # -- per chunk -----------------------------------------------------------------------------
    def project_audio(self, window: torch.Tensor) -> torch.Tensor:
        """window (B, Fv, W, L, Ca) -> audio tokens (B, n_latent, N_a, C_a)."""
        first, later = split_window(window.to(self.dtype), self.config.model.vae_scale)
        tokens: torch.Tensor = self.audio_proj(first, later)
        return tokens

    # -- per denoising step --------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        audio: torch.Tensor | None,
        kv: Sequence[KVCache],
        mute_first_frame: bool,
    ) -> torch.Tensor:
        """Velocity of one chunk at one step.

        x (B, Cz, F, H, W) noisy latent; y (B, 4+Cz, F, H, W) conditioning of the same frames;
        t (B,) timesteps; context from ``encode_context``; audio (B, F, N_a, C_a) tokens of these
        frames, or None to skip audio cross-attention; kv one cache per layer (this step's).
        Returns (B, Cz, F, H, W).
        """
        m = self.config.model
        if len(kv) != m.num_layers:
            raise ValueError(f"need {m.num_layers} layer caches, got {len(kv)}")
        tokens = self.patch_embedding(torch.cat([x, y], dim=1).to(self.dtype))  # (B, C, F, h', w')
        grid = (tokens.shape[2], tokens.shape[3], tokens.shape[4])
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, S, C)

        e = self.time_embedding(timestep_sinusoid(m.freq_dim, t).float())  # (B, C) float32
        e0 = self.time_projection(e).unflatten(1, (6, m.dim))  # (B, 6, C)
        inp = BlockInputs(e0, grid, context, audio, mute_first_frame, self.rope)
        for block, layer_kv in zip(self.blocks, kv, strict=True):
            tokens = block(tokens, inp, layer_kv)
        out = self.head(tokens, e)  # (B, S, pt*ph*pw*Cz)
        return self.unpatchify(out, grid)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, S, pt*ph*pw*Cz) with (pt, ph, pw, Cz) ordering -> (B, Cz, F, H, W)."""
        b = x.shape[0]
        f, h, w = grid
        pt, ph, pw = self.config.model.patch_size
        cz = self.config.model.out_dim
        x = x.view(b, f, h, w, pt, ph, pw, cz)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(b, cz, f * pt, h * ph, w * pw)

    # -- helpers -------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    @property
    def layers(self) -> list[LiveActBlock]:
        """``blocks``, typed (an ``nn.ModuleList`` yields plain ``nn.Module``s to a type checker)."""
        return cast(list[LiveActBlock], list(self.blocks))

    @property
    def local_heads(self) -> int:
        """Attention heads this process computes: all of them, or its share once tensor-parallel sharded.

        The ConvKV caches are sized from this, so a rank holds only its heads' K/V.
        """
        return int(self.layers[0].self_attn.q.weight.shape[0]) // self.config.model.head_dim

    def compressor_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [blk.self_attn.compressor_weights() for blk in self.layers]

    def to_runtime_dtype(self, dtype: torch.dtype) -> LiveActDiT:
        """Cast to dtype except the parameters named in ``FP32_PARAMETERS``."""
        for name, p in self.named_parameters():
            p.data = p.data.to(parameter_dtype(name, dtype))
        return self

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> LiveActDiT:
        """Fresh-model initialisation (Wan's scheme; compressors at 1/group, i.e. the mean)."""
        g = torch.Generator().manual_seed(seed)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                bound = math.sqrt(6.0 / (mod.in_features + mod.out_features))
                mod.weight.copy_(torch.empty(mod.weight.shape).uniform_(-bound, bound, generator=g))
                if mod.bias is not None:
                    mod.bias.zero_()
        pe = self.patch_embedding
        fan_in, fan_out = pe.weight[0].numel(), pe.weight.shape[0]
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        pe.weight.copy_(torch.empty(pe.weight.shape).uniform_(-bound, bound, generator=g))
        assert pe.bias is not None  # Conv3d's default bias=True
        pe.bias.zero_()
        group = self.config.memory.compress_group
        for blk in self.layers:
            blk.modulation.copy_(torch.randn(blk.modulation.shape, generator=g) / math.sqrt(self.config.model.dim))
            for conv in blk.self_attn.compressor_weights():
                conv.fill_(1.0 / group)
        head_mod = self.head.modulation
        head_mod.copy_(torch.randn(head_mod.shape, generator=g) / math.sqrt(self.config.model.dim))
        return self

    def num_parameters(self) -> int:
        return sum(math.prod(p.shape) for p in self.parameters())
