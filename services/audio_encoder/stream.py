"""One ``Encode`` stream without gRPC: the checked ``EncodeConfig`` and the per-stream pipeline.

``parse_config`` turns an ``EncodeConfig`` into a ``StreamFormat`` or raises ``RequestError`` with
the status code and a message saying what to change. ``EncodeStream`` is the bounded per-stream
state: PCM bytes -> mono float32 (``pcm_from_bytes``: channels averaged) -> resampled to the
encoder's rate when the client sends another one (``StreamingResampler``) ->
``StreamingAudioFeatures`` -> the rows that became final. Its methods are CPU work: the servicer
runs them off the event loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from liveact.audio import AudioConfig, FeatureBackend, FeatureRows, StreamingAudioFeatures, pcm_from_bytes
from liveact.audio.io import PcmFormat
from liveact.config import ConfigError
from liveact.v1 import audio_encoder_pb2, common_pb2
from services.audio_encoder.resample import StreamingResampler
from services.common.errors import invalid

__all__ = ["EncodeStream", "StreamFormat", "parse_config"]

_ENCODINGS: dict[int, PcmFormat] = {
    common_pb2.AudioFormat.ENCODING_UNSPECIFIED: "s16le",  # the proto's default
    common_pb2.AudioFormat.PCM_S16LE: "s16le",
    common_pb2.AudioFormat.PCM_F32LE: "f32le",
}
_SAMPLE_BYTES = {"s16le": 2, "f32le": 4}
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000  # other rates are resampled to the encoder's (16 kHz)
MAX_AUDIO_CHANNELS = 32


@dataclass(frozen=True)
class StreamFormat:
    encoding: PcmFormat
    sample_rate: int  # of the client's PCM
    channels: int  # interleaved audio channels of the client's PCM
    fps: float

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample frame (one sample per channel)."""
        return _SAMPLE_BYTES[self.encoding] * self.channels


def parse_config(config: audio_encoder_pb2.EncodeConfig, audio: AudioConfig, preset: str) -> StreamFormat:
    """Check ``config`` against this encoder (``audio``: the preset's feature layout)."""
    if (config.layers, config.channels) != (audio.layers, audio.channels):
        raise invalid(
            f"config.layers x config.channels = {config.layers} x {config.channels}, but this encoder makes "
            f"{audio.layers} x {audio.channels} rows (preset {preset!r}): set {audio.layers} x {audio.channels} "
            "or use an encoder started with your model's preset"
        )
    fps = float(config.fps) or audio.default_fps
    if not (math.isfinite(fps) and fps > 0):
        raise invalid(f"config.fps = {config.fps} must be > 0 (or 0 for the default {audio.default_fps:g})")
    try:
        audio.tempo_factor(fps)
    except ConfigError as exc:
        raise invalid(f"config.fps: {exc}") from None
    fmt = config.audio_format
    if fmt.encoding not in _ENCODINGS:
        raise invalid(
            f"config.audio_format.encoding = {fmt.encoding} is not a known encoding: use PCM_S16LE "
            f"({common_pb2.AudioFormat.PCM_S16LE}) or PCM_F32LE ({common_pb2.AudioFormat.PCM_F32LE})"
        )
    rate = fmt.sample_rate or audio.sample_rate
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise invalid(
            f"config.audio_format.sample_rate = {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz: "
            f"send {audio.sample_rate} Hz (the encoder's rate; other rates in range are resampled)"
        )
    channels = fmt.channels or 1
    if channels > MAX_AUDIO_CHANNELS:
        raise invalid(
            f"config.audio_format.channels = {channels} is more than {MAX_AUDIO_CHANNELS}: send mono "
            "(or interleaved channels, which are averaged)"
        )
    return StreamFormat(_ENCODINGS[fmt.encoding], rate, channels, fps)


class EncodeStream:
    """Bounded per-stream state: PCM bytes in, final feature rows out."""

    def __init__(self, backend: FeatureBackend, audio: AudioConfig, fmt: StreamFormat) -> None:
        self.format = fmt
        self.features = StreamingAudioFeatures(backend, audio, fps=fmt.fps)
        rate = audio.sample_rate
        self.resampler = None if fmt.sample_rate == rate else StreamingResampler(fmt.sample_rate, rate)
        self.bytes_received = 0

    def check_pcm(self, size: int, limit: int) -> None:
        """A pcm message of ``size`` bytes: whole sample frames, at most ``limit`` bytes."""
        fmt = self.format
        if size > limit:
            raise invalid(
                f"pcm message of {size} bytes is over this encoder's limit of {limit} bytes per message: "
                "send the audio in smaller pieces"
            )
        if size % fmt.frame_bytes:
            raise invalid(
                f"pcm message of {size} bytes is not a whole number of sample frames: {fmt.encoding} with "
                f"{fmt.channels} channel(s) takes {fmt.frame_bytes} bytes per frame; send complete frames"
            )

    def push(self, data: bytes) -> FeatureRows:
        """Whole sample frames of PCM -> the rows that became final (possibly none)."""
        pcm = pcm_from_bytes(data, self.format.encoding, self.format.channels)
        self.bytes_received += len(data)
        if self.resampler is not None:
            pcm = self.resampler.push(pcm)
        return self.features.push(pcm)

    def finish(self) -> FeatureRows:
        """The remaining rows; afterwards ``features.total_frames`` is the stream's frame count."""
        rows = None
        if self.resampler is not None:
            rows = self.features.push(self.resampler.finish())
        last = self.features.finish()
        return last if rows is None else _join(rows, last)


def _join(a: FeatureRows, b: FeatureRows) -> FeatureRows:
    if a.rows.shape[0] == 0:
        return b
    return FeatureRows(a.start, torch.cat([a.rows, b.rows]))


def silence(fmt: StreamFormat, seconds: float) -> bytes:
    """``seconds`` of zero PCM in ``fmt`` (for the warm-up)."""
    frames = round(seconds * fmt.sample_rate)
    return np.zeros(frames * fmt.channels, dtype="<i2" if fmt.encoding == "s16le" else "<f4").tobytes()
