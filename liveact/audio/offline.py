"""Offline extraction: a whole clip -> rows (N, L, C), one per output video frame.

Legend: S input samples, N rows, L layers, C channels.

decode (``io.py``) -> tempo stretch by ``model_fps / fps`` (``tempo.py``) -> x ``gain`` -> the first
``N * samples_per_frame`` stretched samples -> the backend's window features over all of them.
The public code stretches at the source rate and then resamples to 16 kHz; we decode straight to
16 kHz and stretch there (same result up to the resampler and the WSOLA-vs-sox difference).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from liveact.audio.backend import FeatureBackend
from liveact.audio.config import AudioConfig
from liveact.audio.errors import AudioError
from liveact.audio.frames import frame_count
from liveact.audio.io import decode_audio
from liveact.audio.tempo import tempo_for

__all__ = ["audio_features", "file_features", "model_audio"]


def model_audio(pcm: np.ndarray, config: AudioConfig, fps: float | None = None) -> tuple[np.ndarray, int]:
    """pcm (S,) at ``config.sample_rate`` -> (stretched and gained (N * spf,), N)."""
    x = np.asarray(pcm, dtype=np.float32)
    if x.ndim != 1:
        raise AudioError(f"expected mono PCM of shape (S,), got {x.shape}: downmix first (decode_audio does)")
    fps = config.default_fps if fps is None else fps
    n_rows = frame_count(x.size, config.sample_rate, fps)
    if n_rows < 1:
        raise AudioError(
            f"{x.size / config.sample_rate * 1000:.0f} ms of audio is shorter than one video frame at {fps} fps "
            f"({1000 / fps:.0f} ms): send a longer recording"
        )
    stream = tempo_for(config, fps)
    stretched = np.concatenate([stream.push(x), stream.finish()]) * np.float32(config.gain)
    need = n_rows * config.samples_per_frame
    if stretched.size < need:  # cannot happen for floor(S / factor) output; kept as a guard
        stretched = np.pad(stretched, (0, need - stretched.size))
    return stretched[:need], n_rows


def audio_features(
    pcm: np.ndarray, backend: FeatureBackend, config: AudioConfig, fps: float | None = None
) -> torch.Tensor:
    """pcm (S,) -> rows (N, L, C) with N = floor(S / sample_rate * fps)."""
    stretched, n_rows = model_audio(pcm, config, fps)
    return backend.window_features(stretched, n_rows)


def file_features(
    source: str | os.PathLike[str] | bytes,
    backend: FeatureBackend,
    config: AudioConfig,
    fps: float | None = None,
) -> torch.Tensor:
    """An audio file (path or bytes) -> rows (N, L, C)."""
    return audio_features(decode_audio(source, config), backend, config, fps)
