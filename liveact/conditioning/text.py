"""The umT5-XXL text encoder of ``liveact-18b``: transformers' ``UMT5EncoderModel`` with Wan's weights.

Wan ships the encoder as ``models_t5_umt5-xxl-enc-bf16.pth`` in its own module layout (Wan2.1
``wan/modules/t5.py``: ``T5Encoder`` with ``shared_pos=False``, i.e. one relative-position table per
block) and the tokenizer as ``google/umt5-xxl``. ``wan_t5_to_hf`` renames the Wan keys to
transformers' names; ``hf_t5_to_wan`` is its inverse. Per block i::

    blocks.i.norm1.weight                    encoder.block.i.layer.0.layer_norm.weight
    blocks.i.attn.{q,k,v,o}.weight           encoder.block.i.layer.0.SelfAttention.{q,k,v,o}.weight
    blocks.i.pos_embedding.embedding.weight  encoder.block.i.layer.0.SelfAttention.relative_attention_bias.weight
    blocks.i.norm2.weight                    encoder.block.i.layer.1.layer_norm.weight
    blocks.i.ffn.gate.0.weight               encoder.block.i.layer.1.DenseReluDense.wi_0.weight  (GELU-tanh side)
    blocks.i.ffn.fc1.weight                  encoder.block.i.layer.1.DenseReluDense.wi_1.weight  (linear side)
    blocks.i.ffn.fc2.weight                  encoder.block.i.layer.1.DenseReluDense.wo.weight

plus ``token_embedding.weight`` -> ``shared.weight`` (tied to ``encoder.embed_tokens.weight``) and
``norm.weight`` -> ``encoder.final_layer_norm.weight``.

Encoding follows Wan's ``T5EncoderModel.__call__``: clean the prompt, pad/truncate to ``text_len``
with the EOS token, run with the attention mask, and return each prompt's states trimmed to its
real token count: (L_i <= text_len, dim).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, UMT5Config, UMT5EncoderModel

from liveact.conditioning.checkpoint import assign_strict, check_layout, load_pth
from liveact.conditioning.prompt import clean_prompt
from liveact.weight_files import CheckpointError

__all__ = [
    "T5_CHECKPOINT",
    "T5_TOKENIZER_DIR",
    "UMT5Spec",
    "UMT5TextEncoder",
    "build_umt5",
    "hf_t5_to_wan",
    "load_umt5_encoder",
    "t5_key_map",
    "wan_t5_to_hf",
]

T5_CHECKPOINT = "models_t5_umt5-xxl-enc-bf16.pth"
T5_TOKENIZER_DIR = "google/umt5-xxl"  # inside the Wan weights directory

log = logging.getLogger(__name__)

_EMBED = "token_embedding.weight"
_HF_SHARED = "shared.weight"
_HF_EMBED_TIED = "encoder.embed_tokens.weight"  # the same tensor as shared.weight

# Wan key suffix under blocks.i -> transformers suffix under encoder.block.i
_BLOCK_KEYS = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}


@dataclass(frozen=True)
class UMT5Spec:
    """Encoder sizes; the defaults are umT5-XXL (Wan's ``umt5_xxl``, google/umt5-xxl's config)."""

    vocab_size: int = 256384
    dim: int = 4096
    ffn_dim: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32  # relative-position buckets (bidirectional: half per direction)
    max_distance: int = 128  # relative distance beyond which buckets stop growing
    eps: float = 1e-6
    pad_token_id: int = 0
    eos_token_id: int = 1

    def hf_config(self) -> UMT5Config:
        return UMT5Config(
            vocab_size=self.vocab_size,
            d_model=self.dim,
            d_kv=self.dim // self.num_heads,
            d_ff=self.ffn_dim,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            relative_attention_num_buckets=self.num_buckets,
            relative_attention_max_distance=self.max_distance,
            layer_norm_epsilon=self.eps,
            feed_forward_proj="gated-gelu",  # GELU-tanh gate, as Wan's T5FeedForward
            dropout_rate=0.0,
            tie_word_embeddings=False,
            pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_id,
        )


def build_umt5(spec: UMT5Spec, device: str | torch.device = "cpu") -> UMT5EncoderModel:
    """Construct the encoder in eval mode; on ``meta`` nothing is allocated."""
    with torch.device(device):
        model = UMT5EncoderModel(spec.hf_config())
    return model.eval().requires_grad_(False)


def t5_key_map(num_layers: int) -> dict[str, str]:
    """Wan key -> transformers key, for every tensor of the encoder (the tied alias left out)."""
    table = {_EMBED: _HF_SHARED, "norm.weight": "encoder.final_layer_norm.weight"}
    for i in range(num_layers):
        table.update({f"blocks.{i}.{w}": f"encoder.block.{i}.{h}" for w, h in _BLOCK_KEYS.items()})
    return table


def wan_t5_to_hf(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Rename a Wan-layout umT5 encoder state dict; any missing or unknown key raises CheckpointError."""
    table = t5_key_map(num_layers)
    check_layout(state, table, "umT5 (Wan layout)")
    out = {table[k]: v for k, v in state.items()}
    out[_HF_EMBED_TIED] = out[_HF_SHARED]
    return out


def hf_t5_to_wan(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """The inverse of ``wan_t5_to_hf`` (``encoder.embed_tokens.weight`` is the tied alias, dropped)."""
    inverse = {h: w for w, h in t5_key_map(num_layers).items()}
    check_layout(state, inverse, "umT5 (transformers layout)", unused=lambda k: k == _HF_EMBED_TIED)
    return {inverse[k]: v for k, v in state.items() if k != _HF_EMBED_TIED}


class UMT5TextEncoder:
    """Prompts -> unpadded token states, one (L_i <= text_len, dim) tensor per prompt."""

    def __init__(self, model: UMT5EncoderModel, tokenizer: PreTrainedTokenizerBase, text_len: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.text_len = text_len

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        device = next(self.model.parameters()).device
        batch = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,  # the EOS token ends every prompt
            return_tensors="pt",
        )
        ids = batch["input_ids"].to(device)  # (B, text_len)
        mask = batch["attention_mask"].to(device)  # (B, text_len)
        states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, text_len, D)
        lengths = mask.sum(dim=1).tolist()
        return [s[:n] for s, n in zip(states, lengths, strict=True)]


def load_umt5_encoder(
    checkpoint: str | Path,
    tokenizer_dir: str | Path,
    text_len: int,
    spec: UMT5Spec | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
) -> UMT5TextEncoder:
    """Load Wan's umT5 checkpoint and a local tokenizer directory (never downloads), all-or-nothing."""
    spec = spec or UMT5Spec()
    tok_dir = Path(tokenizer_dir)
    if not tok_dir.is_dir():
        raise CheckpointError(f"tokenizer directory not found: {tok_dir}")
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    model = build_umt5(spec, "meta")
    state = wan_t5_to_hf(load_pth(checkpoint), spec.num_layers)
    assign_strict(model, state, dtype)
    model.encoder.embed_tokens.weight = model.shared.weight  # assignment made two parameters; re-tie
    model = model.to(device)
    log.info("loaded umT5 encoder from %s (%d tensors, %s)", checkpoint, len(state) - 1, dtype)
    return UMT5TextEncoder(model, tokenizer, text_len)
