"""Regenerate the demo inputs: ``face.png`` (a drawn reference face) and ``speech.wav`` (espeak-ng).

Run from the repository root: .venv/bin/python examples/make_examples.py  (needs espeak-ng and ffmpeg).
Both files are committed so the README's demo runs offline without either tool.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from liveact.data.face import NEUTRAL, FaceRenderer, Identity

HERE = Path(__file__).parent
SIZE = 256
IDENTITY_SEED = 11  # a red-haired face on a green background
SENTENCES = (
    "Hello! I am a tiny talking head, generated one chunk at a time. "
    "My lips follow the speech, and my memory stays the same size for hours."
)


def draw_face(size: int = SIZE) -> Image.Image:
    """A neutral face drawn by the training data's renderer, with an identity no training clip has.

    The built-in tiny model was trained on such renders (``liveact data synth``); this identity's seed
    is outside the dataset's per-clip seeds, so the demo shows a face the model has not seen.
    """
    identity = Identity.sample(np.random.default_rng(IDENTITY_SEED))
    return Image.fromarray(FaceRenderer(identity, size)(NEUTRAL))


def speak(path: Path) -> None:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), SENTENCES], check=True)
    subprocess.run(
        ["ffmpeg", "-y", "-loglevel", "error", "-i", str(raw), "-ac", "1", "-ar", "16000", str(path)], check=True
    )
    raw.unlink()


if __name__ == "__main__":
    draw_face().save(HERE / "face.png", optimize=True)
    speak(HERE / "speech.wav")
