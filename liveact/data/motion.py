"""Per-frame trajectories that are not the mouth: head pose that follows prosody, and blinks.

* ``head_motion`` - (T, 3) [dx, dy, tilt]: slow Ornstein-Uhlenbeck drift on all three, plus a nod
  (dy, downwards) that follows the smoothed loudness of the speech and a tilt that follows the
  pitch (semitones from the speaker's median): speakers dip their head on stressed, loud stretches
  and tip it with intonation. Amplitudes are a few % of the image and a few degrees.
* ``blink_track`` - (T,) in [0, 1]: blinks as a Poisson process (mean interval ``BLINK_INTERVAL_S``),
  each a raised-cosine close-and-open of ``BLINK_DURATION_S``, never overlapping.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BLINK_DURATION_S",
    "BLINK_INTERVAL_S",
    "HEAD_LIMITS",
    "blink_track",
    "head_motion",
    "ornstein_uhlenbeck",
    "smooth",
]

BLINK_INTERVAL_S = 4.0  # mean time between blink onsets (people blink every 2-10 s)
BLINK_DURATION_S = (0.15, 0.25)  # close + open, uniform range
BLINK_GAP_S = 0.3  # at least this much open eye between two blinks

DRIFT_TAU_S = (2.0, 2.0, 3.0)  # Ornstein-Uhlenbeck time constants for dx, dy, tilt
DRIFT_STD = (0.012, 0.005, 0.025)  # stationary std: fraction of the image (dx, dy), radians (tilt)
NOD_GAIN = 0.018  # dy (fraction of the image) per unit of normalised loudness above the clip's mean
PROSODY_SMOOTH_S = 0.25  # loudness smoothing for the nod (a syllable-to-phrase scale)
TILT_PER_SEMITONE = 0.005  # radians of tilt per semitone of pitch above the median
PITCH_SMOOTH_S = 0.3
MAX_SEMITONES = 8.0  # pitch excursions beyond this do not tilt further
HEAD_LIMITS = (0.04, 0.04, 0.09)  # |dx|, |dy| (fraction of the image), |tilt| (radians, ~5 degrees)


def ornstein_uhlenbeck(rng: np.random.Generator, n: int, dt: float, tau: float, std: float) -> np.ndarray:
    """(n,) a stationary OU process (exact discretisation) with time constant ``tau`` and std ``std``."""
    decay = math.exp(-dt / tau)
    noise = rng.standard_normal(n) * std * math.sqrt(1 - decay**2)
    out = np.empty(n, np.float64)
    x = rng.standard_normal() * std
    for k in range(n):
        x = x * decay + noise[k]
        out[k] = x
    return out


def smooth(x: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    """(T,) centred moving average over ``seconds`` (edges averaged over what exists)."""
    width = max(1, round(seconds * fps))
    kernel = np.ones(width)
    num = np.convolve(x, kernel, mode="same")
    den = np.convolve(np.ones_like(x), kernel, mode="same")
    return num / np.maximum(den, 1e-12)


def head_motion(
    rng: np.random.Generator, loudness: np.ndarray, fps: float, pitch_hz: np.ndarray | None = None
) -> np.ndarray:
    """(T,) per-frame loudness (RMS), optional (T,) pitch in Hz (0 = unvoiced) -> (T, 3) float32 [dx, dy, tilt]."""
    loudness = np.asarray(loudness, np.float64)
    n = len(loudness)
    dt = 1.0 / fps
    drift = np.stack(
        [ornstein_uhlenbeck(rng, n, dt, tau, std) for tau, std in zip(DRIFT_TAU_S, DRIFT_STD, strict=True)], 1
    )
    if n == 0:
        return np.zeros((0, 3), np.float32)
    peak = float(np.percentile(loudness, 95))
    prosody = smooth(loudness / peak, fps, PROSODY_SMOOTH_S) if peak > 0 else np.zeros(n)  # (T,) ~0..1
    head = drift
    head[:, 1] += NOD_GAIN * (prosody - prosody.mean())
    if pitch_hz is not None:
        pitch = np.asarray(pitch_hz, np.float64)
        voiced = pitch > 0
        if voiced.any():
            semis = np.zeros(n)
            semis[voiced] = 12 * np.log2(pitch[voiced] / np.median(pitch[voiced]))
            semis = np.clip(semis, -MAX_SEMITONES, MAX_SEMITONES)  # unvoiced frames count as the median
            head[:, 2] += TILT_PER_SEMITONE * smooth(semis, fps, PITCH_SMOOTH_S)
    return np.clip(head, -np.asarray(HEAD_LIMITS), np.asarray(HEAD_LIMITS)).astype(np.float32)


def blink_track(
    rng: np.random.Generator,
    n_frames: int,
    fps: float,
    mean_interval_s: float = BLINK_INTERVAL_S,
    duration_s: tuple[float, float] = BLINK_DURATION_S,
) -> np.ndarray:
    """(T,) float32 eyelid closure in [0, 1] sampled at frame times k / fps; blinks never overlap."""
    total = n_frames / fps
    times = np.arange(n_frames) / fps
    out = np.zeros(n_frames, np.float64)
    t = rng.exponential(mean_interval_s) * rng.uniform()  # the clip starts at a random phase
    while t < total:
        length = rng.uniform(*duration_s)
        u = (times - t) / length  # (T,) 0..1 inside this blink
        inside = (u >= 0) & (u <= 1)
        out[inside] = np.maximum(out[inside], 0.5 * (1 - np.cos(2 * np.pi * u[inside])))
        t += length + BLINK_GAP_S + rng.exponential(max(mean_interval_s - BLINK_GAP_S - length, 1e-3))
    return out.astype(np.float32)
