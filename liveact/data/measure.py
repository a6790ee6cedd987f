"""Mouth opening measured from pixels alone: for generated video, where no renderer state exists.

``mouth_opening(frames, reference)`` -> (T,) the height of the dark mouth interior in each frame, as a
fraction of the face width found in the reference. It locates the mouth once, in the reference image
(``locate_mouth``), then in every frame measures how tall the dark region around that spot is.

What it assumes (true of ``liveact.data.face`` renders, and of a model that imitates them):

* one face, roughly centred, whose skin colour is the median colour of the image's central patch
  (``SKIN_PATCH``), against background and hair that differ from the skin by more than
  ``SKIN_DISTANCE`` (the renderer samples backgrounds that way);
* the reference shows the mouth closed, with lips redder than the skin ((R - G) / R higher by
  ``LIP_REDNESS``): the first such rows below the face's centre are the mouth;
* an open mouth's interior is far darker than the closed lips' seam (``DARK_HIGH`` / ``DARK_LOW`` of
  the seam's luminance), and the head stays within ``SEARCH_MARGIN`` of the image of its reference
  pose (translation, a few degrees of tilt).

Only pixels inside the reference face's horizontal span, pulled in by the margin, are measured, so
dark hair, background or a shirt beside a moving chin never count. Per pixel the darkness is a soft
0..1 ramp between the two thresholds, so anti-aliased or blurred edges count fractionally; per column
the darkness is summed (the interior's height in pixels, with sub-pixel resolution), and the opening
is the mean of the ``TOP_COLUMNS`` tallest columns over the face width. The mouth's width therefore
barely affects it, and it is comparable across identities and image sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MouthRegion", "locate_mouth", "luminance", "mouth_opening", "mouth_pixels"]

SKIN_PATCH = (0.42, 0.58, 0.4, 0.55)  # x0, x1, y0, y1 (fractions of the image) whose median colour is the skin
SKIN_DISTANCE = 40.0  # RGB distance under which a pixel is skin
FACE_ROW_MIN_SKIN = 0.3  # a face row holds at least this fraction of the most skin pixels in any row
LIP_BAND = 0.15  # lips are looked for within +- this fraction of the face width around its centre line
LIP_REDNESS = 0.1  # a lip pixel's (R - G) / R exceeds the skin's by this much
BOX_HALF_HEIGHT = 0.1  # measuring box: +- this fraction of the face width around the mouth (max opening ~0.08)
BOX_HALF_WIDTH = 0.15  # +- this fraction of the face width: the mouth's centre columns, wherever it moves
SEARCH_MARGIN = 0.04  # added on every side, fraction of the image: the head's motion (see motion.HEAD_LIMITS)
DARK_HIGH, DARK_LOW = 0.8, 0.45  # darkness ramps from 0 at DARK_HIGH to 1 at DARK_LOW x the seam's luminance
TOP_COLUMNS = 3  # columns averaged for the opening height
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luminance weights


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class MouthRegion:
    """Where and how to measure, found in the reference image."""

    box: tuple[int, int, int, int]  # y0, y1, x0, x1 in pixels
    mask: np.ndarray  # (y1 - y0, x1 - x0) bool: inside the reference face, pulled in by the motion margin
    face_width: float  # pixels
    dark_high: float  # luminance at and above which a pixel is not dark at all
    dark_low: float  # luminance at and below which a pixel is fully dark


def luminance(images: np.ndarray) -> np.ndarray:
    """(..., 3) uint8/float RGB -> (...,) float32 luminance 0..255."""
    return np.asarray(images, np.float32) @ LUMA


def _redness(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...,) (R - G) / (R + 1): lips score high, skin of any tone lower, grey/blue/green ~0."""
    return (rgb[..., 0] - rgb[..., 1]) / (rgb[..., 0] + 1.0)


