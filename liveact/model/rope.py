"""3-D rotary position embedding (time, row, col) over latent-frame token grids.

Legend: B batch, S tokens, H heads, D head_dim, P = D/2 complex pairs.
Adjacent channel pairs (2j, 2j+1) of each head form one complex number; the P pairs split into
(time, row, col) parts and part ``i`` rotates by ``pos * theta^(-2k/d_part)``.

Rotation runs in ``PIECE_TOKENS`` pieces, so its float64 temporaries do not grow with the cache.

In LiveAct the temporal position of a cached key is its *slot index*, and queries use the slots
they are written to, so positions stay below the slot count however long a session runs.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from liveact.config import ModelConfig

# Tokens rotated at a time. Every forward rotates the whole key cache (14 slots), in float64 for
# parity with the public implementation: whole, that is 8 bytes per channel of every cached key twice
# over (1.25 GiB a layer for liveact-18b at 416x720 on one GPU); in pieces of this many tokens the
# float64 temporary is one piece (168 MB there), and the result is the same bit for bit (elementwise).
PIECE_TOKENS = 4096


class Rope3D:
    """Rotation tables for a head of ``cfg.head_dim``; rotations computed in ``dtype`` (float64 by default)."""

    def __init__(self, cfg: ModelConfig, dtype: torch.dtype = torch.float64) -> None:
        self.split = cfg.rope_split
        self.theta = cfg.rope_theta
        self.table_len = cfg.rope_table_len
        self.dtype = dtype
        self._freqs = lru_cache(maxsize=16)(self._build)

    def _inv_freq(self, pairs: int) -> torch.Tensor:
        d_part = 2 * pairs
        exponent = torch.arange(0, d_part, 2, dtype=torch.float64) / d_part
        return 1.0 / torch.pow(self.theta, exponent)  # (pairs,)

    def _build(self, t0: int, frames: int, rows: int, cols: int, device: torch.device, bounded: bool) -> torch.Tensor:
        if bounded and max(t0 + frames, rows, cols) > self.table_len:
            raise ValueError(
                f"RoPE position {max(t0 + frames, rows, cols) - 1} exceeds the table length {self.table_len}"
            )
        pt, ph, pw = self.split
        angle_t = torch.outer(torch.arange(t0, t0 + frames, dtype=torch.float64), self._inv_freq(pt))
        angle_h = torch.outer(torch.arange(rows, dtype=torch.float64), self._inv_freq(ph))
        angle_w = torch.outer(torch.arange(cols, dtype=torch.float64), self._inv_freq(pw))
        angles = torch.cat(
            [
                angle_t.view(frames, 1, 1, pt).expand(frames, rows, cols, pt),
                angle_h.view(1, rows, 1, ph).expand(frames, rows, cols, ph),
                angle_w.view(1, 1, cols, pw).expand(frames, rows, cols, pw),
            ],
            dim=-1,
        ).reshape(frames * rows * cols, 1, pt + ph + pw)  # (S, 1, P)
        freqs = torch.polar(torch.ones_like(angles), angles)  # complex128
        complex_dtype = torch.complex128 if self.dtype == torch.float64 else torch.complex64
        return freqs.to(device=device, dtype=complex_dtype)

    def apply(self, x: torch.Tensor, t0: int, frames: int, rows: int, cols: int, bounded: bool = True) -> torch.Tensor:
        """Rotate x (B, S, H, D) whose S = frames*rows*cols tokens sit at temporal positions t0.. ."""
        b, s, h, d = x.shape
        if s != frames * rows * cols:
            raise ValueError(f"RoPE got {s} tokens for a {frames}x{rows}x{cols} grid")
        freqs = self._freqs(t0, frames, rows, cols, x.device, bounded)  # (S, 1, P)
        out = torch.empty_like(x)
        for a in range(0, s, PIECE_TOKENS):  # bounded temporaries: one piece in self.dtype at a time
            piece = x[:, a : a + PIECE_TOKENS].to(self.dtype, copy=True)  # (B, n, H, D)
            rotated = torch.view_as_complex(piece.view(b, -1, h, d // 2, 2))  # (B, n, H, P), shares piece
            rotated.mul_(freqs[a : a + PIECE_TOKENS])
            out[:, a : a + PIECE_TOKENS] = piece  # rounds to x's dtype as ``type_as`` would
            del piece, rotated  # before the next piece is made: one piece live at a time
        return out
