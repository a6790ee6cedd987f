"""FLOPs of one chunk through the real sampler loop, computed from the config alone.

What is counted is what ``torch.utils.flop_counter.FlopCounterMode`` counts, so the two can be compared:
2*M*N*K per matrix product (every ``nn.Linear``; the patch-embedding Conv3d, a matmul over patches;
the ConvKV depthwise Conv1d, 2 * channels * input tokens) and the attention products QK^T and PV
(2*S*T*D each, per head). Elementwise work is not counted: norms, RoPE, softmax, GELU/SiLU, the adaLN
modulation, the sampler update, FP8 (de)quantisation. Biases are not counted either.

Legend: B batch, F latent frames of the chunk, fl tokens per latent frame, S = F*fl query tokens,
T = key_frames*fl self-attention keys, C model dim, N_a audio tokens per latent frame, C_a their
width, L_txt text tokens, L_img CLIP tokens, I audio-projection width, G later audio groups.

One chunk (``StreamingSampler.next_chunk``) is:

* ``project_audio`` over the whole audio window (once per chunk);
* per denoising step one ``LiveActDiT.forward`` against that step's cache, plus a null-audio forward
  at the audio-CFG steps. A forward: patch embedding, time embedding, ``num_layers`` blocks, head.
  A block: self-attention (q, k, v, o; the ConvKV update rule's depthwise convs once the chunk slots
  hold a previous chunk; QK^T and PV against the chunk's keys), image+text cross-attention (k, v of
  the 257 CLIP and 512 text tokens are recomputed every forward, as the code does), audio
  cross-attention unless the step skips it (each latent frame's fl queries against its N_a audio
  tokens), and the FFN.

The per-session ``encode_context`` (text and CLIP embeddings) is not part of a chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from liveact.config import LiveActConfig

# Chunk 0 writes the persistent slots and chunk 1 the chunk slots; from this chunk on, every forward
# first folds the previous chunk into the persistent part (``LayerKV.needs_update``).
FIRST_COMPACTING_CHUNK = 2
QK_AND_PV = 2  # the two attention products, QK^T and PV
MULTIPLY_ADD = 2  # FLOPs per multiply-accumulate
K_AND_V = 2  # keys and values: compressed alike, projected alike (k/v, k_img/v_img, kv_linear's [K | V])
QKVO = 4  # self-attention projections on the chunk's tokens: q, k, v, o
Q_AND_O = 2  # a cross-attention's projections on the chunk's tokens: q and o (audio: q_linear and proj)
ADALN_ROWS = 6  # time_projection: shift, scale, gate for attention and for the FFN


# ---------------------------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------------------------


def vae_spatial_stride(config: LiveActConfig) -> int:
    """Pixels per latent cell along H and W, from the config's VAE preset."""
    from liveact.vae.config import get_vae_preset  # the VAE package imports diffusers: only when needed

    return get_vae_preset(config.vae).spatial_stride


def latent_grid(config: LiveActConfig, width: int, height: int) -> tuple[int, int]:
    """(H, W) latent cells of a width x height pixel frame."""
    stride = vae_spatial_stride(config)
    for name, value in (("width", width), ("height", height)):
        if value <= 0 or value % stride:
            raise ValueError(f"{name}={value} must be a positive multiple of the VAE stride {stride}")
    return height // stride, width // stride


def token_grid(config: LiveActConfig, width: int, height: int) -> tuple[int, int]:
    """(rows, cols) tokens per latent frame after the patch embedding."""
    lat_h, lat_w = latent_grid(config, width, height)
    _, ph, pw = config.model.patch_size
    if lat_h % ph or lat_w % pw:
        raise ValueError(f"latent grid {lat_h}x{lat_w} of {width}x{height} is not divisible by the patch {ph}x{pw}")
    return lat_h // ph, lat_w // pw


def frame_tokens(config: LiveActConfig, width: int, height: int) -> int:
    """fl: tokens per latent frame (1170 at 416x720, 1024 at 512x512 for liveact-18b)."""
    rows, cols = token_grid(config, width, height)
    return rows * cols


def compacts(chunk_index: int) -> bool:
    """Whether this chunk's forwards run the ConvKV update rule before writing."""
    return chunk_index >= FIRST_COMPACTING_CHUNK


# ---------------------------------------------------------------------------------------------
# primitives
# ---------------------------------------------------------------------------------------------


