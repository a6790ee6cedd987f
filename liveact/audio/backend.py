"""The feature-backend contract and the factory that picks one from an ``AudioConfig``.

Legend: S samples, N rows (one per video frame), L layers, C channels.

A backend turns a row-aligned window of stretched, gained PCM, exactly ``N * samples_per_frame``
samples whose first sample starts a row, into rows (N, L, C) on the fixed frame grid
(``frames.py``). Offline extraction is one window over the whole clip; a stream calls it on
overlapping windows (``stream.py``). ``context_frames`` says how many rows of context on each side
make a windowed row equal to the offline row (mel: 1); ``None`` means no finite context does
(wav2vec2), and the stream then uses ``AudioConfig.history_frames`` / ``lookahead_frames``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from liveact.audio.config import AudioConfig
from liveact.audio.errors import AudioError

__all__ = ["FeatureBackend", "load_backend"]


class FeatureBackend(Protocol):
    layers: int
    channels: int
    context_frames: int | None

    def window_features(self, pcm: np.ndarray, n_rows: int) -> torch.Tensor:
        """pcm (n_rows * samples_per_frame,) float32 -> rows (n_rows, L, C) float32 on the CPU."""
        ...


def load_backend(
    config: AudioConfig,
    weights_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> FeatureBackend:
    """``config.backend``: "mel" needs nothing; "wav2vec2" needs a local model directory."""
    if config.backend == "mel":
        from liveact.audio.mel import MelBackend

        return MelBackend(config)
    if weights_dir is None:
        raise AudioError(
            "the wav2vec2 backend needs weights_dir: a local directory with config.json and the weights "
            "(the TencentGameMate/chinese-wav2vec2-base layout); nothing is downloaded"
        )
    from liveact.audio.wav2vec2 import Wav2Vec2Backend

    return Wav2Vec2Backend.from_pretrained(weights_dir, config, device=device, dtype=dtype)
