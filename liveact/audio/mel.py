"""The ``mel`` backend: weight-free log-mel rows for the tiny preset (L x C = 4 x 32).

Legend: S samples, T native frames (100 Hz), F FFT bins, C mel bands (= channels), L views
(= layers), N rows.

This is the tiny-model path: it needs no checkpoint, is deterministic (no dither, no randomness)
and is cheap enough for 2 CPU cores. The tiny DiT is trained by the project on exactly these rows,
so they only need to be stable and informative, not wav2vec2-like. Per native frame (25 ms Hann
window every 10 ms, zero-padded to ``n_fft``): power spectrum -> C triangular HTK-mel bands between
``fmin_hz`` and ``fmax_hz`` -> ``log10(energy + log_floor)``. Loudness is kept (no normalisation):
digital silence is ``log10(log_floor)`` = -6 in every band, speech sits well above it.

The L views of those bands, stacked on the layer axis:

* view 0: the log-mel bands as they are;
* views 1 .. L-2: centred moving averages over 5, 9, 17, ... native frames (50 ms, 90 ms, ...);
* view L-1 (when L >= 2): the delta, ``(s[t+2] - s[t-2]) / 4`` of the 5-frame average (or of the
  raw bands when L == 2): how fast the spectrum moves, which is what drives the mouth.

Edges are replicate-padded. Everything runs in float64 and is cast to float32 at the end. A row
depends on native frames at most ``context_frames`` rows away (1 for L = 4), so a stream that gives
each window that much context reproduces the offline rows up to float64 rounding (measured: 0).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from liveact.audio.config import AudioConfig
from liveact.audio.frames import grid_native_frames, interpolate_to_frames, native_per_frame
from liveact.config import ConfigError

__all__ = ["MelBackend", "mel_filterbank"]

_MEL_BREAK_HZ = 700.0  # HTK mel scale: 2595 * log10(1 + f / 700)
_MEL_SCALE = 2595.0
_SMOOTH_BASE = 2  # view v (1 <= v <= L-2) averages 2**(v+1) + 1 native frames: 5, 9, 17, ...
_DELTA_SPAN = 2  # delta over +-2 native frames (+-20 ms)
_DELTA_OF = 5  # the delta is taken of the 5-frame average


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return _MEL_SCALE * np.log10(1.0 + f / _MEL_BREAK_HZ)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return _MEL_BREAK_HZ * (10.0 ** (m / _MEL_SCALE) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, bands: int, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """(F, C) float64 triangular filters (peak 1) on the rfft bin frequencies."""
    if not 0 <= fmin_hz < fmax_hz <= sample_rate / 2:
        raise ConfigError(f"mel band edges need 0 <= fmin < fmax <= {sample_rate / 2} Hz, got {fmin_hz}, {fmax_hz}")
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.float64(fmin_hz)), _hz_to_mel(np.float64(fmax_hz)), bands + 2))
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft  # (F,)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]  # (C,) each
    rise = (freqs[:, None] - lo) / (mid - lo)
    fall = (hi - freqs[:, None]) / (hi - mid)
    bank = np.clip(np.minimum(rise, fall), 0.0, None)  # (F, C)
    empty = np.flatnonzero(bank.sum(axis=0) == 0)
    if empty.size:
        raise ConfigError(
            f"{empty.size} of {bands} mel bands catch no FFT bin (n_fft={n_fft}): lower channels, "
            "raise mel.n_fft or narrow fmin/fmax"
        )
    return bank


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over axis 0 (T, C), replicate-padded; the same sum order everywhere."""
    if width == 1:
        return x
    half = width // 2
    padded = np.pad(x, ((half, half), (0, 0)), mode="edge")
    total = padded[: x.shape[0]].copy()
    for k in range(1, width):
        total += padded[k : k + x.shape[0]]
    return total / width


def _delta(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((_DELTA_SPAN, _DELTA_SPAN), (0, 0)), mode="edge")
    return (padded[2 * _DELTA_SPAN :] - padded[: x.shape[0]]) / (2 * _DELTA_SPAN)


class MelBackend:
    """Log-mel views; satisfies ``FeatureBackend``."""

    def __init__(self, config: AudioConfig) -> None:
        mc, sr = config.mel, config.sample_rate
        self.layers, self.channels = config.layers, config.channels
        self.hop = round(mc.hop_s * sr)
        self.win_len = round(mc.window_s * sr)
        self.n_fft = mc.n_fft
        self.per_row = native_per_frame(config, self.hop)
        if not 0 < self.win_len <= min(self.n_fft, config.samples_per_frame):
            raise ConfigError(
                f"mel window of {self.win_len} samples must fit n_fft={self.n_fft} and one frame "
                f"({config.samples_per_frame} samples)"
            )
        self.log_floor = mc.log_floor
        n = np.arange(self.win_len)
        self._window = 0.5 - 0.5 * np.cos(2 * np.pi * n / self.win_len)  # periodic Hann, float64
        self._bank = mel_filterbank(sr, self.n_fft, self.channels, mc.fmin_hz, mc.fmax_hz)
        self._widths = [_SMOOTH_BASE ** (v + 1) + 1 for v in range(1, self.layers - 1)]
        reach = max([w // 2 for w in self._widths] + [_DELTA_SPAN + (_DELTA_OF // 2 if self.layers >= 3 else 0)])
        self.context_frames: int | None = math.ceil(reach / self.per_row)

    def native(self, pcm: np.ndarray, n_native: int) -> np.ndarray:
        """pcm (S,) -> log-mel (T, C) float64 for native frames 0 .. n_native-1."""
        frames = np.lib.stride_tricks.sliding_window_view(pcm.astype(np.float64), self.win_len)
        frames = frames[:: self.hop][:n_native]  # (T, win)
        power = np.abs(np.fft.rfft(frames * self._window, n=self.n_fft, axis=1)) ** 2  # (T, F)
        return np.log10(power @ self._bank + self.log_floor)  # (T, C)

    def window_features(self, pcm: np.ndarray, n_rows: int) -> torch.Tensor:
        """pcm (n_rows * spf,) -> rows (n_rows, L, C) float32."""
        n_native = grid_native_frames(n_rows, self.per_row)
        logmel = self.native(pcm, n_native)  # (T, C)
        views = [logmel] + [_smooth(logmel, w) for w in self._widths]
        if self.layers >= 2:
            views.append(_delta(_smooth(logmel, _DELTA_OF) if self.layers >= 3 else logmel))
        stacked = torch.from_numpy(np.stack(views, axis=1).astype(np.float32))  # (T, L, C)
        return interpolate_to_frames(stacked, n_rows)