def linear(tokens: int, fan_in: int, fan_out: int) -> int:
    """(tokens, fan_in) @ (fan_in, fan_out)."""
    return MULTIPLY_ADD * tokens * fan_in * fan_out


def attention(queries: int, keys: int, channels: int) -> int:
    """QK^T and PV of ``queries`` against ``keys`` over all heads (heads * head_dim = channels)."""
    return QK_AND_PV * MULTIPLY_ADD * queries * keys * channels


# ---------------------------------------------------------------------------------------------
# one forward, one chunk
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardFlops:
    """One ``LiveActDiT.forward``: FLOPs per component, summed over the layers."""

    step: int
    audio: bool  # audio cross-attention ran (False at ``skip_audio_steps``)
    null: bool  # the null-audio forward of an audio-CFG step
    components: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.components.values())


@dataclass(frozen=True)
class ChunkFlops:
    """Every FLOP of one ``StreamingSampler.next_chunk`` (batch ``batch``)."""

    chunk_index: int
    batch: int
    frame_tokens: int  # fl
    query_tokens: int  # S = F*fl per forward
    key_tokens: int  # T = key_frames*fl self-attention keys
    compacts: bool  # the forwards ran the ConvKV update rule
    audio_proj: int
    forwards: list[ForwardFlops] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.audio_proj + sum(f.total for f in self.forwards)

    def components(self) -> dict[str, int]:
        """FLOPs per component summed over the chunk's forwards (plus ``audio_proj``)."""
        out = {"audio_proj": self.audio_proj}
        for fwd in self.forwards:
            for name, value in fwd.components.items():
                out[name] = out.get(name, 0) + value
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "chunk_index": self.chunk_index,
            "frame_tokens": self.frame_tokens,
            "query_tokens": self.query_tokens,
            "key_tokens": self.key_tokens,
            "compacts": self.compacts,
            "forwards": len(self.forwards),
            "total": self.total,
            "components": self.components(),
        }


def forward_flops(
    config: LiveActConfig,
    fl: int,
    chunk_index: int,
    audio: bool,
    step: int = 0,
    null: bool = False,
    batch: int = 1,
    compacting: bool = True,
) -> ForwardFlops:
    """One DiT forward of chunk ``chunk_index`` at fl tokens per latent frame.

    ``compacting``: whether this forward's cache runs the update rule (each step's own cache does; a
    cache shared by several forwards, as with the "clean" sampler context, only on the first).
    """
    m, mem = config.model, config.memory
    c = m.dim
    pt, ph, pw = m.patch_size
    frames = mem.chunk_latent_frames(chunk_index) // pt  # token frames of the chunk (= latent frames)
    s = frames * fl  # query tokens
    t = (mem.query_slot_start(chunk_index) + frames) * fl  # keys: the cache up to the chunk's last slot
    skip = mem.unattended_slots(chunk_index)
    if skip is not None:  # the sliding-window ablation leaves the compressed slots out
        t -= (skip[1] - skip[0]) * fl

    # self-attention: q, k, v, o (B, S, C) -> (B, S, C); QK^T (S x T) and PV per head
    self_proj = QKVO * linear(s, c, c)
    self_scores = attention(s, t, c)
    compress = 0
    if compacting and compacts(chunk_index) and mem.compressor == "conv":
        # per compressed slot, K and V: depthwise conv of group*fl tokens, one MAC per input token and channel
        compress = mem.compressed_slots * K_AND_V * MULTIPLY_ADD * c * mem.compress_group * fl
    # image + text cross-attention: q, o on the chunk; k, v and k_img, v_img on the context tokens
    cross_proj = Q_AND_O * linear(s, c, c) + K_AND_V * (linear(m.text_len, c, c) + linear(m.clip_tokens, c, c))
    cross_scores = attention(s, m.text_len, c) + attention(s, m.clip_tokens, c)
    # audio cross-attention: q_linear, proj on the chunk; kv_linear (F*N_a, C_a) -> (F*N_a, 2C);
    # each latent frame's fl queries against its N_a tokens: F * attention(fl, N_a) = attention(S, N_a)
    audio_proj = audio_scores = 0
    if audio:
        audio_kv = linear(frames * m.audio_context_tokens, m.audio_output_dim, K_AND_V * c)
        audio_proj = Q_AND_O * linear(s, c, c) + audio_kv
        audio_scores = attention(s, m.audio_context_tokens, c)
    ffn = linear(s, c, m.ffn_dim) + linear(s, m.ffn_dim, c)

    layers = m.num_layers
    components = {
        # (B, in_dim, F, H, W) -> (B, C, F/pt, H/ph, W/pw): one (in_dim*pt*ph*pw -> C) product per token
        "patch_embedding": linear(s, m.in_dim * pt * ph * pw, c),
        # sinusoid (B, freq_dim) -> (B, C) -> (B, C) -> (B, 6C), once per forward (B rows; the batch multiplies below)
        "time_embedding": linear(1, m.freq_dim, c) + linear(1, c, c) + linear(1, c, ADALN_ROWS * c),
        "self_attn.proj": layers * self_proj,
        "self_attn.attention": layers * self_scores,
        "self_attn.convkv_compress": layers * compress,
        "cross_attn.proj": layers * cross_proj,
        "cross_attn.attention": layers * cross_scores,
        "audio_cross_attn.proj": layers * audio_proj,
        "audio_cross_attn.attention": layers * audio_scores,
        "ffn": layers * ffn,
        # (B, S, C) -> (B, S, pt*ph*pw*Cz)
        "head": linear(s, c, m.patch_out),
    }
    return ForwardFlops(step=step, audio=audio, null=null, components={k: batch * v for k, v in components.items()})


