"""WSOLA tempo: length, pitch, identity at 1, and streaming == offline bit for bit."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from signals import SR, speech_like, tone

from liveact.audio import AudioConfig, StreamingTempo, tempo_for, tempo_stretch
from liveact.config import ConfigError

WINDOW, SEARCH = 640, 160  # the AudioConfig defaults at 16 kHz (40 ms, +-10 ms)


def _stream(x: np.ndarray, factor, sizes: list[int]) -> tuple[np.ndarray, int]:
    s = StreamingTempo(factor, WINDOW, SEARCH)
    out, i, k, most = [], 0, 0, 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        out.append(s.push(x[i : i + n]))
        i, k, most = i + n, k + 1, max(most, s.buffered_samples)
    out.append(s.finish())
    return np.concatenate(out), most


def test_factor_follows_fps():
    cfg = AudioConfig()
    assert cfg.tempo_factor(20) == Fraction(5, 4) and cfg.tempo_factor() == Fraction(5, 4)
    assert cfg.tempo_factor(25) == 1 and cfg.tempo_factor(24) == Fraction(25, 24)
    with pytest.raises(ConfigError, match="fps"):
        cfg.tempo_factor(2)


def test_identity_at_factor_one_is_untouched_and_undelayed():
    x = speech_like(0.5)
    s = tempo_for(AudioConfig(), fps=25)
    assert np.array_equal(s.push(x[:100]), x[:100]) and s.finish().size == 0
    assert np.array_equal(tempo_stretch(x, 1, WINDOW, SEARCH), x)


@pytest.mark.parametrize("factor", [Fraction(5, 4), Fraction(25, 24), Fraction(5, 6), Fraction(5, 2)])
def test_length_is_floor_of_input_over_factor(factor):
    x = speech_like(1.3)
    y = tempo_stretch(x, factor, WINDOW, SEARCH)
    assert y.dtype == np.float32 and y.size == x.size * factor.denominator // factor.numerator


def test_pitch_is_kept():
    y = tempo_stretch(tone(2.0, SR, hz=200.0), Fraction(5, 4), WINDOW, SEARCH)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    assert abs(np.argmax(spectrum) * SR / y.size - 200.0) < 1.0
    steady = y[SR // 10 : -SR // 10]  # level stays flat: the overlap-add sums to 1, no fade at the start
    assert 0.27 < np.abs(steady).max() < 0.33 and np.abs(y[:WINDOW]).max() > 0.25


@pytest.mark.parametrize("sizes", [[1], [137], [SR], [1, 5000, 3, 999, 640]], ids=["1", "137", "1s", "mixed"])
def test_streaming_equals_offline_exactly(sizes):
    x = speech_like(1.0 if sizes == [1] else 2.5, seed=1)
    offline = tempo_stretch(x, Fraction(5, 4), WINDOW, SEARCH)
    streamed, most = _stream(x, Fraction(5, 4), sizes)
    assert np.array_equal(streamed, offline)
    assert most <= WINDOW + 2 * SEARCH + max(sizes) + WINDOW  # bounded by the window, not the input


def test_random_push_sizes_with_a_slower_tempo():
    rng = np.random.default_rng(7)
    x = speech_like(2.0, seed=2)
    sizes = [int(n) for n in rng.integers(1, 3000, size=64)]
    factor = AudioConfig().tempo_factor(30)  # 25/30: the audio gets longer
    assert np.array_equal(_stream(x, factor, sizes)[0], tempo_stretch(x, factor, WINDOW, SEARCH))


def test_push_after_finish_is_an_error():
    s = StreamingTempo(Fraction(5, 4), WINDOW, SEARCH)
    s.push(np.zeros(10, dtype=np.float32))
    s.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        s.push(np.zeros(10, dtype=np.float32))
