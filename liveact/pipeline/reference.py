"""Is a reference picture inside the built-in tiny model's world? Said before a session animates it.

The tiny model was trained on 64x64 flat-shaded cartoon faces only (``liveact/weights/tiny/MODEL_CARD.md``);
given a photograph it animates a drifting blur, which nothing but the README would otherwise say. The
measure is how *flat* the picture is at the model's 64x64: the share of pixels whose 3x3 neighbourhood spans
at most ``FLAT_TOLERANCE`` of 255 in every channel. Cartoon faces are mostly flat regions; photographs are
texture everywhere. Measured (``tests/pipeline/test_reference_fit.py`` re-measures it): 200 training
identities 0.49-0.87 (median 0.75), ``examples/face.png`` 0.64; a portrait photograph (matplotlib's
``grace_hopper.jpg``) and four crops of it 0.06-0.23, 1/f-noise images 0.00. The threshold sits between.
(The tiny VAE's reconstruction error does not separate them: identities 0.039-0.136, the photo 0.115-0.155.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MODEL_SIZE = 64  # the tiny model's pixels per side: the picture is judged at the size it was trained on
FLAT_TOLERANCE = 6  # of 255: a 3x3 neighbourhood spanning at most this in every channel is flat
CARTOON_FLAT_SHARE = 0.36  # at least this share of flat pixels: a picture like the training faces
ADVICE = (
    "the built-in tiny model only knows 64x64 flat-shaded cartoon faces (liveact/weights/tiny/MODEL_CARD.md); "
    "this picture looks like a photograph (flat share {share:.2f}; the training faces have 0.49 or more), "
    "so the video will not show this person. For real faces use --preset liveact-18b --model DIR on a GPU"
)


@dataclass(frozen=True)
class ReferenceFit:
    flat_share: float

    @property
    def inside(self) -> bool:
        return self.flat_share >= CARTOON_FLAT_SHARE

    def warning(self) -> str | None:
        return None if self.inside else ADVICE.format(share=self.flat_share)


def flat_share(image: np.ndarray) -> float:
    """image (H, W, 3) uint8 RGB -> the share of pixels whose 3x3 neighbourhood is flat, at MODEL_SIZE."""
    small = np.asarray(Image.fromarray(image).resize((MODEL_SIZE, MODEL_SIZE), Image.Resampling.BICUBIC))
    a = small.astype(np.int16)
    padded = np.pad(a, ((1, 1), (1, 1), (0, 0)), mode="edge")
    windows = np.stack([padded[dy : dy + MODEL_SIZE, dx : dx + MODEL_SIZE] for dy in range(3) for dx in range(3)])
    spread = (windows.max(axis=0) - windows.min(axis=0)).max(axis=-1)  # (64, 64): the widest channel
    return float((spread <= FLAT_TOLERANCE).mean())


def reference_fit(image: np.ndarray, preset: str, trained: bool) -> ReferenceFit | None:
    """The fit of ``image`` for the built-in tiny model; None for any other model (nothing to judge)."""
    if preset != "tiny" or not trained:
        return None
    return ReferenceFit(flat_share(image))


def reference_warning(image: np.ndarray, preset: str, trained: bool) -> str | None:
    """What to tell the user about ``image`` (``ADVICE``), or None when there is nothing to say."""
    fit = reference_fit(image, preset, trained)
    return None if fit is None else fit.warning()
