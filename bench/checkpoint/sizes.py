"""What a checkpoint holds: its bytes by part, measured, and the liveact-18b figures, computed."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from bench.checkpoint.common import nbytes
from liveact.config import LiveActConfig, get_preset
from liveact.memory import sizing
from liveact.sampling.audio_window import ROWS_KEPT, held_rows_bytes
from liveact.state.schema import (
    AUDIO_ROWS,
    COND,
    COND_CONTEXT,
    COND_NULL_AUDIO,
    COND_Y,
    DECODER_STATE,
    DIT,
    ENCODER_STATE,
    MEMORY,
    MEMORY_KV_SUFFIXES,
)
from liveact.state.settings import DEFAULT_PART_BYTES
from liveact.state.store import Checkpoint
from liveact.vae.config import get_vae_preset
from liveact.vae.loading import build_vae
from liveact.vae.streaming import StreamingDecoder

# checkpoint parts by tensor name (liveact.state.schema)
MEMORY_PREFIX = DIT + MEMORY
COND_PREFIX = DIT + COND
PARTS = ("dit_memory", "conditioning", "audio_rows", "encoder_state", "decoder_state", "other")

# the computed liveact-18b figures
PRESET_18B = "liveact-18b"
SIZES_18B = ((416, 720), (512, 512))
KV_DTYPES_18B = ("bf16", "fp8")
TP_18B = (1, 2, 4)
MODEL_DTYPE_18B = "bf16"  # y and context are kept in the model's dtype
DECODER_STATE_DTYPE = torch.float32  # the decoder service runs the VAE in float32
TORCH_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float8_e4m3fn: "fp8"}


def part_of(name: str) -> str:
    """Which checkpoint part a stored tensor belongs to (see ``PARTS``)."""
    if name.startswith(MEMORY_PREFIX) and name.endswith(MEMORY_KV_SUFFIXES):
        return "dit_memory"
    if name.startswith(COND_PREFIX):
        return "conditioning"
    return {AUDIO_ROWS: "audio_rows", ENCODER_STATE: "encoder_state", DECODER_STATE: "decoder_state"}.get(name, "other")


def part_bytes(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    out = dict.fromkeys(PARTS, 0)
    for name, t in tensors.items():
        out[part_of(name)] += nbytes(t)
    return {"total": sum(out.values()), **out}


# -- computed sizes ----------------------------------------------------------------------------------


def conditioning_bytes(config: LiveActConfig, width: int, height: int, dtype_bytes: int) -> dict[str, int]:
    """``cond.y`` (1, cond_channels, window latent frames, h, w) and ``cond.context`` (1, clip + text tokens, dim)."""
    m, mem = config.model, config.memory
    stride = get_vae_preset(config.vae).spatial_stride
    y = m.cond_channels * mem.window_latent_frames * (height // stride) * (width // stride) * dtype_bytes
    context = (m.clip_tokens + m.text_len) * m.dim * dtype_bytes
    return {"y": y, "context": context}


def audio_row_bytes(config: LiveActConfig) -> int:
    return held_rows_bytes(config, rows=1)


def decoder_state_estimate(vae_name: str, config: LiveActConfig, width: int, height: int) -> int:
    """Tensor bytes of the decoder stream's VAE cache after chunks 0 and 1, from a meta-device run."""
    vae_cfg = get_vae_preset(vae_name)
    decoder = StreamingDecoder(build_vae(vae_cfg, device="meta"), vae_cfg)
    h, w = height // vae_cfg.spatial_stride, width // vae_cfg.spatial_stride
    state = None
    for chunk in (0, 1):
        frames = config.memory.chunk_latent_frames(chunk)
        latents = torch.zeros(1, vae_cfg.z_dim, frames, h, w, device="meta", dtype=DECODER_STATE_DTYPE)
        _, state = decoder.decode(latents, state)
    assert state is not None
    return state.nbytes()


