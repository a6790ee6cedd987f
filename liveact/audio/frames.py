"""The frame grid: how many feature rows a duration gets, and native-rate -> frame-rate interpolation.

Legend: S samples, N rows (one per output video frame), T native feature frames, D feature dims.

Row count. A session at ``fps`` outputs ``floor(S * fps / sample_rate)`` video frames for S input
samples. After the tempo stretch by ``model_fps / fps`` the model sees ``model_fps`` rows per
second of stretched audio, so row i covers stretched samples ``[i * spf, (i + 1) * spf)`` with
``spf = sample_rate / model_fps`` (640 at 16 kHz / 25 fps). Backends read exactly ``N * spf``
stretched samples; the remainder (less than one frame) has no row.

Interpolation. Like the public code (``F.interpolate(..., mode="linear", align_corners=True)``
from the backend's native rate to N rows), the first and last native frames map to the first and
last rows. Given exactly ``N * spf`` samples, wav2vec2's conv stack (stride 320) yields
``T = 2N - 1`` frames and the mel backend is cut to ``4N - 3`` (hop 160), so row i lands exactly on
native frame ``k * i`` (k = native frames per row) for every N: the grid does not depend on the
length of the audio, which is what lets a stream compute rows window by window. (The public code
interpolates the whole clip, whose remainder makes ``T - 1`` up to 2 more than ``2(N - 1)``: its
rows drift by up to 2 native frames, 40 ms of stretched audio, by the end of the clip. We do not.)
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F

from liveact.audio.config import AudioConfig
from liveact.audio.errors import AudioError

__all__ = ["frame_count", "grid_native_frames", "interpolate_to_frames", "native_per_frame"]


def frame_count(n_samples: int, sample_rate: int, fps: float) -> int:
    """Output video frames for ``n_samples`` of audio at ``fps``: floor(duration * fps)."""
    fps_q = Fraction(fps).limit_denominator(1000)
    return int(Fraction(n_samples) * fps_q / sample_rate)


def native_per_frame(config: AudioConfig, native_hop: int) -> int:
    """Native frames per row (k); the hop must divide a row's samples so the grid is exact."""
    spf = config.samples_per_frame
    if native_hop < 1 or spf % native_hop:
        raise AudioError(
            f"a native hop of {native_hop} samples does not divide one frame ({spf} samples at "
            f"{config.sample_rate} Hz / {config.model_fps} fps): use a backend whose hop divides it"
        )
    return spf // native_hop


def grid_native_frames(n_rows: int, per_row: int) -> int:
    """Native frames that put row i exactly on native frame ``per_row * i``: (N - 1) * k + 1."""
    return (n_rows - 1) * per_row + 1


def interpolate_to_frames(native: torch.Tensor, n_rows: int) -> torch.Tensor:
    """native (T, *D) -> (N, *D): linear, align_corners=True (first/last native -> first/last row)."""
    if n_rows < 1:
        raise AudioError("no output frames to interpolate to: the audio is shorter than one video frame")
    if native.shape[0] < 1:
        raise AudioError("the backend produced no native frames: the audio window is too short")
    t, dims = native.shape[0], native.shape[1:]
    flat = native.reshape(t, -1).t().unsqueeze(0)  # (1, D, T)
    if t == 1:
        rows = flat.expand(1, flat.shape[1], n_rows)
    else:
        rows = F.interpolate(flat, size=n_rows, mode="linear", align_corners=True)  # (1, D, N)
    return rows[0].t().reshape(n_rows, *dims).contiguous()
