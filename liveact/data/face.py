"""Procedural talking heads: a sampled ``Identity`` and a ``FaceState`` per frame -> an RGB frame.

The renderer draws in the style of the demo face (``examples/face.png``): flat-shaded PIL shapes,
a face ellipse with a shaped jaw, hair, brows, a nose shadow, eyes with irises and a mouth whose
dark interior opens with ``mouth_open``. It draws at ``SUPERSAMPLE`` x the output size and
downsamples with a box filter, so edges are anti-aliased and small changes (a mouth opening by a
fraction of a pixel at 64x64) still move pixel values smoothly.

Layers: a static body layer (background gradient, shirt, neck) and a head layer (back hair, face,
hair, brows, nose, eyes, mouth) that is translated by (dx, dy) and rotated by ``tilt`` about the
neck before it is composited: head motion moves the head over a still background, not the image.

Coordinates are fractions of the image size; the face is centred at (0.5, ``FACE_CENTRE_Y``).
Because the renderer knows the state, every frame comes with its true mouth opening, width, blink
and head pose (see ``liveact.data.clip``); ``liveact.data.measure`` reads the opening back from
pixels alone.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "HAIR_STYLES",
    "MOUTH_INTERIOR",
    "NEUTRAL",
    "SUPERSAMPLE",
    "FaceRenderer",
    "FaceState",
    "Identity",
    "render",
]

RGB = tuple[int, int, int]

SUPERSAMPLE = 4  # draw at 4x the output size, box-downsample: anti-aliased edges, sub-pixel motion
FACE_CENTRE_Y = 0.45  # face centre, fraction of the image height from the top
MOUTH_INTERIOR: RGB = (28, 8, 12)  # the open mouth's inside: darker than any skin, lip or hair-free face area
EYE_WHITE: RGB = (242, 238, 232)
PUPIL: RGB = (12, 10, 10)
LASH: RGB = (30, 20, 18)  # upper-lid line, and the whole visible eye when closed

# face geometry, in units of the face's half-height B (half-width A = B * aspect) unless named otherwise
EYE_Y = -0.12  # eye centres, relative to the face centre
EYE_ASPECT = 0.55  # eye half-height / eye half-width
IRIS_RADIUS = 0.85  # of the eye half-height: the iris touches both lids when open
PUPIL_RADIUS = 0.45  # of the iris radius
LID_TRAVEL = 0.85  # fraction of the eye height the upper lid travels down when fully closed
LASH_WIDTH = 0.025  # upper-lid line width
BROW_GAP = 0.1  # gap between the eye top and the brow
NOSE_TOP, NOSE_TIP = 0.02, 0.3  # nose shadow from just below the eye line to the tip
NOSE_HALF_WIDTH = 0.09  # half-width of the nose tip shadow, units of A
MOUTH_Y = 0.55  # mouth centre below the face centre
MOUTH_OPEN_MAX = 0.14  # interior half-height at mouth_open = 1
MOUTH_WIDTH_NARROW, MOUTH_WIDTH_WIDE = 0.72, 1.15  # half-width factor at mouth_width = 0 ("oo") and 1 ("ee")
LIP_SEAM_WIDTH = 0.022  # the line between closed lips
LIP_SEAM_DARKEN = 0.6  # closed-lip seam colour = lip colour x this (still far lighter than MOUTH_INTERIOR)
NECK_HALF_WIDTH = 0.45  # units of A
NECK_TOP, NECK_BOTTOM = 0.3, 1.35  # the neck starts inside the face so head motion never shows a gap
NECK_SHADE = 0.82  # neck colour = skin x this (the jaw's shadow)
EAR_Y, EAR_HALF_HEIGHT, EAR_HALF_WIDTH = -0.05, 0.16, 0.1  # ears: centre, half sizes (width in units of A)
SHOULDER_TOP = 1.08  # shirt top below the face centre
SHOULDER_HALF_WIDTH = 0.44  # fraction of the image width
JAW_POINTS = 72  # polygon vertices of the face outline
HAIR_CAP_CENTRE, HAIR_CAP_HALF_HEIGHT = -0.41, 0.72  # the cap: upper half of an ellipse over the forehead
HAIR_CAP_HALF_WIDTH = 1.1  # units of A
CURL_COUNT = 11  # curls around the crown for the "curly" style
DARKEN_BALD_BROW = 0.45  # brow colour of a bald identity = skin x this

HAIR_STYLES = ("bald", "short", "long", "bob", "curly", "bun")

# identity sampling ranges
SKIN_TONES: tuple[RGB, ...] = (  # light to dark; a tone is interpolated between neighbours
    (255, 226, 200),
    (241, 196, 164),
    (226, 174, 134),
    (198, 136, 98),
    (160, 104, 68),
    (120, 76, 48),
    (88, 56, 38),
)
HAIR_COLOURS: tuple[RGB, ...] = (
    (20, 16, 14),  # black
    (58, 38, 24),  # dark brown
    (104, 68, 40),  # brown
    (150, 70, 34),  # auburn
    (214, 180, 110),  # blond
    (170, 168, 164),  # grey
)
EYE_COLOURS: tuple[RGB, ...] = (
    (62, 38, 22),  # dark brown
    (96, 62, 36),  # brown
    (60, 110, 170),  # blue
    (70, 120, 60),  # green
    (120, 100, 50),  # hazel
    (110, 120, 130),  # grey
)
LIP_HUE: RGB = (200, 60, 70)  # blended into the skin tone for the lip colour: lips are redder than any skin
LIP_HUE_MIX = (0.45, 0.6)  # range of the hue's weight in the lip colour
LIP_DARKEN = (0.78, 0.92)
SKIN_JITTER = 8  # +- per channel around the interpolated tone
MIN_BACKGROUND_CONTRAST = 90.0  # RGB distance between skin and every background colour
PLAIN_BACKGROUND_P = 0.35  # probability of a plain (one-colour) background


@dataclass(frozen=True)
class FaceState:
    """What moves in one frame. Pose fields are fractions of the image (dx, dy) and radians (tilt)."""

    mouth_open: float = 0.0  # 0 closed (a lip line) .. 1 widest
    mouth_width: float = 0.5  # 0 rounded/narrow ("oo") .. 1 wide ("ee")
    blink: float = 0.0  # 0 open .. 1 closed
    dx: float = 0.0  # head translation right, fraction of the image width
    dy: float = 0.0  # head translation down, fraction of the image height
    tilt: float = 0.0  # head rotation, radians, positive = counter-clockwise on screen


NEUTRAL = FaceState()  # mouth closed, eyes open, centred: the reference image


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person look like themselves; colours are RGB 0..255."""

    face_height: float  # face (forehead to chin) height, fraction of the image
    face_aspect: float  # face width / height
    jaw: float  # -1 square .. 0 oval .. 1 pointed chin
    skin: RGB
    hair: RGB
    hair_style: str  # one of HAIR_STYLES
    eye_colour: RGB
    eye_spacing: float  # eye centre offset from the midline, units of the face half-width
    eye_size: float  # eye half-width, units of the face half-width
    brow_thickness: float  # units of the face half-height
    brow_slant: float  # brow rise towards the temple, units of the face half-height (negative = frown)
    lips: RGB
    mouth_size: float  # neutral mouth half-width, units of the face half-width
    lip_thickness: float  # units of the face half-height
    background: tuple[RGB, RGB]  # gradient start and end colour (equal = plain)
    background_angle: float  # gradient direction, radians (0 = left to right)
    shirt: RGB

    def __post_init__(self) -> None:
        if self.hair_style not in HAIR_STYLES:
            raise ValueError(f"hair_style must be one of {HAIR_STYLES}, got {self.hair_style!r}")

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        """A random identity: skin tones from light to dark, backgrounds that contrast with the skin."""
        skin = _jitter(rng, _interpolate(SKIN_TONES, rng.uniform(0.0, 1.0)), SKIN_JITTER)
        hair = _jitter(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], SKIN_JITTER)
        mix = float(rng.uniform(*LIP_HUE_MIX))
        dark = float(rng.uniform(*LIP_DARKEN))
        lips = tuple(round(((1 - mix) * s + mix * h) * dark) for s, h in zip(skin, LIP_HUE, strict=True))
        background = _contrasting_background(rng, skin)
        return cls(
            face_height=float(rng.uniform(0.56, 0.66)),
            face_aspect=float(rng.uniform(0.72, 0.88)),
            jaw=float(rng.uniform(-0.8, 0.6)),
            skin=skin,
            hair=hair,
            hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
            eye_colour=_jitter(rng, EYE_COLOURS[rng.integers(len(EYE_COLOURS))], SKIN_JITTER),
            eye_spacing=float(rng.uniform(0.36, 0.46)),
            eye_size=float(rng.uniform(0.15, 0.2)),
            brow_thickness=float(rng.uniform(0.03, 0.06)),
            brow_slant=float(rng.uniform(-0.03, 0.06)),
            lips=lips,  # type: ignore[arg-type]
            mouth_size=float(rng.uniform(0.28, 0.38)),
            lip_thickness=float(rng.uniform(0.035, 0.055)),
            background=background,
            background_angle=float(rng.uniform(0, 2 * math.pi)),
            shirt=_random_colour(rng),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: colours become lists."""
        return json_ready(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        """Inverse of ``to_dict`` (lists back to tuples)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown Identity fields {sorted(unknown)}")
        values = dict(data)
        for key in ("skin", "hair", "eye_colour", "lips", "shirt"):
            values[key] = tuple(int(c) for c in values[key])
        values["background"] = tuple(tuple(int(c) for c in colour) for colour in values["background"])
        return cls(**values)


def json_ready(value: Any) -> Any:
    """Tuples -> lists, recursively (what ``json.dumps`` then ``json.loads`` would give)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def _interpolate(palette: tuple[RGB, ...], t: float) -> RGB:
    x = t * (len(palette) - 1)
    i = min(int(x), len(palette) - 2)
    f = x - i
    return tuple(round((1 - f) * a + f * b) for a, b in zip(palette[i], palette[i + 1], strict=True))  # type: ignore[return-value]


def _jitter(rng: np.random.Generator, colour: RGB, amount: int) -> RGB:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)  # type: ignore[return-value]


def _random_colour(rng: np.random.Generator) -> RGB:
    return tuple(int(c) for c in rng.integers(20, 236, 3))  # type: ignore[return-value]


def _distance(a: RGB, b: RGB) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=float)))


def _contrasting_background(rng: np.random.Generator, skin: RGB) -> tuple[RGB, RGB]:
    """Two colours (equal for a plain background), each at least MIN_BACKGROUND_CONTRAST from the skin."""

    def pick() -> RGB:
        while True:
            colour = _random_colour(rng)
            if _distance(colour, skin) >= MIN_BACKGROUND_CONTRAST:
                return colour

    first = pick()
    return (first, first) if rng.uniform() < PLAIN_BACKGROUND_P else (first, pick())


def _scale(colour: RGB, factor: float) -> RGB:
    return tuple(int(np.clip(round(c * factor), 0, 255)) for c in colour)  # type: ignore[return-value]


class FaceRenderer:
    """Renders one identity at one size; the static parts (background, body, bare head) are drawn once."""

    def __init__(self, identity: Identity, size: int = 64) -> None:
        if size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        self.identity = identity
        self.size = size
        self.canvas = size * SUPERSAMPLE
        s = self.canvas
        self.cx = 0.5 * s
        self.cy = FACE_CENTRE_Y * s
        self.b = 0.5 * identity.face_height * s  # face half-height, supersampled pixels
        self.a = self.b * identity.face_aspect  # face half-width
        self.pivot = (self.cx, self.cy + self.b)  # the head turns about the chin/neck

    @cached_property
    def _body(self) -> Image.Image:
        """Background gradient, shirt and neck: RGBA, never moves."""
        ident, s, cx, cy, a, b = self.identity, self.canvas, self.cx, self.cy, self.a, self.b
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / max(s - 1, 1)  # (s, s) each, 0..1
        direction = xx * math.cos(ident.background_angle) + yy * math.sin(ident.background_angle)
        t = (direction - direction.min()) / max(float(np.ptp(direction)), 1e-6)  # (s, s) 0..1
        start, end = (np.asarray(c, np.float32) for c in ident.background)
        pixels = start + (end - start) * t[..., None]  # (s, s, 3)
        img = Image.fromarray(np.round(pixels).astype(np.uint8), "RGB").convert("RGBA")
        d = ImageDraw.Draw(img)
        neck = _scale(ident.skin, NECK_SHADE)
        top = cy + SHOULDER_TOP * b
        half = SHOULDER_HALF_WIDTH * s
        d.ellipse((cx - half, top, cx + half, top + 2 * (s - top) + half), fill=ident.shirt)  # shoulders
        neck_half = NECK_HALF_WIDTH * a
        d.rectangle((cx - neck_half, cy + NECK_TOP * b, cx + neck_half, cy + NECK_BOTTOM * b), fill=neck)
        collar = neck_half * 1.3
        d.chord((cx - collar, top - collar * 0.6, cx + collar, top + collar * 0.9), 0, 180, fill=neck)  # neckline
        return img

    @cached_property
    def _head(self) -> Image.Image:
        """The head without eyes and mouth: RGBA on transparent, in the neutral pose."""
        ident, cx, cy, a, b = self.identity, self.cx, self.cy, self.a, self.b
        img = Image.new("RGBA", (self.canvas, self.canvas), (0, 0, 0, 0))
        d = ImageDraw.Draw(img)
        style, hair = ident.hair_style, ident.hair
        if style == "long":
            back = (cx - 1.2 * a, cy - 1.05 * b, cx + 1.2 * a, cy + 0.95 * b)  # down to the shoulders
            d.rounded_rectangle(back, radius=0.5 * a, fill=hair)
        elif style == "bob":
            back = (cx - 1.18 * a, cy - 1.05 * b, cx + 1.18 * a, cy + 0.35 * b)  # to the jaw
            d.rounded_rectangle(back, radius=0.45 * a, fill=hair)
        elif style == "bun":
            r = 0.32 * a
            d.ellipse((cx - r, cy - 1.12 * b - 1.5 * r, cx + r, cy - 1.12 * b + 0.5 * r), fill=hair)
        ear_y = cy + EAR_Y * b
        for side in (-1, 1):  # ears, under the face edge
            ex = cx + side * a
            d.ellipse(
                (ex - EAR_HALF_WIDTH * a * 1.5, ear_y - EAR_HALF_HEIGHT * b, ex + EAR_HALF_WIDTH * a * 1.5,
                 ear_y + EAR_HALF_HEIGHT * b),
                fill=_scale(ident.skin, 0.93),
            )  # fmt: skip
        d.polygon(self._face_outline(), fill=ident.skin)
        cap = (
            cx - HAIR_CAP_HALF_WIDTH * a,
            cy + (HAIR_CAP_CENTRE - HAIR_CAP_HALF_HEIGHT) * b,
            cx + HAIR_CAP_HALF_WIDTH * a,
            cy + (HAIR_CAP_CENTRE + HAIR_CAP_HALF_HEIGHT) * b,
        )
        if style in ("short", "long", "bob", "bun"):
            d.pieslice(cap, 180, 360, fill=hair)
        elif style == "curly":
            d.pieslice(cap, 180, 360, fill=hair)
            r = 0.24 * a
            for k in range(CURL_COUNT):
                ang = math.pi * (1 + k / (CURL_COUNT - 1))  # along the top arc, left to right
                px = cx + HAIR_CAP_HALF_WIDTH * a * math.cos(ang)
                py = cy + HAIR_CAP_CENTRE * b + HAIR_CAP_HALF_HEIGHT * b * math.sin(ang)
                d.ellipse((px - r, py - r, px + r, py + r), fill=hair)
        brow = hair if style != "bald" else _scale(ident.skin, DARKEN_BALD_BROW)
        eye_y = cy + EYE_Y * b
        eye_hw = ident.eye_size * a
        brow_y = eye_y - EYE_ASPECT * eye_hw - BROW_GAP * b
        for side in (-1, 1):
            ex = cx + side * ident.eye_spacing * a
            inner = (ex - side * 1.1 * eye_hw, brow_y)
            outer = (ex + side * 1.1 * eye_hw, brow_y - ident.brow_slant * b)
            d.line((inner, outer), fill=brow, width=max(1, round(ident.brow_thickness * b)))
        nose = _scale(ident.skin, 0.84)
        d.polygon(
            [
                (cx, cy + NOSE_TOP * b),
                (cx - NOSE_HALF_WIDTH * a, cy + NOSE_TIP * b),
                (cx + NOSE_HALF_WIDTH * a, cy + NOSE_TIP * b),
            ],
            fill=nose,
        )
        return img

    def _face_outline(self) -> list[tuple[float, float]]:
        """The face: an ellipse whose lower half narrows (pointed, jaw > 0) or widens (square, jaw < 0)."""
        jaw = self.identity.jaw
        points = []
        for k in range(JAW_POINTS):
            t = 2 * math.pi * k / JAW_POINTS
            x, y = math.cos(t), math.sin(t)  # y > 0 is the lower half (image y grows down)
            if y > 0:
                squareness = 1 + (-jaw) * 0.25 * math.sin(math.pi * y)  # widens the cheeks/jaw when square
                x *= squareness * (1 - max(jaw, 0) * 0.35 * y**2)  # narrows towards the chin when pointed
            points.append((self.cx + self.a * x, self.cy + self.b * y))
        return points

    def _draw_eyes(self, img: Image.Image, blink: float) -> None:
        ident, cx, b, a = self.identity, self.cx, self.b, self.a
        eye_y = self.cy + EYE_Y * b
        hw = ident.eye_size * a
        hh = EYE_ASPECT * hw
        top = eye_y - hh + float(np.clip(blink, 0, 1)) * LID_TRAVEL * 2 * hh  # the upper lid comes down
        bottom = eye_y + hh
        lash = max(1, round(LASH_WIDTH * b))
        for side in (-1, 1):
            ex = cx + side * ident.eye_spacing * a
            x0, x1 = ex - hw, ex + hw
            box = (math.floor(x0), math.floor(eye_y - hh), math.ceil(x1) + 1, math.ceil(bottom) + 1)
            w, h = box[2] - box[0], box[3] - box[1]
            eye = Image.new("RGBA", (w, h), EYE_WHITE)  # the open eye, in local coordinates
            ed = ImageDraw.Draw(eye)
            ir = IRIS_RADIUS * hh
            lx, ly = ex - box[0], eye_y - box[1]
            ed.ellipse((lx - ir, ly - ir, lx + ir, ly + ir), fill=ident.eye_colour)
            pr = PUPIL_RADIUS * ir
            ed.ellipse((lx - pr, ly - pr, lx + pr, ly + pr), fill=PUPIL)
            mask = Image.new("L", (w, h), 0)  # the aperture between the lids
            if bottom - top > 1:
                ImageDraw.Draw(mask).ellipse((x0 - box[0], top - box[1], x1 - box[0], bottom - box[1]), fill=255)
            img.paste(eye, box[:2], mask)
            d = ImageDraw.Draw(img)
            if bottom - top > 2 * lash:
                d.arc((x0, top, x1, bottom), 180, 360, fill=LASH, width=lash)  # upper-lid line
            else:
                d.line(((x0, (top + bottom) / 2), (x1, (top + bottom) / 2)), fill=LASH, width=lash)  # closed

    def _draw_mouth(self, img: Image.Image, open_: float, width: float) -> None:
        ident = self.identity
        mx, my = self.cx, self.cy + MOUTH_Y * self.b
        factor = MOUTH_WIDTH_NARROW + (MOUTH_WIDTH_WIDE - MOUTH_WIDTH_NARROW) * float(np.clip(width, 0, 1))
        hw = ident.mouth_size * self.a * factor
        inner_hh = float(np.clip(open_, 0, 1)) * MOUTH_OPEN_MAX * self.b
        lip = ident.lip_thickness * self.b
        d = ImageDraw.Draw(img)
        d.ellipse((mx - hw - 0.5 * lip, my - inner_hh - lip, mx + hw + 0.5 * lip, my + inner_hh + lip), fill=ident.lips)
        seam = max(1, round(LIP_SEAM_WIDTH * self.b))
        if inner_hh > 0.5 * seam:
            d.ellipse((mx - hw, my - inner_hh, mx + hw, my + inner_hh), fill=MOUTH_INTERIOR)
        else:  # closed: a seam between the lips, not the dark interior
            d.line(((mx - hw, my), (mx + hw, my)), fill=_scale(ident.lips, LIP_SEAM_DARKEN), width=seam)

    def __call__(self, state: FaceState = NEUTRAL) -> np.ndarray:
        """One frame: (size, size, 3) uint8 RGB."""
        head = self._head.copy()
        self._draw_eyes(head, state.blink)
        self._draw_mouth(head, state.mouth_open, state.mouth_width)
        if state.dx or state.dy or state.tilt:
            # premultiplied alpha: transparent pixels must not bleed black into the edge when resampled
            head = (
                head.convert("RGBa")
                .rotate(
                    math.degrees(state.tilt),
                    resample=Image.Resampling.BICUBIC,
                    center=self.pivot,
                    translate=(state.dx * self.canvas, state.dy * self.canvas),
                )
                .convert("RGBA")
            )
        frame = Image.alpha_composite(self._body, head).convert("RGB")
        frame = frame.resize((self.size, self.size), Image.Resampling.BOX)
        return np.asarray(frame, dtype=np.uint8)


def render(identity: Identity, state: FaceState = NEUTRAL, size: int = 64) -> np.ndarray:
    """One frame of ``identity`` in ``state``: (size, size, 3) uint8. Use ``FaceRenderer`` for many frames."""
    return FaceRenderer(identity, size)(state)
