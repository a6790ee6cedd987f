"""umT5 text encoder: Wan key mapping (round trip and semantics), strict errors, tokenisation, meta build."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from liveact.conditioning.checkpoint import load_pth
from liveact.conditioning.prompt import clean_prompt
from liveact.conditioning.text import (
    UMT5Spec,
    build_umt5,
    hf_t5_to_wan,
    load_umt5_encoder,
    t5_key_map,
    wan_t5_to_hf,
)
from liveact.weight_files import CheckpointError

# 8 buckets / max distance 16 so a 12-token prompt reaches the logarithmic buckets
SPEC = UMT5Spec(vocab_size=40, dim=16, ffn_dim=24, num_heads=4, num_layers=2, num_buckets=8, max_distance=16)
WORDS = "a man speaks to the camera in a bright room with soft light and calm voice".split()
TEXT_LEN = 12
UMT5_XXL_PARAMS = 5_680_910_336  # 256384*4096 + 24 * (4*4096^2 + 32*64 + 3*4096*10240 + 2*4096) + 4096


def _random_model(seed: int = 0):
    model = build_umt5(SPEC)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if "norm" in name else 0.3 * noise)
    return model


def _write_tokenizer(directory) -> None:
    vocab = {"<pad>": SPEC.pad_token_id, "</s>": SPEC.eos_token_id, "<unk>": 2}
    vocab |= {w: 3 + i for i, w in enumerate(dict.fromkeys(WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", SPEC.eos_token_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(directory))


def _buckets(length: int) -> torch.Tensor:
    """Bidirectional T5 relative-position buckets (key - query), written from the T5 definition."""
    rel = torch.arange(length)[None, :] - torch.arange(length)[:, None]
    half = SPEC.num_buckets // 2
    exact = half // 2
    dist = rel.abs()
    scaled = torch.log(dist.clamp(min=1).float() / exact) / math.log(SPEC.max_distance / exact) * (half - exact)
    large = (exact + scaled.long()).clamp(max=half - 1)
    return (rel > 0).long() * half + torch.where(dist < exact, dist, large)


def _wan_reference(sd: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """Wan's T5Encoder semantics on a Wan-layout state dict (one unpadded sequence)."""
    b, n = ids.shape
    h, d = SPEC.num_heads, SPEC.dim // SPEC.num_heads

    def rms(t, w):
        return w * t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + SPEC.eps)

    x = sd["token_embedding.weight"][ids]
    buckets = _buckets(n)
    for i in range(SPEC.num_layers):
        p = f"blocks.{i}."
        y = rms(x, sd[p + "norm1.weight"])
        q, k, v = (F.linear(y, sd[p + f"attn.{c}.weight"]).view(b, n, h, d).transpose(1, 2) for c in "qkv")
        bias = sd[p + "pos_embedding.embedding.weight"][buckets].permute(2, 0, 1)  # (H, N, N)
        att = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)  # T5: no 1/sqrt(d)
        x = x + F.linear((att @ v).transpose(1, 2).reshape(b, n, SPEC.dim), sd[p + "attn.o.weight"])
        y = rms(x, sd[p + "norm2.weight"])
        gate = F.gelu(F.linear(y, sd[p + "ffn.gate.0.weight"]), approximate="tanh")
        x = x + F.linear(F.linear(y, sd[p + "ffn.fc1.weight"]) * gate, sd[p + "ffn.fc2.weight"])
    return rms(x, sd["norm.weight"])


@pytest.fixture(scope="module")
def model():
    return _random_model()


@pytest.fixture
def weights(tmp_path, model):
    """A Wan-layout checkpoint file and a tokenizer directory on disk."""
    torch.save(hf_t5_to_wan(model.state_dict(), SPEC.num_layers), tmp_path / "t5.pth")
    _write_tokenizer(tmp_path / "tok")
    return tmp_path


def test_key_map_covers_every_tensor_once(model):
    table = t5_key_map(SPEC.num_layers)
    assert len(table) == 2 + 10 * SPEC.num_layers
    assert set(table.values()) == set(model.state_dict()) - {"encoder.embed_tokens.weight"}


