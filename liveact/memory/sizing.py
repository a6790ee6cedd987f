"""Per-session state sizes computed from the config (no tensors allocated).

Two numbers matter per session: the *resident* cache (all slots, every step, held in device memory
while the session runs) and the *checkpoint* (persistent slots only, after an eager update), both
split across tensor-parallel ranks by heads. Plus the small per-session extras a checkpoint carries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from liveact.config import LiveActConfig

BYTES = {"fp32": 4, "bf16": 2, "fp8": 1}
SCALE_BYTES = 4  # one float32 scale per (token, head) for fp8


@dataclass(frozen=True)
class StateSize:
    kv_dtype: str
    pixel_w: int
    pixel_h: int
    tp: int
    frame_tokens: int
    resident_cache_bytes: int  # all slots, all steps (incl. CFG null caches), whole session
    checkpoint_cache_bytes: int  # persistent slots only
    per_rank_resident_bytes: int
    per_rank_checkpoint_bytes: int
    conditioning_bytes: int  # y + the cross-attention context (CLIP + text tokens at model dim), bf16, as checkpointed
    decoder_context_bytes: int  # last clean latents kept for the VAE (bf16)

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


def frame_tokens(config: LiveActConfig, pixel_h: int, pixel_w: int, vae_stride: int = 8) -> int:
    _, ph, pw = config.model.patch_size
    return (pixel_h // vae_stride // ph) * (pixel_w // vae_stride // pw)


def session_state(
    config: LiveActConfig,
    pixel_w: int,
    pixel_h: int,
    kv_dtype: str = "bf16",
    tp: int = 1,
    vae_stride: int = 8,
    decoder_context_latents: int = 3,
) -> StateSize:
    m, mem, sc = config.model, config.memory, config.sampler
    if m.num_heads % tp:
        raise ValueError(f"tp={tp} does not divide num_heads={m.num_heads}")
    fl = frame_tokens(config, pixel_h, pixel_w, vae_stride)
    per_token = m.dim * BYTES[kv_dtype] + (m.num_heads * SCALE_BYTES if kv_dtype == "fp8" else 0)
    caches = (sc.num_steps + len(sc.cfg_steps())) * m.num_layers * 2  # K and V
    resident = caches * mem.total_slots * fl * per_token
    checkpoint = caches * mem.persistent_slots * fl * per_token
    lh, lw = pixel_h // vae_stride, pixel_w // vae_stride
    bf16 = BYTES["bf16"]
    # what a checkpoint stores: y and the projected context (LiveActDiT.encode_context), not the raw
    # CLIP / umT5 outputs, so a resumed session never re-runs the encoders
    cond = (m.cond_channels * mem.window_latent_frames * lh * lw + (m.clip_tokens + m.text_len) * m.dim) * bf16
    return StateSize(
        kv_dtype=kv_dtype,
        pixel_w=pixel_w,
        pixel_h=pixel_h,
        tp=tp,
        frame_tokens=fl,
        resident_cache_bytes=resident,
        checkpoint_cache_bytes=checkpoint,
        per_rank_resident_bytes=resident // tp,
        per_rank_checkpoint_bytes=checkpoint // tp,
        conditioning_bytes=cond,
        decoder_context_bytes=m.latent_channels * decoder_context_latents * lh * lw * bf16,
    )
