"""Typed, frozen configuration for LiveAct and the registry of named presets.

Three groups, each a frozen dataclass:

* ``ModelConfig``   - the DiT's sizes (what the checkpoint's tensor shapes depend on).
* ``MemoryConfig``  - the ConvKV cache layout and chunking (slots, compression groups).
* ``SamplerConfig`` - the denoising schedule of the chunked autoregressive loop.

Every size used by model, memory or sampler code comes from here; nothing else holds a literal.
``LiveActConfig`` bundles the three and is what presets and checkpoints name.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "PRESETS",
    "RESOLUTIONS",
    "ConfigError",
    "LiveActConfig",
    "MemoryConfig",
    "ModelConfig",
    "SamplerConfig",
    "build_section",
    "get_preset",
    "preset_names",
]


class ConfigError(ValueError):
    """A configuration that the code cannot express; the message says what to change."""


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the causal audio DiT (Wan2.1-I2V layout + audio cross-attention + ConvKV)."""

    dim: int = 5120
    num_heads: int = 40
    ffn_dim: int = 13824
    num_layers: int = 40
    freq_dim: int = 256  # timestep sinusoid width
    in_dim: int = 36  # 16 noisy latent channels + 20 conditioning channels (4 mask + 16 latent)
    out_dim: int = 16
    latent_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True
    text_len: int = 512
    text_dim: int = 4096
    clip_tokens: int = 257
    clip_dim: int = 1280
    clip_norm_eps: float = 1e-5  # img_emb LayerNorms use torch's default eps
    # audio projection (AudioProjModel) and audio cross-attention
    audio_window: int = 5  # taps per video frame (-2..+2)
    vae_scale: int = 4  # video frames per latent frame (after the first)
    audio_layers: int = 12  # wav2vec2 hidden_states[1:] stacked
    audio_channels: int = 768
    audio_intermediate_dim: int = 512
    audio_output_dim: int = 768
    audio_context_tokens: int = 32
    audio_norm_eps: float = 1e-5
    norm_input_visual: bool = True
    norm_output_audio: bool = True
    # 3-D RoPE
    rope_theta: float = 10000.0
    rope_table_len: int = 1024

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ConfigError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even for RoPE")
        if self.in_dim != self.latent_channels + 4 + self.latent_channels:
            raise ConfigError(
                f"in_dim={self.in_dim} must equal latent_channels (noise) + 4 (mask) + "
                f"latent_channels (image latent) = {2 * self.latent_channels + 4}"
            )
        if self.audio_window % 2 == 0:
            raise ConfigError(f"audio_window={self.audio_window} must be odd (centred taps)")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def audio_seq_len_vf(self) -> int:
        """Taps per later-latent-frame group: first frame's lower half, middles' centre, last's upper half."""
        return self.audio_window + self.vae_scale - 1

    @property
    def rope_split(self) -> tuple[int, int, int]:
        """Complex pairs per head for (time, row, col), as Wan splits head_dim."""
        half = self.head_dim // 2
        hw = half // 3
        return (half - 2 * hw, hw, hw)

    @property
    def cond_channels(self) -> int:
        """Channels of the conditioning ``y``: 4 mask channels + the image latent."""
        return self.in_dim - self.latent_channels

    @property
    def patch_out(self) -> int:
        pt, ph, pw = self.patch_size
        return pt * ph * pw * self.out_dim


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------

CompressorKind = Literal["conv", "mean", "none"]


