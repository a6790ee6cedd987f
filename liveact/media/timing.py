"""Frame timing: frame k is presented at exactly k / fps, and audio is paced to it to the sample.

Every writer stamps frames from the nominal rate (never from a measured or averaged one), and the
audio sent alongside the first k frames is always ``samples_before(k)`` samples long, so audio and
video end together whatever the chunk sizes were.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["FpsLike", "as_fps", "frame_time", "keyframe_interval", "samples_before"]

FpsLike = int | float | str | Fraction


def as_fps(fps: FpsLike) -> Fraction:
    """An exact, positive frame rate: ``20``, ``"30000/1001"``, ``Fraction(25)``, or ``29.97`` (read as 2997/100)."""
    try:
        rate = Fraction(str(fps)) if isinstance(fps, float) else Fraction(fps)
    except (ValueError, ZeroDivisionError, TypeError):
        raise ValueError(f"fps must be a positive number or a ratio like '30000/1001', got {fps!r}") from None
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return rate


def frame_time(index: int, fps: Fraction) -> Fraction:
    """Presentation time of frame ``index`` in seconds, exactly."""
    return index / fps


def samples_before(frames: int, fps: Fraction, sample_rate: int) -> int:
    """Audio samples (per channel) that cover frames ``0 .. frames-1``: floor(frames * rate / fps)."""
    return (frames * sample_rate * fps.denominator) // fps.numerator


def keyframe_interval(fps: Fraction, seconds: float) -> int:
    """Frames per GOP for a keyframe every ``seconds`` (at least 1)."""
    return max(1, round(fps * Fraction(str(seconds))))
