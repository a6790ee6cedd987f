"""Regenerate the demo inputs: ``face.png`` (a drawn reference face) and ``speech.wav`` (espeak-ng).

Run from the repository root: .venv/bin/python examples/make_examples.py  (needs espeak-ng and ffmpeg).
Both files are committed so the README's demo runs offline without either tool.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent
SIZE = 256
SENTENCES = (
    "Hello! I am a tiny talking head, generated one chunk at a time. "
    "My lips follow the speech, and my memory stays the same size for hours."
)


def draw_face(size: int = SIZE) -> Image.Image:
    s = size / 256
    img = Image.new("RGB", (size, size), (70, 110, 150))
    d = ImageDraw.Draw(img)
    box = lambda x0, y0, x1, y1: [round(v * s) for v in (x0, y0, x1, y1)]  # noqa: E731
    d.rectangle(box(78, 200, 178, 256), fill=(60, 60, 90))  # shoulders
    d.rectangle(box(112, 170, 144, 210), fill=(224, 178, 150))  # neck
    d.ellipse(box(70, 36, 186, 196), fill=(232, 188, 160))  # face
    d.pieslice(box(64, 26, 192, 140), 180, 360, fill=(80, 50, 30))  # hair
    for cx in (104, 152):
        d.ellipse(box(cx - 13, 98, cx + 13, 116), fill=(255, 255, 255))  # eye white
        d.ellipse(box(cx - 6, 100, cx + 6, 114), fill=(50, 80, 40))  # iris
        d.line(box(cx - 14, 88, cx + 14, 86), fill=(70, 45, 30), width=round(4 * s))  # brow
    d.polygon(
        [(round(128 * s), round(118 * s)), (round(120 * s), round(146 * s)), (round(136 * s), round(146 * s))],
        fill=(214, 160, 135),
    )  # nose
    d.ellipse(box(108, 158, 148, 170), fill=(160, 60, 60))  # closed mouth
    return img


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
