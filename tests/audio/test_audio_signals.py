"""The deterministic test signals of tests/signals.py: their checks."""

from __future__ import annotations

import numpy as np
from signals import SR, speech_like


def test_signals_are_deterministic_and_in_range():
    a, b = speech_like(0.5, seed=3), speech_like(0.5, seed=3)
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.size == SR // 2
    assert 0.05 < np.abs(a).max() < 1.0