@dataclass(frozen=True)
class MemoryConfig:
    """ConvKV cache layout, in latent-frame slots (each slot holds one frame's tokens).

    After the end-of-chunk update the persistent part is ``sink | compressed | recent``;
    the current chunk is written behind it. With the defaults: 2 + 2 + 2 persistent slots,
    chunk 0 of 6 frames fills the persistent part, later chunks of 8 frames fill slots 6-13.

    Update rule (run before a chunk writes, once the previous chunk sat in the chunk slots):
    compressed slot j <- C(``compress_group`` consecutive slots starting at ``sink + j*group``),
    recent slots <- the last ``recent_slots`` slots. C maps ``group`` slots of tokens to one slot.

    ``compressor``: "conv" (the learned depthwise kernels), "mean" (the public ``--mean_memory``), or
    "none": the sliding-window ablation with no compressed memory, in which a chunk that would find
    compressed memory in the compressed slots does not attend to them (sink + recent + itself only).
    """

    sink_slots: int = 2
    compressed_slots: int = 2
    recent_slots: int = 2
    compress_group: int = 5  # slots folded into one compressed slot (depthwise conv kernel = stride)
    first_chunk_frames: int = 6
    chunk_frames: int = 8
    compressor: CompressorKind = "conv"
    # Quirk of the public implementation: V is compressed with memory_proj_k's weights.
    compress_v_with_k: bool = True
    # Quirk of the public implementation: the conv runs over the flattened raster token sequence
    # (5 consecutive tokens -> 1), not per spatial position over time. Only "raster" is implemented
    # for the published weights; the flag documents the choice and guards against silent change.
    compress_order: Literal["raster"] = "raster"
    fp8: bool = False  # store K/V as float8 e4m3 with one fp32 scale per (token, head)

    def __post_init__(self) -> None:
        if self.first_chunk_frames != self.persistent_slots:
            raise ConfigError(
                f"first_chunk_frames={self.first_chunk_frames} must equal the persistent slots "
                f"(sink+compressed+recent = {self.persistent_slots}): chunk 0 fills them"
            )
        consumed = self.compressed_slots * self.compress_group + self.recent_slots
        available = (self.persistent_slots - self.sink_slots) + self.chunk_frames
        if consumed != available:
            raise ConfigError(
                f"update rule does not tile: compressed_slots*compress_group + recent_slots = {consumed}"
                f" but slots after the sink = {available}"
            )
        if self.compressor not in ("conv", "mean", "none"):
            raise ConfigError(f"compressor must be 'conv', 'mean' or 'none', got {self.compressor!r}")

    @property
    def persistent_slots(self) -> int:
        return self.sink_slots + self.compressed_slots + self.recent_slots

    @property
    def total_slots(self) -> int:
        return self.persistent_slots + self.chunk_frames

    @property
    def window_latent_frames(self) -> int:
        """Latent frames of one conditioning / audio window (chunk 0 uses the first, later chunks the rest)."""
        return self.first_chunk_frames + self.chunk_frames

    def chunk_latent_frames(self, chunk_index: int) -> int:
        return self.first_chunk_frames if chunk_index == 0 else self.chunk_frames

    def query_slot_start(self, chunk_index: int) -> int:
        return 0 if chunk_index == 0 else self.persistent_slots

    def unattended_slots(self, chunk_index: int) -> tuple[int, int] | None:
        """Slots [a, b) chunk ``chunk_index`` does not attend to: the compressed slots under compressor
        "none" once they would hold compressed memory (from chunk 2 on); None: it attends to all."""
        if self.compressor != "none" or chunk_index < 2:
            return None
        return self.sink_slots, self.sink_slots + self.compressed_slots


# ---------------------------------------------------------------------------------------------
# sampler
# ---------------------------------------------------------------------------------------------

SamplerKind = Literal["x0_renoise", "euler"]
ContextKind = Literal["neighbor", "clean"]


