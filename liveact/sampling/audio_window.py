"""Per-chunk audio feature windows.

Legend: N feature rows (one per output video frame), L layers, Ca channels, Fv window frames,
W taps.

Row r, tap j of chunk k's window is feature row clamp(a0 + r + j - W//2, 0, N-1), where
a0 = ``plan_chunk(k).audio_window_start``. Clamping repeats the first/last row at the ends.
"""

from __future__ import annotations

import torch

from liveact.config import LiveActConfig
from liveact.sampling.chunking import plan_chunk, window_video_frames

ROWS_KEPT = 256  # feature rows a serving session holds: a few windows (53 rows each), never the whole stream
ROW_ELEMENT_BYTES = 4  # a held feature row is float32


def held_rows_bytes(config: LiveActConfig, rows: int = ROWS_KEPT) -> int:
    """Bytes of ``rows`` feature rows (L, Ca) float32 as a session holds them (and a checkpoint stores them)."""
    return rows * config.model.audio_layers * config.model.audio_channels * ROW_ELEMENT_BYTES


def window_index(config: LiveActConfig, chunk_index: int, n_features: int) -> torch.Tensor:
    """(Fv, W) int64 feature-row indices of the chunk's window."""
    if n_features < 1:
        raise ValueError("need at least one audio feature row")
    w = config.model.audio_window
    a0 = plan_chunk(config, chunk_index).audio_window_start
    rows = torch.arange(window_video_frames(config), dtype=torch.int64).unsqueeze(1)
    taps = torch.arange(w, dtype=torch.int64).unsqueeze(0) - w // 2
    return (a0 + rows + taps).clamp(0, n_features - 1)


def gather_window(config: LiveActConfig, features: torch.Tensor, chunk_index: int) -> torch.Tensor:
    """features (N, L, Ca) -> window (1, Fv, W, L, Ca) for the chunk."""
    m = config.model
    if features.dim() != 3 or features.shape[1:] != (m.audio_layers, m.audio_channels):
        raise ValueError(
            f"audio features must be (frames, {m.audio_layers}, {m.audio_channels}), got {tuple(features.shape)}"
        )
    idx = window_index(config, chunk_index, features.shape[0]).to(features.device)  # (Fv, W), beside the rows
    return features[idx].unsqueeze(0)
