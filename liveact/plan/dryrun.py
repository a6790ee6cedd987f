"""The dry run: one session of the real serving code at real size, on the meta device, bytes counted.

What a generator's rank 0 holds and runs, in order, each step the code the generator runs:

1. **weights**: the DiT (its tensor-parallel shard: ``shard_dit``) in the runtime dtype, and what
   ``load_engine`` puts beside it on rank 0: the VAE, the umT5 and CLIP encoders, the wav2vec2 model.
2. **conditioning**: ``encode_condition`` (the VAE encodes the reference + black frames), the umT5
   encoder over a full-length prompt, ``ClipImageEncoder.encode``, ``encode_context``; then the
   ``StreamingSampler`` allocates the session's ConvKV caches (resident from here on).
3. **chunk 0**, **chunk 1** and **chunk 2** through ``StreamingSampler.next_chunk`` (3 denoising steps,
   the cache update and its compression first running in chunk 2; FP8 storage when the cache is FP8).
4. **snapshot**: ``export_sampler``, the checkpoint's copy in the DiT thread (host bytes = the
   checkpoint of this rank).

The decoder is its own pod: ``dry_run_decoder`` decodes a first and a steady chunk with the VAE.

Meta tensors hold no data, so nothing data-dependent can run: the text encoder is fed a
full-length prompt's token ids directly (its tokenizer is host code), the noise source allocates what
``torch.randn`` would (no generator exists on meta) and SDPA runs the fused kernel a GPU picks
(``kernels.FusedAttention``). Everything else is the code the generator runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from diffusers import AutoencoderKLWan
from torch import nn
from transformers import CLIPVisionModel, Wav2Vec2Config, Wav2Vec2Model

from liveact.audio import AudioConfig
from liveact.conditioning import EncoderPair, build_encoders
from liveact.conditioning.image import ClipImageEncoder, ClipVisionSpec, build_clip_vision
from liveact.conditioning.text import UMT5Spec, build_umt5
from liveact.config import LiveActConfig
from liveact.model.dit import LiveActDiT
from liveact.model.flops import latent_grid
from liveact.model.loading import build_model
from liveact.parallel.tp import LocalComm, check_tp, shard_dit
from liveact.pipeline.engine import DTYPES, runtime_config
from liveact.plan.kernels import FusedAttention
from liveact.plan.ledger import DEVICE, HOST, ByteLedger
from liveact.sampling.chunking import total_video_frames, window_video_frames
from liveact.sampling.denoise import Conditioning
from liveact.sampling.noise import SeededNoise
from liveact.sampling.state import export_sampler
from liveact.sampling.stream import StreamingSampler
from liveact.vae import StreamingDecoder, VaeConfig, encode_condition, get_vae_preset
from liveact.vae.loading import build_vae
from liveact.vae.session import DecodeSession

META = torch.device("meta")
KV_CACHES = ("bf16", "fp8")  # the table's: the cache in bf16 (the model's dtype on a GPU) or float8 e4m3
CONDITIONING = "conditioning"
SNAPSHOT = "snapshot"
STEADY_CHUNKS = 3  # chunks 0, 1, 2: chunk 2 is the first that runs the cache update (compression)
TEXT_DTYPE = torch.bfloat16  # build_encoders' defaults: umT5 in bf16, CLIP in float32
IMAGE_DTYPE = torch.float32
AUDIO_DTYPE = torch.float32  # load_backend's default


def chunk_phase(k: int) -> str:
    return f"chunk {k}"


@dataclass(frozen=True)
class PlanCase:
    """One configuration of the generator: what the dry run runs."""

    preset: str = "liveact-18b"
    tp: int = 1
    width: int = 416
    height: int = 720
    kv_cache: str = "bf16"  # the cache's storage: "fp8", or the DiT's dtype
    dtype: str = "bf16"  # the DiT's runtime dtype (pipeline.engine.DTYPES)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} must be one of {sorted(DTYPES)}")
        if self.kv_cache not in ("fp8", self.dtype):
            raise ValueError(f"kv cache {self.kv_cache!r} must be fp8 or the model's dtype {self.dtype}")

    @classmethod
    def serving(cls, preset: str, tp: int, width: int, height: int, kv_cache: str, dtype: str) -> PlanCase:
        """A server's case from its settings: ``kv_cache`` auto / fp8 / model and ``dtype`` bf16 / fp32."""
        fp8 = runtime_config(preset, kv_cache).memory.fp8
        return cls(preset, tp, width, height, "fp8" if fp8 else dtype, dtype)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def config(self) -> LiveActConfig:
        return runtime_config(self.preset, "fp8" if self.kv_cache == "fp8" else "model")


@dataclass(frozen=True)
class PhaseBytes:
    """Device bytes live when a phase began and at its highest."""

    name: str
    start: int
    peak: int

    @property
    def transient(self) -> int:
        return self.peak - self.start