def liveact_18b_state() -> dict:
    config = get_preset(PRESET_18B)
    dtype_bytes = sizing.BYTES[MODEL_DTYPE_18B]
    rows = held_rows_bytes(config)
    cases = []
    for width, height in SIZES_18B:
        cond = conditioning_bytes(config, width, height, dtype_bytes)
        for kv_dtype in KV_DTYPES_18B:
            for tp in TP_18B:
                s = sizing.session_state(config, width, height, kv_dtype=kv_dtype, tp=tp)
                per_session = cond["y"] + cond["context"] + rows
                rank0 = s.per_rank_checkpoint_bytes + per_session
                cases.append(
                    {
                        "size": f"{width}x{height}",
                        "kv_dtype": kv_dtype,
                        "tp": tp,
                        "frame_tokens": s.frame_tokens,
                        "dit_memory_bytes_per_rank": s.per_rank_checkpoint_bytes,
                        "dit_memory_bytes_all_ranks": s.checkpoint_cache_bytes,
                        "conditioning_y_bytes": cond["y"],
                        "conditioning_context_bytes": cond["context"],
                        "audio_rows_max_bytes": rows,
                        "rank0_bytes": rank0,  # its K/V share + the per-session parts
                        "total_bytes": s.checkpoint_cache_bytes + per_session,
                        "redis_parts_per_rank0": math.ceil(rank0 / DEFAULT_PART_BYTES),
                    }
                )
    decoder = {
        f"{w}x{h}": decoder_state_estimate(config.vae, config, w, h) for w, h in SIZES_18B
    }  # fmt: skip
    w0, h0 = SIZES_18B[0]
    m, mem, sc = config.model, config.memory, config.sampler
    return {
        "computed": True,
        "model_dtype": MODEL_DTYPE_18B,
        "persistent_slots": mem.persistent_slots,
        "total_slots": mem.total_slots,
        "caches": sc.num_steps + len(sc.cfg_steps()),  # one per denoising step (+ null-audio steps with CFG)
        "layers": m.num_layers,
        "kv_width": m.dim,
        "fp8_scale_bytes_per_token_head": sizing.SCALE_BYTES,
        "audio_rows_max": ROWS_KEPT,
        "audio_row_bytes": audio_row_bytes(config),
        "redis_part_bytes": DEFAULT_PART_BYTES,
        "cases": cases,
        "included": "dit_memory (K/V of the persistent slots, per rank), conditioning y + context (once), "
        f"audio rows (upper bound: {ROWS_KEPT} rows, once)",
        "not_included": "the decoder stream's VAE cache (see decoder_stream_state_estimate_bytes: GB-scale for "
        "wan2.1 with the current streaming decoder, an open design problem), the audio encoder stream's state "
        "(wav2vec2 PCM history, about 0.1 MB), the RNG state and counters (a few KB)",
        "decoder_stream_state_included": False,
        "decoder_stream_state_estimate_bytes": decoder,
        "decoder_stream_state_dtype": TORCH_DTYPE_NAMES[DECODER_STATE_DTYPE],
        "decoder_stream_state_bytes_per_output_pixel": round(decoder[f"{w0}x{h0}"] / (w0 * h0), 1),
        "decoder_stream_state_how": "wan2.1 StreamingDecoder on the meta device after chunks 0 and 1 (tensor bytes)",
        "decoder_context_alternative_bytes": {
            f"{w}x{h}": sizing.session_state(config, w, h).decoder_context_bytes for w, h in SIZES_18B
        },  # the public decode_with_context keeps only the last 3 clean latents (bf16)
        "note": "sizing's conditioning_bytes counts the raw text/CLIP encoder outputs; a checkpoint stores the "
        "embedded context ((clip_tokens + text_len) x dim), which is what is counted here",
    }


# -- sessions ----------------------------------------------------------------------------------------


def checkpoint_figures(config: LiveActConfig, width: int, height: int, checkpoint: Checkpoint, store: dict) -> dict:
    shard = checkpoint.shards[0]
    measured = part_bytes(shard)
    kv = shard[f"{MEMORY_PREFIX}step0.layer0.k"]
    kv_dtype = TORCH_DTYPE_NAMES[kv.dtype]
    model_dtype = shard[DIT + COND_Y].dtype
    cond = conditioning_bytes(config, width, height, model_dtype.itemsize)
    computed = {
        "dit_memory": sizing.session_state(config, width, height, kv_dtype=kv_dtype).checkpoint_cache_bytes,
        "conditioning": cond["y"] + cond["context"],
        "decoder_state_estimate": decoder_state_estimate(config.vae, config, width, height),
    }
    rows = shard[AUDIO_ROWS]
    return {
        "source": "newest checkpoint of the killed real-time session (see resume), read back from Redis",
        "version": checkpoint.version,
        "chunk_index": checkpoint.meta.chunk_index,
        "next_frame": checkpoint.meta.next_frame,
        "kv_dtype": kv_dtype,
        "model_dtype": TORCH_DTYPE_NAMES.get(model_dtype, str(model_dtype)),
        "bytes": measured,
        "tensors": len(shard),
        "audio_rows": int(rows.shape[0]) if rows.dim() == 3 else 0,
        "has_encoder_state": shard[ENCODER_STATE].numel() > 0,
        "has_null_audio": DIT + COND_NULL_AUDIO in shard,
        "computed": computed,
        "computed_matches_measured": {
            "dit_memory": computed["dit_memory"] == measured["dit_memory"],
            "conditioning": computed["conditioning"] == nbytes(shard[DIT + COND_Y]) + nbytes(shard[DIT + COND_CONTEXT]),
        },
        **store,
    }


# -- throughput --------------------------------------------------------------------------------------