def locate_mouth(reference: np.ndarray) -> MouthRegion:
    """Find the face by skin colour and the closed mouth within it, in the reference (H, W, 3) image."""
    ref = np.asarray(reference, np.float32)  # (H, W, 3)
    h, w = ref.shape[:2]
    px0, px1, py0, py1 = SKIN_PATCH
    skin = np.median(ref[round(py0 * h) : round(py1 * h), round(px0 * w) : round(px1 * w)].reshape(-1, 3), axis=0)
    is_skin = np.linalg.norm(ref - skin, axis=-1) < SKIN_DISTANCE  # (H, W)
    counts = is_skin.sum(axis=1)  # (H,)
    cols = np.arange(w)
    first = np.where(is_skin, cols, w).min(axis=1)  # (H,) first skin column, w where none
    last = np.where(is_skin, cols, -1).max(axis=1)  # (H,) last skin column, -1 where none
    face_rows = counts >= FACE_ROW_MIN_SKIN * max(int(counts.max()), 1)  # (H,)
    centre = round(0.5 * (py0 + py1) * h)
    if not face_rows[centre]:
        raise ValueError("no face found in the reference: the colour at its centre covers too little of it")
    top, bottom = centre, centre + 1
    while top > 0 and face_rows[top - 1]:
        top -= 1
    while bottom < h and face_rows[bottom]:
        bottom += 1
    upper = slice(top, centre + 1)  # forehead to mid-face: the widest part (ears), never neck or shirt
    face_width = float(np.max(last[upper] - first[upper] + 1))
    cx = float(np.median(0.5 * (first[upper] + last[upper])))

    # the lips: the first run of red rows below the centre, in a band around the face's centre line
    band = slice(max(0, round(cx - LIP_BAND * face_width)), round(cx + LIP_BAND * face_width) + 1)
    lip = _redness(ref[:, band]) > _redness(skin) + LIP_REDNESS  # (H, band)
    lip[: centre + 1] = False
    lip_rows = np.flatnonzero(lip.any(axis=1))
    if lip_rows.size == 0:
        raise ValueError("no mouth found in the reference: nothing below the face's centre is redder than the skin")
    end = lip_rows[0]
    while end + 1 < h and lip[end + 1].any():
        end += 1
    lip[end + 1 :] = False
    ys, xs = np.nonzero(lip)
    my, mx = float(ys.mean()), band.start + float(xs.mean())
    seam_luma = float(luminance(ref[:, band][lip]).min())  # the darkest part of the closed mouth

    margin = SEARCH_MARGIN * max(h, w)
    half_h, half_w = BOX_HALF_HEIGHT * face_width + margin, BOX_HALF_WIDTH * face_width + margin
    y0, y1 = max(0, int(np.floor(my - half_h))), min(h, int(np.ceil(my + half_h)) + 1)
    x0, x1 = max(0, int(np.floor(mx - half_w))), min(w, int(np.ceil(mx + half_w)) + 1)
    # the face's span in every row, eroded by the margin sideways and up/down (a raised head brings the
    # narrower chin rows into the box): what is face in the reference is still face in any frame
    m = int(np.ceil(margin))
    rows = np.arange(y0, y1)[:, None] + np.arange(-m, m + 1)[None, :]  # (h', 2m+1)
    rows = np.clip(rows, 0, h - 1)
    lo, hi = first[rows].max(axis=1) + margin, last[rows].min(axis=1) - margin  # (h',) each
    xx = np.arange(x0, x1)[None, :]  # (1, w')
    mask = (xx >= lo[:, None]) & (xx <= hi[:, None])  # (h', w')
    return MouthRegion((y0, y1, x0, x1), mask, face_width, DARK_HIGH * seam_luma, DARK_LOW * seam_luma)


def mouth_opening(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) frames, (H, W, 3) reference with the mouth closed -> (T,) float32 opening.

    The opening is the dark interior's height as a fraction of the face width (0 closed; the
    synthetic renderer's widest opening is about 0.1). See the module docstring for the assumptions.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1:] != np.shape(reference):
        raise ValueError(f"frames must be (T, H, W, 3) like the reference {np.shape(reference)}, got {frames.shape}")
    region = locate_mouth(reference)
    y0, y1, x0, x1 = region.box
    luma = luminance(frames[:, y0:y1, x0:x1])  # (T, h', w')
    span = max(region.dark_high - region.dark_low, 1e-3)
    dark = np.clip((region.dark_high - luma) / span, 0.0, 1.0) * region.mask  # (T, h', w')
    heights = np.sort(dark.sum(axis=1), axis=1)[:, -TOP_COLUMNS:]  # (T, k) the tallest columns
    return (heights.mean(axis=1) / region.face_width).astype(np.float32)


def mouth_pixels(reference: np.ndarray) -> np.ndarray:
    """(H, W) float32: 1 on the pixels of the reference's mouth measuring box (head motion included), else 0.

    All 0 where no mouth is found (nothing to emphasise).
    """
    region = np.zeros(reference.shape[:2], np.float32)
    try:
        y0, y1, x0, x1 = locate_mouth(reference).box
    except ValueError:
        return region
    region[y0:y1, x0:x1] = 1.0
    return region