@dataclass(frozen=True)
class RankRun:
    """What the dry run of one case measured on rank 0's device (and host, for the checkpoint)."""

    case: PlanCase
    dit_weights: int  # this rank's DiT shard
    engine_weights: int  # rank 0 only: VAE, umT5, CLIP, wav2vec2
    session_resident: int  # per session, from the conditioning on: caches + conditioning tensors
    cache: int  # the ConvKV caches of one session (part of session_resident)
    phases: tuple[PhaseBytes, ...]
    peak: int  # device bytes at the highest, one session
    checkpoint_host: int  # host bytes of this rank's checkpoint copy
    checkpoint_tensors: tuple[tuple[str, int], ...]  # its tensors: (export_sampler name, bytes)
    ops: int  # aten ops the dry run dispatched

    def phase(self, name: str) -> PhaseBytes:
        return next(p for p in self.phases if p.name == name)

    @property
    def step_transient(self) -> int:
        """The most a chunk (or the snapshot after it) allocates above what is resident."""
        return max(p.transient for p in self.phases if p.name.startswith("chunk") or p.name == SNAPSHOT)

    @property
    def steady_resident(self) -> int:
        """Device bytes held between chunks with one session: weights, the session, cached tables."""
        return self.phase(SNAPSHOT).start

    @property
    def worker_peak(self) -> int:
        """A tensor-parallel worker rank's peak: rank 0's DiT phases without the engine's other models."""
        dit = [p.peak for p in self.phases if p.name != CONDITIONING]
        return max(dit) - self.engine_weights


@dataclass(frozen=True)
class DecoderRun:
    """The decoder pod's device bytes: its VAE and the peak of decoding a chunk."""

    width: int
    height: int
    weights: int
    peak: int