@dataclass(frozen=True)
class SamplerConfig:
    """The 3-step distilled schedule. Timesteps are in units of ``num_train_timesteps``.

    ``context``: what a chunk's steps attend to from earlier chunks. "neighbor" (LiveAct): each step
    has its own cache, holding the earlier chunks' K/V at that step's noise level. "clean" (the
    sample-level ablation, as Teacher or Self Forcing condition): one cache for all steps, holding the
    earlier chunks' *clean* K/V, written by one extra forward of each generated chunk at t = 0.
    """

    timesteps: tuple[float, ...] = (1000.0, 937.5, 833.3333333333334)
    num_train_timesteps: float = 1000.0
    kind: SamplerKind = "x0_renoise"
    audio_cfg: float = 1.0  # 1.0 = off; > 1 runs a null-audio forward with its own caches
    skip_audio_steps: tuple[int, ...] = (0,)  # audio cross-attention is skipped at these steps
    context: ContextKind = "neighbor"

    def __post_init__(self) -> None:
        if not self.timesteps:
            raise ConfigError("timesteps must not be empty")
        if any(b >= a for a, b in itertools.pairwise(self.timesteps)):
            raise ConfigError(f"timesteps must decrease strictly, got {self.timesteps}")
        if self.kind not in ("x0_renoise", "euler"):
            raise ConfigError(f"sampler kind must be 'x0_renoise' or 'euler', got {self.kind!r}")
        if self.audio_cfg < 1.0:
            raise ConfigError(f"audio_cfg={self.audio_cfg} must be >= 1 (1 disables it)")
        if self.context not in ("neighbor", "clean"):
            raise ConfigError(f"sampler context must be 'neighbor' or 'clean', got {self.context!r}")
        if self.context == "clean" and self.audio_cfg != 1.0:
            raise ConfigError("audio CFG needs per-step null caches: use context 'neighbor' with audio_cfg > 1")

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def cache_steps(self) -> int:
        """Caches per layer: one per step for "neighbor" context, one shared for "clean"."""
        return self.num_steps if self.context == "neighbor" else 1

    def cfg_steps(self) -> tuple[int, ...]:
        """Steps that run a second, null-audio forward (none when CFG is off)."""
        if self.audio_cfg == 1.0:
            return ()
        return tuple(i for i in range(self.num_steps) if i not in self.skip_audio_steps)


# ---------------------------------------------------------------------------------------------
# bundle and presets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveActConfig:
    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    vae: str = "wan2.1"  # a liveact.vae preset; its temporal stride must equal model.vae_scale
    width: int = 416  # default session frame size in pixels (the public --size W*H)
    height: int = 720

    def __post_init__(self) -> None:
        _, ph, pw = self.model.patch_size
        for name, value, unit in (("width", self.width, 8 * pw), ("height", self.height, 8 * ph)):
            if value <= 0 or value % unit:
                raise ConfigError(f"{name}={value} must be a positive multiple of {unit} (VAE stride x patch)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiveActConfig:
        top = {k: v for k, v in data.items() if k not in ("model", "memory", "sampler")}
        return build_section(
            cls,
            {
                **top,
                "model": build_section(ModelConfig, data.get("model", {}), "model"),
                "memory": build_section(MemoryConfig, data.get("memory", {}), "memory"),
                "sampler": build_section(SamplerConfig, data.get("sampler", {}), "sampler"),
            },
            "top-level",
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LiveActConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def build_section(kind: type, values: dict[str, Any], section: str) -> Any:
    """Construct a config dataclass, refusing unknown keys by name."""
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown {section} config keys {unknown}; known keys: {sorted(names)}")
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return kind(**converted)


_LIVEACT_18B = LiveActConfig(name="liveact-18b")

# Small enough that a 64x64 stream (4x4 tokens per latent frame) runs far above 20 fps on 2 CPU
# cores with the tiny VAE (the DiT alone does ~300 fps at 128x128); the weights for it are trained
# by the project (see the built-in-model issue).
_TINY = LiveActConfig(
    name="tiny",
    vae="tiny",
    width=64,
    height=64,
    model=ModelConfig(
        dim=128,
        num_heads=4,
        ffn_dim=384,
        num_layers=4,
        freq_dim=64,
        text_len=16,
        text_dim=32,
        clip_dim=64,
        audio_layers=4,
        audio_channels=32,
        audio_intermediate_dim=64,
        audio_output_dim=64,
        audio_context_tokens=8,
    ),
)

RESOLUTIONS = ((416, 720), (512, 512))  # liveact-18b: width x height, as the public --size flag takes them

PRESETS: dict[str, LiveActConfig] = {c.name: c for c in (_LIVEACT_18B, _TINY)}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> LiveActConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {preset_names()}") from None
