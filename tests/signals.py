"""Deterministic test signals (speech-like, tones, WAV files) for the audio and audio-encoder tests."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

SR = 16000
_S16_MAX = 32767


def speech_like(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """(S,) float32: a gliding harmonic voice gated into ~3 syllables/s, with breath noise between."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 0.7 * (0.6 + 0.4 * np.sin(2 * np.pi * 0.23 * t))
    noise = 0.01 * rng.standard_normal(t.size) * (1 + 3 * (envelope < 0.05))
    return (0.15 * voice * envelope + noise).astype(np.float32)


def tone(seconds: float, sr: int, hz: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sr: int) -> Path:
    """samples (S,) or (S, channels) float in [-1, 1] -> 16-bit PCM WAV."""
    data = samples if samples.ndim == 2 else samples[:, None]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[1])
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(data, -1, 1) * _S16_MAX).astype("<i2").tobytes())
    return path