class PlanNoise(SeededNoise):
    """A ``SeededNoise`` whose draws allocate on the meta device: no random generator exists there.

    Its state is a CPU generator's, as a CUDA generator's state is a CPU tensor too.
    """

    def __init__(self, device: torch.device = META, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(0, "cpu", dtype)
        self.device = device

    def draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.empty(shape, device=self.device, dtype=self.dtype)


def build_dit(case: PlanCase) -> LiveActDiT:
    """The DiT on meta in the runtime dtype, sharded for rank 0 as ``shard_dit`` shards it."""
    config = case.config()
    check_tp(config.model, case.tp)
    model = build_model(config, device="meta").to_runtime_dtype(DTYPES[case.dtype]).eval()
    return shard_dit(model, LocalComm(0, case.tp, _no_reduce))


def _no_reduce(t: torch.Tensor) -> None:
    """An all-reduce is in place on the GPU (NCCL): it allocates nothing the plan counts."""


class MetaUMT5:
    """``UMT5TextEncoder.encode`` on meta: the tokenizer is host code, so a prompt filling ``text_len`` is fed
    as its ids; its all-ones mask is one transformers skips (with a data-dependent check meta cannot run)."""

    def __init__(self, model: nn.Module, text_len: int) -> None:
        self.model, self.text_len = model, text_len

    def encode(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        ids = torch.empty(len(prompts), self.text_len, dtype=torch.long, device=META)  # (B, text_len)
        states = self.model(input_ids=ids).last_hidden_state  # (B, text_len, D)
        return list(states)


@dataclass
class MetaEngine:
    """What ``load_engine`` puts on rank 0's device beside the DiT, built on meta in its dtypes."""

    vae: AutoencoderKLWan
    encoders: EncoderPair
    modules: list[nn.Module]  # every module holding weights: the VAE, the encoders, the audio model


def engine_modules(case: PlanCase) -> MetaEngine:
    """The VAE, the conditioning encoders and the audio model: liveact-18b's umT5 (bf16), CLIP (fp32) and
    wav2vec2 (fp32, chinese-wav2vec2-base's sizes); the tiny preset's weight-free encoders and mel features."""
    config = case.config()
    vae = build_vae(get_vae_preset(config.vae), "meta")
    weights: list[nn.Module] = [cast(nn.Module, vae)]
    if AudioConfig.for_model(config.model).backend == "mel":
        return MetaEngine(vae, cast(EncoderPair, build_encoders(case.preset, config.model)), weights)
    umt5: nn.Module = build_umt5(UMT5Spec(), "meta")
    clip_spec = ClipVisionSpec()
    clip: nn.Module = build_clip_vision(clip_spec, "meta")
    with torch.device("meta"):
        audio: nn.Module = Wav2Vec2Model(Wav2Vec2Config())
    weights += [umt5.to(TEXT_DTYPE), clip.to(IMAGE_DTYPE), audio.to(AUDIO_DTYPE).eval()]
    pair = EncoderPair(MetaUMT5(umt5, config.model.text_len), ClipImageEncoder(cast(CLIPVisionModel, clip), clip_spec))
    return MetaEngine(vae, pair, weights)


def dry_run(case: PlanCase) -> RankRun:
    """Run one session of ``case`` on rank 0's device, counting bytes (see the module docstring)."""
    config = case.config()
    vae_cfg = get_vae_preset(config.vae)
    model = build_dit(case)
    engine = engine_modules(case)
    ledger = ByteLedger()
    with FusedAttention(), ledger, torch.no_grad():
        dit_weights = ledger.track_module(model)
        engine_weights = sum(ledger.track_module(m) for m in engine.modules)
        before = ledger.live[DEVICE]
        with ledger.phase(CONDITIONING):
            cond = _conditioning(config, vae_cfg, case, model, engine)
        with ledger.phase("caches"):
            sampler = StreamingSampler(model, cond, PlanNoise())
        session_resident = ledger.live[DEVICE] - before  # caches + conditioning tensors
        features = _feature_window(config)  # (1, Fv, W, L, Ca) on the host, as the encoder link delivers it
        for k in range(STEADY_CHUNKS):
            with ledger.phase(chunk_phase(k)):
                sampler.next_chunk(features)
        host_before = ledger.live[HOST]
        with ledger.phase(SNAPSHOT):
            state = export_sampler(sampler)
            checkpoint_host = ledger.live[HOST] - host_before
        tensors = tuple((name, t.nbytes) for name, t in sorted(state.items()))
        del state
        peak = ledger.peak[DEVICE]
    return RankRun(
        case=case,
        dit_weights=dit_weights,
        engine_weights=engine_weights,
        session_resident=session_resident,
        cache=sampler.memory.nbytes(),
        phases=tuple(PhaseBytes(p.name, p.start[DEVICE], p.peak[DEVICE]) for p in ledger.phases),
        peak=peak,
        checkpoint_host=checkpoint_host,
        checkpoint_tensors=tensors,
        ops=ledger.ops,
    )


def _conditioning(
    config: LiveActConfig, vae_cfg: VaeConfig, case: PlanCase, model: LiveActDiT, engine: MetaEngine
) -> Conditioning:
    """``prepare_sampler`` on meta: the reference (1, 3, H, W) as ``to_model_tensor`` gives it."""
    ref = torch.empty(1, 3, case.height, case.width, device=META)
    y = encode_condition(engine.vae, vae_cfg, ref, window_video_frames(config))
    text = engine.encoders.encode_text([""])
    clip = engine.encoders.encode_image(ref)
    context = model.encode_context([t.to(META) for t in text], clip.to(META))
    return Conditioning(y=y.to(model.dtype), context=context)


def _feature_window(config: LiveActConfig) -> torch.Tensor:
    m = config.model
    frames = window_video_frames(config)
    return torch.zeros(1, frames, m.audio_window, m.audio_layers, m.audio_channels)


def dry_run_decoder(preset: str, width: int, height: int) -> DecoderRun:
    """The decoder pod: its VAE, and a first and a steady chunk decoded in ``context`` mode."""
    config = runtime_config(preset)
    vae_cfg = get_vae_preset(config.vae)
    vae = build_vae(vae_cfg, "meta")
    ledger = ByteLedger()
    with ledger, torch.no_grad():
        weights = ledger.track_module(cast(nn.Module, vae))
        session = DecodeSession(StreamingDecoder(vae, vae_cfg), "context", width, height)
        _, cz, h, w = session.latent_shape
        for k in range(2):
            frames = config.memory.chunk_latent_frames(k)
            session.decode(torch.empty(1, cz, frames, h, w, device=META))
        peak = ledger.peak[DEVICE]
    return DecoderRun(width=width, height=height, weights=weights, peak=peak)


def dry_run_dit(case: PlanCase, chunks: int = STEADY_CHUNKS) -> int:
    """The device peak of ``liveact bench gpu``'s session on meta: the DiT (rank 0's shard), a random
    conditioning (``encode_context`` of ``text_len // 2`` text tokens and the CLIP tokens), the audio features of
    ``chunks`` chunks on the device, then ``chunks`` chunks; the peak over the chunks, as the benchmark reads
    ``torch.cuda.max_memory_allocated`` after resetting it (what ``scripts/gpu-check`` compares)."""
    config = case.config()
    m = config.model
    model = build_dit(case)
    ledger = ByteLedger()
    with FusedAttention(), ledger, torch.no_grad():
        ledger.track_module(model)
        lat_h, lat_w = latent_grid(config, case.width, case.height)
        y = torch.empty(1, m.cond_channels, config.memory.window_latent_frames, lat_h, lat_w, device=META)
        text = torch.empty(m.text_len // 2, m.text_dim, device=META)
        clip = torch.empty(1, m.clip_tokens, m.clip_dim, device=META)
        context = model.encode_context([text], clip)
        feats = torch.empty(total_video_frames(config, chunks), m.audio_layers, m.audio_channels, device=META)
        del text, clip
        sampler = StreamingSampler(model, Conditioning(y=y.to(model.dtype), context=context), PlanNoise())
        with ledger.phase("chunks") as p:
            for _ in range(chunks):
                sampler.next_chunk(feats)
    return p.peak[DEVICE]
