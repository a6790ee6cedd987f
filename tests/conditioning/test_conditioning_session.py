"""build_encoders per preset (errors for missing weights and mismatched sizes) and the session cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from liveact.conditioning import ConditioningCache, build_encoders, clear_encoder_cache
from liveact.conditioning.tiny import TinyImageTokenizer, TinyTextEncoder
from liveact.config import ConfigError, get_preset
from liveact.weight_files import CheckpointError

TINY = get_preset("tiny").model
BIG = get_preset("liveact-18b").model
EXPECTED_FILES = (
    "models_t5_umt5-xxl-enc-bf16.pth",
    "google/umt5-xxl/",
    "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
)


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_encoder_cache()
    yield
    clear_encoder_cache()


def test_tiny_preset_gets_tiny_encoders_built_once():
    pair = build_encoders("tiny", TINY)
    assert isinstance(pair.text, TinyTextEncoder) and isinstance(pair.image, TinyImageTokenizer)
    assert build_encoders("tiny", TINY) is pair
    wider = build_encoders("tiny", dataclasses.replace(TINY, clip_dim=16))
    assert wider is not pair and wider.encode_image(torch.zeros(1, 3, 8, 8)).shape == (1, 257, 16)
    clear_encoder_cache()
    assert build_encoders("tiny", TINY) is not pair
    (text,) = pair.encode_text(["hello"])
    assert text.shape == (1, TINY.text_dim)


def test_unknown_preset_names_choices():
    with pytest.raises(ConfigError, match=r"no conditioning encoders for preset 'micro'.*liveact-18b.*tiny"):
        build_encoders("micro", TINY)


def test_liveact_18b_without_weights_dir_lists_expected_files():
    with pytest.raises(CheckpointError, match="needs weights_dir") as err:
        build_encoders("liveact-18b", BIG)
    assert all(name in str(err.value) for name in EXPECTED_FILES)


def test_liveact_18b_names_missing_files(tmp_path):
    (tmp_path / EXPECTED_FILES[0]).write_bytes(b"")
    with pytest.raises(CheckpointError, match="conditioning weights missing") as err:
        build_encoders("liveact-18b", BIG, tmp_path)
    missing = str(err.value).split("missing: ")[1].split("; expected")[0]
    assert missing == f"[{EXPECTED_FILES[1]!r}, {EXPECTED_FILES[2]!r}]"


def test_liveact_18b_refuses_sizes_the_encoders_cannot_give(tmp_path):
    (tmp_path / EXPECTED_FILES[1]).mkdir(parents=True)
    for name in (EXPECTED_FILES[0], EXPECTED_FILES[2]):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ConfigError, match=r"text_dim=32 \(encoder gives 4096\).*clip_dim=64 \(encoder gives 1280\)"):
        build_encoders("liveact-18b", TINY, tmp_path)


class _Counting:
    """ConditioningEncoders that count their calls."""

    def __init__(self) -> None:
        self.calls = {"text": 0, "image": 0}

    def encode_text(self, prompts):
        self.calls["text"] += 1
        return [torch.full((len(p), 4), float(len(p))) for p in prompts]

    def encode_image(self, images):
        self.calls["image"] += 1
        return images.mean(dim=(2, 3)).unsqueeze(1).expand(-1, 5, -1)


def test_session_cache_computes_each_input_once():
    enc = _Counting()
    cache = ConditioningCache(enc)
    first = cache.text("a prompt")
    assert cache.text("a prompt") is first and first.shape == (8, 4)
    cache.text("an edit prompt")
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    tokens = cache.image(img)
    assert tokens.shape == (1, 5, 3)
    assert cache.image(img.clone()) is tokens and cache.image(img[None]) is tokens  # same content, same entry
    cache.image(img.flip(-1))
    assert enc.calls == {"text": 2, "image": 2}
    with pytest.raises(ValueError, match="expected one image"):
        cache.image(torch.zeros(2, 3, 4, 4))
