"""Typed, frozen configuration of the audio front end (speech -> one feature row per video frame).

The preprocessing steps, in order, each named by its fields:

1. decode   ``sample_rate``, ``min_duration_s``, ``decode_timeout_s``: any file -> mono float32.
2. tempo    ``model_fps``: the model was trained at 25 fps, so a session at ``fps`` stretches its
            audio by ``model_fps / fps`` (``tempo`` holds the WSOLA sizes). Identity at fps = 25.
3. gain     ``gain``: the stretched waveform is multiplied by 3.0, as the public code does.
4. features ``backend`` (``"wav2vec2"`` or ``"mel"``) with ``layers`` x ``channels`` per row,
            one row per ``1 / model_fps`` s of stretched audio = one output video frame.
5. stream   ``history_frames`` / ``lookahead_frames``: the context a streamed row is computed
            with (the public ``--steam_audio`` slice: 21 frames before, up to +3 after);
            ``stream_block_frames`` rows are extracted at once, ``retain_frames`` rows are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal

from liveact.config import ConfigError, ModelConfig

__all__ = ["AudioConfig", "BackendKind", "MelConfig", "TempoConfig"]

BackendKind = Literal["wav2vec2", "mel"]

# Rationals from float settings (fps 20, 24, 29.97...) keep frame arithmetic exact.
_FPS_DENOMINATOR = 1000
# WSOLA quality falls off far from 1; this range covers fps 6.25 .. 100 at model_fps 25.
_TEMPO_FACTOR_RANGE = (Fraction(1, 4), Fraction(4))
# The wav2vec2-base layout the public checkpoint uses: hidden_states[1:] stacked.
_WAV2VEC2_BASE = (12, 768)


@dataclass(frozen=True)
class TempoConfig:
    """WSOLA sizes (see ``tempo.py``). Speech pitch periods are 2.5-12 ms; the search covers them."""

    window_s: float = 0.04  # overlap-add frame; hop is half of it (Hann, 50 % overlap)
    search_s: float = 0.01  # +- shift searched around the nominal analysis position


@dataclass(frozen=True)
class MelConfig:
    """Log-mel band energies of the weight-free ``mel`` backend (see ``mel.py``)."""

    window_s: float = 0.025  # analysis window (Hann)
    hop_s: float = 0.01  # native frame rate 100 Hz: 4 native frames per model frame at 25 fps
    n_fft: int = 512
    fmin_hz: float = 40.0
    fmax_hz: float = 7600.0
    log_floor: float = 1e-6  # log10(energy + floor): digital silence maps to -6, finite


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16000
    model_fps: float = 25.0  # the fps the model assumes; tempo factor = model_fps / fps
    default_fps: float = 20.0  # fps is per session; this is the real-time recipe's value
    gain: float = 3.0
    backend: BackendKind = "wav2vec2"
    layers: int = 12
    channels: int = 768
    history_frames: int = 21
    lookahead_frames: int = 3  # row i is final once audio up to frame i + lookahead has arrived
    stream_block_frames: int = 8
    retain_frames: int = 256  # rows a stream keeps addressable (bounded, whatever the session length)
    min_duration_s: float = 0.05  # one frame at 20 fps; shorter input is refused
    decode_timeout_s: float = 60.0
    tempo: TempoConfig = field(default_factory=TempoConfig)
    mel: MelConfig = field(default_factory=MelConfig)

    def __post_init__(self) -> None:
        if self.backend not in ("wav2vec2", "mel"):
            raise ConfigError(f"audio backend must be 'wav2vec2' or 'mel', got {self.backend!r}")
        if Fraction(self.sample_rate) / self.model_fps_fraction != self.samples_per_frame:
            raise ConfigError(
                f"sample_rate={self.sample_rate} / model_fps={self.model_fps} must be a whole number of samples"
            )
        for name in ("layers", "channels", "stream_block_frames", "lookahead_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.history_frames < 0:
            raise ConfigError(f"history_frames={self.history_frames} must be >= 0")
        if self.retain_frames < self.stream_block_frames:
            raise ConfigError(
                f"retain_frames={self.retain_frames} must hold at least one block ({self.stream_block_frames} rows)"
            )
        if self.min_duration_s < 0 or self.decode_timeout_s <= 0:
            raise ConfigError("min_duration_s must be >= 0 and decode_timeout_s > 0")

    @property
    def model_fps_fraction(self) -> Fraction:
        return Fraction(self.model_fps).limit_denominator(_FPS_DENOMINATOR)

    @property
    def samples_per_frame(self) -> int:
        """Stretched-audio samples per model frame (640 at 16 kHz, 25 fps)."""
        return int(Fraction(self.sample_rate) / self.model_fps_fraction)

    def tempo_factor(self, fps: float | None = None) -> Fraction:
        """model_fps / fps (1.25 at 20 fps): > 1 shortens the audio, 1 leaves it untouched."""
        fps = self.default_fps if fps is None else fps
        if not fps > 0:
            raise ConfigError(f"fps must be > 0, got {fps}")
        fps_q = Fraction(fps).limit_denominator(_FPS_DENOMINATOR)  # 0 for an fps below 1 / _FPS_DENOMINATOR
        factor = self.model_fps_fraction / fps_q if fps_q else None
        lo, hi = _TEMPO_FACTOR_RANGE
        if factor is None or not lo <= factor <= hi:
            raise ConfigError(
                f"fps={fps} gives tempo factor {'inf' if factor is None else f'{float(factor):.3f}'} outside "
                f"[{float(lo)}, {float(hi)}]; "
                f"use an fps between {float(self.model_fps_fraction / hi)} and {float(self.model_fps_fraction / lo)}"
            )
        return factor

    @classmethod
    def for_model(cls, model: ModelConfig, **overrides: Any) -> AudioConfig:
        """Rows shaped for ``model``: wav2vec2 for the 12 x 768 layout, the mel backend otherwise."""
        layers, channels = model.audio_layers, model.audio_channels
        backend = "wav2vec2" if (layers, channels) == _WAV2VEC2_BASE else "mel"
        base = cls(backend=backend, layers=layers, channels=channels)
        return replace(base, **overrides) if overrides else base
