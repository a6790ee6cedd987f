"""Scores of a window of generated frames: lip sync, identity drift, flicker.

Legend: T frames of the window, H x W pixels.

* ``lip_sync``: Pearson correlation between the mouth opening measured in the frames
  (``liveact.data.measure.mouth_opening``, pixels only) and the opening the window's audio implies
  (``liveact.data.speech.mouth_from_audio``, the renderer's own rule). The control correlates the
  same measurement with the audio of other stretches of speech (the target circularly shifted by
  ``CONTROL_SHIFTS`` fractions of the window, correlations averaged), so a model that opens its mouth
  at random, or on any speech, scores near the control.
* ``identity_drift``: mean absolute difference, in [0, 1], between the reference and each frame
  over the face region (``FACE_BOX``), both area-downsampled by ``DRIFT_POOL`` so that the mouth's and
  eyes' small motions weigh little and a changed face, colour or position weighs a lot.
* ``flicker``: mean absolute second temporal difference |f[t+1] - 2 f[t] + f[t-1]| in [0, 1]:
  steady motion costs nothing, frame-to-frame jitter does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liveact.data.measure import mouth_opening
from liveact.data.speech import mouth_from_audio

__all__ = ["FACE_BOX", "WindowScores", "flicker", "identity_drift", "lip_sync", "score_window"]

FACE_BOX = (0.15, 0.85, 0.1, 0.9)  # x0, x1, y0, y1 as fractions of the image: the rendered face and hair
DRIFT_POOL = 4  # pixels per side of the area-average before comparing with the reference
CONTROL_SHIFTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # of the window: the shuffled-audio control's offsets


@dataclass(frozen=True)
class WindowScores:
    end_s: float  # the window ends here (seconds of generated video)
    frames: int
    lip_sync_r: float
    lip_sync_r_shuffled: float  # the control: the same frames against other speech
    identity_drift: float
    flicker: float
    mouth_open_mean: float  # measured; ~0 means the mouth never opens

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def lip_sync(frames: np.ndarray, reference: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """(r, r of the control, mean measured opening) for frames (T, H, W, 3) and target openings (T,)."""
    measured = mouth_opening(frames, reference).astype(np.float64)
    control = [_pearson(measured, np.roll(target, round(f * len(target)))) for f in CONTROL_SHIFTS]
    return _pearson(measured, target), float(np.mean(control)), float(measured.mean())


def _pooled_face(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., h, w, 3) float32 in [0, 1]: the face box, area-downsampled."""
    h, w = images.shape[-3:-1]
    x0, x1, y0, y1 = FACE_BOX
    box = images[..., round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w), :].astype(np.float32) / 255.0
    bh, bw = (box.shape[-3] // DRIFT_POOL) * DRIFT_POOL, (box.shape[-2] // DRIFT_POOL) * DRIFT_POOL
    box = box[..., :bh, :bw, :]
    shape = (*box.shape[:-3], bh // DRIFT_POOL, DRIFT_POOL, bw // DRIFT_POOL, DRIFT_POOL, 3)
    return box.reshape(shape).mean(axis=(-4, -2))


def identity_drift(frames: np.ndarray, reference: np.ndarray) -> float:
    """Mean |pooled face of each frame - pooled face of the reference|, in [0, 1]."""
    return float(np.abs(_pooled_face(frames) - _pooled_face(reference)[None]).mean())


def flicker(frames: np.ndarray) -> float:
    """Mean |f[t+1] - 2 f[t] + f[t-1]| over the window, in [0, 1] (0 for fewer than 3 frames)."""
    if len(frames) < 3:
        return 0.0
    f = frames.astype(np.float32)  # exact on 0..255 integers; scaled once at the end
    return float(np.abs(f[2:] - 2 * f[1:-1] + f[:-2]).mean()) / 255.0


def score_window(
    end_s: float, frames: np.ndarray, reference: np.ndarray, audio: np.ndarray, sample_rate: int, fps: float
) -> WindowScores:
    """Scores of ``frames`` (T, H, W, 3) uint8 whose speech is ``audio`` (the same T frame periods)."""
    target = mouth_from_audio(audio, sample_rate, fps)[:, 0].astype(np.float64)
    n = min(len(frames), len(target))
    r, r_control, opening = lip_sync(frames[:n], reference, target[:n])
    return WindowScores(
        end_s=end_s,
        frames=n,
        lip_sync_r=r,
        lip_sync_r_shuffled=r_control,
        identity_drift=identity_drift(frames[:n], reference),
        flicker=flicker(frames[:n]),
        mouth_open_mean=opening,
    )
