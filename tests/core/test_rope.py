"""RoPE in pieces: bit for bit what rotating every token at once gives, with bounded temporaries."""

from __future__ import annotations

import pytest
import torch

from liveact.config import get_preset
from liveact.model.rope import PIECE_TOKENS, Rope3D
from liveact.plan.ledger import DEVICE, ByteLedger


def whole(rope: Rope3D, x: torch.Tensor, t0: int, frames: int, rows: int, cols: int) -> torch.Tensor:
    """The rotation over all tokens at once, as the public implementation writes it."""
    b, s, h, d = x.shape
    freqs = rope._freqs(t0, frames, rows, cols, x.device, True)
    xc = torch.view_as_complex(x.to(rope.dtype).reshape(b, s, h, d // 2, 2))
    return torch.view_as_real(xc * freqs).reshape(b, s, h, d).type_as(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_pieces_equal_whole_bitwise(dtype: torch.dtype) -> None:
    m = get_preset("tiny").model
    rope = Rope3D(m)
    frames, rows, cols = 14, 24, 26  # 8736 tokens: three pieces, the last one short
    assert frames * rows * cols > 2 * PIECE_TOKENS
    x = torch.randn(1, frames * rows * cols, 2, m.head_dim, generator=torch.Generator().manual_seed(0)).to(dtype)
    before = x.clone()
    got = rope.apply(x, 2, frames, rows, cols)
    assert torch.equal(got, whole(rope, x, 2, frames, rows, cols))
    assert got.dtype == dtype
    assert torch.equal(x, before)  # the input is not rotated in place (float64 input: no copy to reuse)


def test_float64_temporaries_do_not_grow_with_tokens() -> None:
    """Rotating 14 frames of 1170 tokens (liveact-18b at 416x720) on meta: the peak above input + output is
    one float64 piece, not the whole key set twice over."""
    m = get_preset("liveact-18b").model
    rope = Rope3D(m)
    frames, rows, cols = 14, 45, 26
    tokens = frames * rows * cols
    x = torch.empty(1, tokens, m.num_heads, m.head_dim, dtype=torch.bfloat16, device="meta")
    ledger = ByteLedger()
    with ledger:
        ledger.track([x])
        with ledger.phase("pieces") as p:
            rope.apply(x, 0, frames, rows, cols)
        with ledger.phase("whole") as q:
            whole(rope, x, 0, frames, rows, cols)
    channels = m.num_heads * m.head_dim
    table = tokens * (m.head_dim // 2) * 16  # the complex128 rotation table, built once per grid
    piece = PIECE_TOKENS * channels * 8  # float64
    output = tokens * channels * 2
    pieces = p.peak[DEVICE] - p.start[DEVICE]
    assert pieces == table + output + piece  # measured: 352,276,480 bytes
    at_once = q.peak[DEVICE] - q.start[DEVICE]  # the table is cached by then: two float64 copies + the output
    assert at_once == 2 * tokens * channels * 8 + output  # 1,509,580,800 bytes
