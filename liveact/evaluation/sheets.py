"""Contact sheets of scored windows: the reference, then frames evenly spaced through the window, in one
row of a PNG, so an hour-long evaluation can be looked at, not only scored (what the face looks like at
10 s and at 60 min, side by side with what it should look like)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["SHEET_FRAMES", "contact_sheet", "sheet_name", "write_sheet"]

SHEET_FRAMES = 9  # window frames per sheet, after the reference
SHEET_SCALE = 2  # nearest-neighbour upscale: 64x64 frames are small on a screen
SEPARATOR = 4  # pixels of white between the reference and the frames


def contact_sheet(frames: np.ndarray, reference: np.ndarray, count: int = SHEET_FRAMES) -> np.ndarray:
    """(H, (count + 1) W + SEPARATOR, 3) uint8: the reference, a gap, then ``count`` frames of (T, H, W, 3)."""
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    gap = np.full((reference.shape[0], SEPARATOR, 3), 255, np.uint8)
    return np.concatenate([reference, gap, *frames[picks]], axis=1)


def sheet_name(end_s: float) -> str:
    return f"sheet-{end_s:g}s.png"


def write_sheet(directory: Path, end_s: float, frames: np.ndarray, reference: np.ndarray) -> Path:
    sheet = contact_sheet(frames, reference)
    path = Path(directory) / sheet_name(end_s)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (sheet.shape[1] * SHEET_SCALE, sheet.shape[0] * SHEET_SCALE)
    Image.fromarray(sheet).resize(size, Image.NEAREST).save(path)
    return path
