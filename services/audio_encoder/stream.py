"""One ``Encode`` stream without gRPC: the checked ``EncodeConfig`` and the per-stream pipeline.

``parse_config`` turns an ``EncodeConfig`` into a ``StreamFormat`` or raises ``RequestError`` with
the status code and a message saying what to change. ``EncodeStream`` is the bounded per-stream
state: PCM bytes -> mono float32 (``pcm_from_bytes``: channels averaged) -> resampled to the
encoder's rate when the client sends another one (``StreamingResampler``) ->
``StreamingAudioFeatures`` -> the rows that became final. Its methods are CPU work: the servicer
runs them off the event loop.

Snapshots: ``snapshot()`` packs ``state_dict()`` (the stream's format, the PCM byte count, the
resampler's and the features' states; see ``services.common.snapshot``) into the bytes of a
``StreamSnapshot``; ``resume(state)`` puts a new stream, made from the same (checked) format, at that
point. Pushing the rest of the PCM into it and finishing gives exactly the rows, ``final`` and
``total_frames`` the original stream would have given, however the PCM was split (the resampler,
the tempo and the features are each split-invariant and restored bit for bit). The feature rows
already sent are not part of the state: the resumed stream sends rows from ``next_frame`` on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from liveact.audio import AudioConfig, FeatureBackend, FeatureRows, StreamingAudioFeatures, pcm_from_bytes
from liveact.audio.io import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, PCM_SAMPLE_BYTES, PcmFormat
from liveact.audio.resample import StreamingResampler
from liveact.config import ConfigError
from liveact.state.tensors import StateReader, check_state, float_tensor, int_tensor, with_prefix
from liveact.v1 import audio_encoder_pb2, common_pb2
from services.common import snapshot
from services.common.audio_format import ENCODING_CODES, ENCODINGS
from services.common.errors import invalid

__all__ = ["SNAPSHOT_KIND", "EncodeStream", "StreamFormat", "parse_config"]

SNAPSHOT_KIND = "audio_encoder"  # services.common.snapshot's kind for this stream's state


@dataclass(frozen=True)
class StreamFormat:
    encoding: PcmFormat
    sample_rate: int  # of the client's PCM
    channels: int  # interleaved audio channels of the client's PCM
    fps: float

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample frame (one sample per channel)."""
        return PCM_SAMPLE_BYTES[self.encoding] * self.channels


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
    if fmt.encoding not in ENCODINGS:
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
    if channels > MAX_CHANNELS:
        raise invalid(
            f"config.audio_format.channels = {channels} is more than {MAX_CHANNELS}: send mono "
            "(or interleaved channels, which are averaged)"
        )
    return StreamFormat(ENCODINGS[fmt.encoding], rate, channels, fps)


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

    # -- snapshots --------------------------------------------------------------------------------

    @property
    def next_frame(self) -> int:
        """The absolute index of the next row this stream will send."""
        return self.features.frames_final

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``format.*`` (checked on load), the byte count, ``resampler.*`` (if resampling), ``features.*``."""
        fmt = self.format
        out = {
            "format.encoding": int_tensor(ENCODING_CODES[fmt.encoding]),
            "format.sample_rate": int_tensor(fmt.sample_rate),
            "format.channels": int_tensor(fmt.channels),
            "format.fps": float_tensor(fmt.fps),
            "bytes_received": int_tensor(self.bytes_received),
            **with_prefix("features", self.features.state_dict()),
        }
        if self.resampler is not None:
            out |= with_prefix("resampler", self.resampler.state_dict())
        return out

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Continue from ``state_dict()`` of a stream with this format; ``ValueError`` says what differs.

        Call it on a new stream; after a ``ValueError`` the stream may be half-loaded: discard it.
        """
        r = StateReader(tensors, "the snapshot")
        fmt = self.format
        saved = {
            "encoding": r.read_int("format.encoding"),
            "sample_rate": r.read_int("format.sample_rate"),
            "channels": r.read_int("format.channels"),
            "fps": r.read_float("format.fps"),
        }
        current = {
            "encoding": ENCODING_CODES[fmt.encoding],
            "sample_rate": fmt.sample_rate,
            "channels": fmt.channels,
            "fps": fmt.fps,
        }
        if differ := [name for name in saved if saved[name] != current[name]]:
            raise ValueError(
                "the snapshot's stream had "
                + ", ".join(f"{_FORMAT_FIELDS[n]} = {_show(n, saved[n])}" for n in differ)
                + " but this EncodeConfig has "
                + ", ".join(f"{_show(n, current[n])}" for n in differ)
                + ": resume with the EncodeConfig (fps and audio_format) of the stream the snapshot came from"
            )
        received = r.read_int("bytes_received")
        features = r.sub("features")
        resampler = r.sub("resampler") if r.has("resampler") else None
        r.close()
        check_state(received >= 0 and received % fmt.frame_bytes == 0, r.what, "partial sample frames")
        check_state((resampler is None) == (self.resampler is None), r.what, "resampler state without resampling")
        self.features.load_state_dict(features)
        if self.resampler is not None and resampler is not None:
            self.resampler.load_state_dict(resampler)
        self.bytes_received = received

    def snapshot(self) -> bytes:
        """The stream's state as ``StreamSnapshot.state`` bytes (RuntimeError after ``finish``)."""
        return snapshot.pack(SNAPSHOT_KIND, self.state_dict())

    def resume(self, state: bytes) -> None:
        """Continue from ``snapshot()`` bytes; ``ValueError`` (``SnapshotError``) says what is wrong with them."""
        self.load_state_dict(snapshot.unpack(state, SNAPSHOT_KIND, "EncodeConfig.resume_state").tensors)


_FORMAT_FIELDS = {
    "encoding": "audio_format.encoding",
    "sample_rate": "audio_format.sample_rate",
    "channels": "audio_format.channels",
    "fps": "fps",
}


def _show(name: str, value: float) -> str:
    if name == "encoding":
        names = {code: common_pb2.AudioFormat.Encoding.Name(code) for code in ENCODING_CODES.values()}
        return names.get(int(value), str(value))
    return f"{value:.7g}" if name == "fps" else str(value)  # fps: a float32 on the wire


def _join(a: FeatureRows, b: FeatureRows) -> FeatureRows:
    if a.rows.shape[0] == 0:
        return b
    return FeatureRows(a.start, torch.cat([a.rows, b.rows]))


def silence(fmt: StreamFormat, seconds: float) -> bytes:
    """``seconds`` of zero PCM in ``fmt`` (for the warm-up)."""
    frames = round(seconds * fmt.sample_rate)
    return np.zeros(frames * fmt.channels, dtype="<i2" if fmt.encoding == "s16le" else "<f4").tobytes()