def test_round_trip_through_wan_layout_is_exact(model, weights):
    enc = load_umt5_encoder(weights / "t5.pth", weights / "tok", TEXT_LEN, SPEC, dtype=torch.float32)
    loaded, ours = enc.model.state_dict(), model.state_dict()
    assert sorted(loaded) == sorted(ours)
    assert all(torch.equal(loaded[k], ours[k]) for k in ours)
    assert enc.model.shared.weight is enc.model.encoder.embed_tokens.weight  # still tied
    ids = torch.tensor([[3, 4, 5, 6, 1]])
    with torch.no_grad():
        assert torch.equal(enc.model(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)


def test_mapping_matches_wan_semantics(model):
    wan = hf_t5_to_wan(model.state_dict(), SPEC.num_layers)
    ids = torch.arange(3, 3 + TEXT_LEN)[None]  # 12 tokens: relative distances up to 11
    with torch.no_grad():
        ours = model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(ours, _wan_reference(wan, ids), atol=1e-5, rtol=1e-5)


def test_encode_trims_to_real_tokens_as_wan(model, weights):
    enc = load_umt5_encoder(weights / "t5.pth", weights / "tok", TEXT_LEN, SPEC, dtype=torch.float32)
    long_prompt = " ".join(WORDS)  # 16 words: truncated to text_len, EOS kept
    out = enc.encode(["a  man speaks\n", "", long_prompt])
    assert [tuple(t.shape) for t in out] == [(4, SPEC.dim), (1, SPEC.dim), (TEXT_LEN, SPEC.dim)]
    ids = torch.tensor([[3, 4, 5, SPEC.eos_token_id]])  # "a man speaks" </s>
    with torch.no_grad():
        alone = model(input_ids=ids).last_hidden_state[0]  # unpadded: padding is masked out exactly
    torch.testing.assert_close(out[0], alone, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out[2], _wan_reference(hf_t5_to_wan(model.state_dict(), 2), _ids(enc, long_prompt))[0])


def _ids(enc, prompt: str) -> torch.Tensor:
    return enc.tokenizer([prompt], truncation=True, max_length=TEXT_LEN, return_tensors="pt")["input_ids"]


def test_missing_and_unexpected_wan_keys_are_named(model):
    wan = hf_t5_to_wan(model.state_dict(), SPEC.num_layers)
    broken = {k: v for k, v in wan.items() if k != "blocks.1.ffn.fc1.weight"} | {
        "blocks.0.attn.extra": wan["norm.weight"]
    }
    with pytest.raises(CheckpointError, match=r"1 missing keys.*blocks\.1\.ffn\.fc1\.weight") as err:
        wan_t5_to_hf(broken, SPEC.num_layers)
    assert "1 unexpected keys, first: ['blocks.0.attn.extra']" in str(err.value)


def test_misshaped_tensor_is_named_and_nothing_loads(model, tmp_path):
    wan = hf_t5_to_wan(model.state_dict(), SPEC.num_layers)
    wan["blocks.0.attn.q.weight"] = torch.zeros(SPEC.dim + 1, SPEC.dim)
    torch.save(wan, tmp_path / "t5.pth")
    _write_tokenizer(tmp_path / "tok")
    with pytest.raises(CheckpointError, match=r"mis-shaped.*SelfAttention\.q\.weight: checkpoint \(17, 16\)"):
        load_umt5_encoder(tmp_path / "t5.pth", tmp_path / "tok", TEXT_LEN, SPEC)


def test_missing_files_raise(tmp_path):
    _write_tokenizer(tmp_path / "tok")
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_umt5_encoder(tmp_path / "absent.pth", tmp_path / "tok", TEXT_LEN, SPEC)
    with pytest.raises(CheckpointError, match="tokenizer directory not found"):
        load_umt5_encoder(tmp_path / "absent.pth", tmp_path / "no-tok", TEXT_LEN, SPEC)


class _Payload:
    pass


def test_load_pth_refuses_pickled_objects(tmp_path):
    torch.save({"w": torch.zeros(1), "obj": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth: not a weights-only torch checkpoint") as err:
        load_pth(tmp_path / "evil.pth")
    assert "Traceback" not in str(err.value)


def test_umt5_xxl_builds_on_meta_with_its_parameter_count():
    model = build_umt5(UMT5Spec(), "meta")
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == UMT5_XXL_PARAMS  # ~5.68B, the tied embedding once
    cfg = model.config
    assert (cfg.d_model, cfg.d_kv, cfg.num_heads, cfg.d_ff, cfg.num_layers) == (4096, 64, 64, 10240, 24)
    assert (cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance) == (32, 128)
    assert cfg.dense_act_fn == "gelu_new" and cfg.is_gated_act  # GELU-tanh gate, as Wan's T5FeedForward


def test_clean_prompt_as_wan():
    assert clean_prompt("  a &amp;amp; b\n\t c  ") == "a & b c"
    assert clean_prompt("") == ""