def audio_proj_flops(config: LiveActConfig, batch: int = 1) -> int:
    """``project_audio`` over one window: latent frame 0 from W taps, G later groups from W+vae_scale-1 taps."""
    m = config.model
    per_tap = m.audio_layers * m.audio_channels
    groups = config.memory.window_latent_frames - 1  # G
    rows = 1 + groups
    flops = (
        linear(1, m.audio_window * per_tap, m.audio_intermediate_dim)  # proj1: (B, 1, W*L*Ca) -> (B, 1, I)
        + linear(groups, m.audio_seq_len_vf * per_tap, m.audio_intermediate_dim)  # proj1_vf: (B, G, .) -> (B, G, I)
        + linear(rows, m.audio_intermediate_dim, m.audio_intermediate_dim)  # proj2: (B, 1+G, I)
        + linear(rows, m.audio_intermediate_dim, m.audio_context_tokens * m.audio_output_dim)  # proj3
    )
    return batch * flops


def chunk_flops_at(config: LiveActConfig, fl: int, chunk_index: int, batch: int = 1) -> ChunkFlops:
    """Every FLOP of chunk ``chunk_index`` at fl tokens per latent frame."""
    m, mem, sc = config.model, config.memory, config.sampler
    frames = mem.chunk_latent_frames(chunk_index) // m.patch_size[0]
    cfg_steps = sc.cfg_steps()
    forwards = []
    shared = sc.context == "clean"  # one cache for every forward: it compacts on the first only
    for step in range(sc.num_steps):
        audio = step not in sc.skip_audio_steps
        compacting = not shared or step == 0
        forwards.append(forward_flops(config, fl, chunk_index, audio, step, batch=batch, compacting=compacting))
        if step in cfg_steps:  # the null-audio forward attends to null tokens: audio cross-attention runs
            forwards.append(forward_flops(config, fl, chunk_index, True, step, null=True, batch=batch))
    if shared:  # the clean re-encoding forward at t = 0, with audio
        forwards.append(forward_flops(config, fl, chunk_index, True, sc.num_steps, batch=batch, compacting=False))
    return ChunkFlops(
        chunk_index=chunk_index,
        batch=batch,
        frame_tokens=fl,
        query_tokens=frames * fl,
        key_tokens=(mem.query_slot_start(chunk_index) + frames) * fl,
        compacts=compacts(chunk_index),
        audio_proj=audio_proj_flops(config, batch),
        forwards=forwards,
    )


def chunk_flops(config: LiveActConfig, width: int, height: int, chunk_index: int, batch: int = 1) -> ChunkFlops:
    """Every FLOP of chunk ``chunk_index`` of a width x height (pixels) stream."""
    if chunk_index < 0:
        raise ValueError(f"chunk index must be >= 0, got {chunk_index}")
    return chunk_flops_at(config, frame_tokens(config, width, height), chunk_index, batch)


def steady_chunk_flops(config: LiveActConfig, width: int, height: int, batch: int = 1) -> ChunkFlops:
    """A chunk past the warm-up: full cache, update rule running (every chunk from the third on costs this)."""
    return chunk_flops(config, width, height, FIRST_COMPACTING_CHUNK, batch)
