"""Tiny-preset conditioning: shapes as the real encoders, pinned numbers (the tiny model depends on them)."""

from __future__ import annotations

import pytest
import torch

from liveact.conditioning.tiny import TINY_SEED, TinyImageTokenizer, TinyTextEncoder, fixed_table
from liveact.config import get_preset
from liveact.model.loading import build_model

TINY = get_preset("tiny").model


def _ramp() -> torch.Tensor:
    return torch.linspace(-1, 1, 3 * 32 * 24).view(1, 3, 32, 24)


def test_fixed_table_is_pinned_and_unit_variance():
    assert TINY_SEED == 260311746
    torch.testing.assert_close(
        fixed_table("image.patch", (4,)), torch.tensor([-0.408090, 1.304552, -1.558638, 1.154395]), atol=1e-6, rtol=0
    )
    big = fixed_table("any", (200_000,))
    assert abs(big.mean().item()) < 0.01 and abs(big.var().item() - 1) < 0.01
    assert big.abs().max().item() <= 3**0.5
    assert torch.equal(fixed_table("any", (2, 3)).flatten(), big[:6])  # value i depends on (seed, name, i)
    assert not torch.equal(fixed_table("any", (6,), seed=1), big[:6])


def test_image_tokens_shape_and_pinned_values():
    tok = TinyImageTokenizer(TINY.clip_tokens, TINY.clip_dim)
    out = tok.encode(_ramp())
    assert out.shape == (1, 257, 64) and out.dtype == torch.float32 and tok.grid == 16
    expected = {
        0: [-0.228166, 0.406604, 0.564355],
        1: [0.945187, 0.213255, -0.498217],
        256: [-0.503088, -0.212499, 0.430212],
    }
    for token, values in expected.items():
        torch.testing.assert_close(out[0, token, :3], torch.tensor(values), atol=1e-5, rtol=0)


def test_image_tokens_are_deterministic_and_depend_on_the_image():
    images = torch.rand(2, 3, 70, 50, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = TinyImageTokenizer(TINY.clip_tokens, TINY.clip_dim).encode(images)
    b = TinyImageTokenizer(TINY.clip_tokens, TINY.clip_dim).encode(images)
    assert torch.equal(a, b)
    assert (a[0] - a[1]).abs().mean() > 0.1  # two different images
    flipped = TinyImageTokenizer(TINY.clip_tokens, TINY.clip_dim).encode(images.flip(-1))
    assert torch.allclose(flipped[:, 0], a[:, 0], atol=1e-5)  # same colour statistics: same global token
    assert not torch.allclose(flipped[:, 1:], a[:, 1:], atol=1e-2)  # but the patches moved


def test_image_token_count_must_be_one_plus_a_square():
    with pytest.raises(ValueError, match="clip_tokens=51 must be 1 \\+ a square"):
        TinyImageTokenizer(51, 8)
    assert TinyImageTokenizer(17, 8).encode(torch.zeros(3, 3, 9, 9)).shape == (3, 17, 8)


def test_text_rows_per_word_and_empty_prompt():
    enc = TinyTextEncoder(TINY.text_len, TINY.text_dim)
    empty, hello, same, long = enc.encode(["  ", "Hello world", "hello   WORLD", " ".join(["w"] * 40)])
    assert empty.shape == (0, 32) and empty.dtype == torch.float32
    assert hello.shape == (2, 32) and long.shape == (TINY.text_len, 32)
    assert torch.equal(hello, same)  # cleaned and lower-cased
    torch.testing.assert_close(hello[:, 0], torch.tensor([-1.104310, 0.575929]), atol=1e-5, rtol=0)
    swapped = enc.encode(["world hello"])[0]
    assert not torch.equal(swapped, hello)  # word order is encoded by the position codes
    assert torch.equal(TinyTextEncoder(TINY.text_len, TINY.text_dim).encode(["Hello world"])[0], hello)


def test_outputs_fit_the_tiny_dit_context():
    model = build_model(get_preset("tiny")).eval()
    text = TinyTextEncoder(TINY.text_len, TINY.text_dim).encode(["a person talking"])
    clip = TinyImageTokenizer(TINY.clip_tokens, TINY.clip_dim).encode(_ramp())
    with torch.no_grad():
        context = model.encode_context(text, clip)
    assert context.shape == (1, TINY.clip_tokens + TINY.text_len, TINY.dim) == (1, 273, 128)
    assert torch.isfinite(context).all()
