"""Pictures outside the tiny model's world are told apart from the faces it knows, by a measured threshold."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

from liveact.data.face import Identity, render
from liveact.media import load_reference_image
from liveact.pipeline.reference import CARTOON_FLAT_SHARE, flat_share, reference_fit

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
IDENTITIES = 200


def photo_crops() -> list[np.ndarray]:
    """A portrait photograph (matplotlib's sample grace_hopper.jpg) and four crops of it, at 64x64."""
    data = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    boxes = [(0.2, 0.05, 0.8, 0.55), (0.25, 0.1, 0.75, 0.5), (0.1, 0.0, 0.9, 0.7), (0.3, 0.15, 0.7, 0.45)]
    out = [load_reference_image(data, 64, 64)]
    for left, top, right, bottom in boxes:
        buf = io.BytesIO()
        im.crop((int(left * w), int(top * h), int(right * w), int(bottom * h))).save(buf, "PNG")
        out.append(load_reference_image(buf.getvalue(), 64, 64))
    return out


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def test_training_faces_and_photos_fall_on_either_side_with_a_margin():
    faces = [flat_share(render(Identity.sample(np.random.default_rng(s)))) for s in range(IDENTITIES)]
    photos = [flat_share(p) for p in photo_crops()]
    assert min(faces) >= CARTOON_FLAT_SHARE + 0.1  # measured 0.49
    assert max(photos) <= CARTOON_FLAT_SHARE - 0.1  # measured 0.23
    assert flat_share(load_reference_image(FACE.read_bytes(), 64, 64)) >= CARTOON_FLAT_SHARE  # the example: 0.64


def test_only_the_trained_tiny_model_judges():
    photo = photo_crops()[0]
    fit = reference_fit(photo, "tiny", trained=True)
    assert fit is not None and not fit.inside
    assert "--preset liveact-18b --model DIR" in fit.warning()
    assert reference_fit(photo, "tiny", trained=False) is None  # fresh weights: nothing is a face anyway
    assert reference_fit(photo, "liveact-18b", trained=True) is None
    face = reference_fit(load_reference_image(FACE.read_bytes(), 64, 64), "tiny", trained=True)
    assert face is not None and face.inside and face.warning() is None


@pytest.mark.parametrize("size", [64, 128])
def test_judged_at_the_models_size_whatever_the_session_size(size):
    """A session at 128x128 resizes the reference twice (to the session, then to 64): measured 0.69 vs 0.64."""
    assert flat_share(load_reference_image(FACE.read_bytes(), size, size)) >= CARTOON_FLAT_SHARE + 0.2
    assert flat_share(load_reference_image(_png(photo_crops()[1]), size, size)) < 0.2
