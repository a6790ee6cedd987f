"""``AnimationSession``: one reference image + a stream of speech -> video chunks.

Push mono PCM of any size at the engine's audio sample rate; each push returns the chunks whose
audio window became final, ``finish()`` returns the rest. Per chunk: the audio window ->
``StreamingSampler`` (3 denoising steps against the per-step ConvKV caches) -> streaming VAE
decode -> uint8 frames stamped with their index and presentation time. Everything the session
holds is bounded: the audio front end keeps a fixed number of rows, the sampler fixed-size caches,
the decoder its last 3 latents (or a fixed-size causal cache).

The video has exactly as many frames as the audio has frame periods: the last chunk is trimmed.

Decoding: ``"context"`` (default, as the public implementation does) decodes each chunk from a fresh
cache together with the previous chunk's last 3 clean latents, so the VAE never runs longer than one
window of latents, whatever the session's length (the built-in recipe trains the VAE on exactly
this path, stage ``vae_context``, and its DiT on latents encoded the same way:
``liveact.vae.encode_chunk_windows``);
``"stream"`` keeps the VAE's causal cache across chunks, which equals one decode of the whole latent
sequence (for a VAE trained on long streams).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from liveact.audio import StreamingAudioFeatures
from liveact.config import LiveActConfig
from liveact.media import frames_to_uint8, to_model_tensor
from liveact.pipeline.engine import Engine
from liveact.sampling.chunking import plan_chunk, total_video_frames, window_video_frames
from liveact.sampling.denoise import Conditioning
from liveact.sampling.noise import SeededNoise
from liveact.sampling.stream import StreamingSampler
from liveact.vae import encode_condition
from liveact.vae.session import DEFAULT_DECODE_MODE, DecodeMode, DecodeSession


def prepare_sampler(engine: Engine, image: np.ndarray, prompt: str, seed: int) -> StreamingSampler:
    """A session's conditioning (computed once) and its sampler: image (H, W, 3) uint8 RGB."""
    ref = to_model_tensor(image, device=engine.device)  # (1, 3, H, W) in [-1, 1]
    with torch.no_grad():
        y = encode_condition(engine.vae, engine.vae_config, ref, window_video_frames(engine.config))
        text = engine.encoders.encode_text([prompt])
        clip = engine.encoders.encode_image(ref)
        context = engine.model.encode_context([t.to(engine.device) for t in text], clip.to(engine.device))
    cond = Conditioning(y=y.to(engine.model.dtype), context=context)
    return StreamingSampler(engine.model, cond, SeededNoise(seed, engine.device))


def chunks_needed(config: LiveActConfig, total_frames: int) -> int:
    """Chunks to generate so that the video covers ``total_frames`` frames."""
    n = 1
    while total_video_frames(config, n) < total_frames:
        n += 1
    return n


@dataclass(frozen=True)
class VideoChunk:
    chunk_index: int
    first_frame: int  # index of frames[0] in the session's video
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    fps: float

    def pts(self, i: int) -> Fraction:
        """Presentation time of frames[i] in seconds: frame k at exactly k / fps."""
        return Fraction(self.first_frame + i) / Fraction(self.fps).limit_denominator(1001)


class AnimationSession:
    def __init__(
        self,
        engine: Engine,
        image: np.ndarray,
        prompt: str = "",
        fps: float | None = None,
        seed: int = 0,
        decode: DecodeMode = DEFAULT_DECODE_MODE,
    ):
        """image: (H, W, 3) uint8 RGB, H and W multiples of 16 (``liveact.media.load_reference_image``)."""
        self.engine = engine
        cfg = engine.config
        self.fps = float(fps if fps is not None else engine.audio_config.default_fps)
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        h, w = image.shape[:2]
        unit = engine.vae_config.spatial_stride * cfg.model.patch_size[1]
        if image.ndim != 3 or image.shape[2] != 3 or h % unit or w % unit or not h or not w:
            raise ValueError(f"reference image must be (H, W, 3) with H and W multiples of {unit}, got {image.shape}")
        self.sampler = prepare_sampler(engine, image, prompt, seed)
        self.audio = StreamingAudioFeatures(engine.audio_backend, engine.audio_config, self.fps)
        self.decoding = DecodeSession(engine.decoder, decode, w, h)  # ValueError for an unknown mode
        self.decode_mode = decode
        self.frames_emitted = 0

    @property
    def chunks_done(self) -> int:
        return self.sampler.chunk_index

    def push_audio(self, pcm: np.ndarray) -> list[VideoChunk]:
        """Mono float32 PCM at ``engine.audio_config.sample_rate``; returns chunks now generated."""
        self.audio.push(pcm)
        out = []
        while self.audio.chunk_ready(self.engine.config, self.chunks_done):
            out.append(self._generate(limit=None))
        return out

    def finish(self) -> list[VideoChunk]:
        """End of audio: generate the chunks still needed to cover every audio frame."""
        self.audio.finish()
        total = self.audio.total_frames
        out = []
        while self.frames_emitted < total:
            out.append(self._generate(limit=total))
        return out

    def chunks_needed(self, total_frames: int) -> int:
        return chunks_needed(self.engine.config, total_frames)

    def _generate(self, limit: int | None) -> VideoChunk:
        cfg = self.engine.config
        k = self.chunks_done
        window = self.audio.chunk_window(cfg, k)
        latent = self.sampler.next_chunk(window).latent  # (1, Cz, F, h, w)
        pixels = frames_to_uint8(self.decoding.decode(latent))  # (T, H, W, 3)
        start, end = plan_chunk(cfg, k).video_frames
        if limit is not None:
            pixels = pixels[: max(0, min(end, limit) - start)]
        self.frames_emitted = start + pixels.shape[0]
        return VideoChunk(chunk_index=k, first_frame=start, frames=pixels, fps=self.fps)
