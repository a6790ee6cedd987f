"""The committed tiny model (liveact/weights/tiny, trained here by configs/train-tiny.json) is what `liveact
animate` runs by default, and what it makes is a talking face: a streamed session of a held-out identity
opens and closes the mouth with the speech (well above the shifted-audio control) and keeps the face.
Bounds are set from the measurement in the model card's scores, with margin."""

from __future__ import annotations

import json
import re

import pytest

from liveact.evaluation import EvalSettings, evaluate
from liveact.pipeline import load_engine
from liveact.weight_files import BUILTIN_WEIGHTS, DIT_SUBDIR, VAE_SUBDIR, builtin_dir

ROOT = BUILTIN_WEIGHTS / "tiny"
MARKS_S = (10.0, 20.0)
# measured on these windows: lip r 0.821 / 0.833 (control -0.027 / -0.028), mean opening 0.089, identity drift
# 0.058 (100 other identities' faces against this reference: 0.066 to 0.37, median 0.25); the hour: MODEL_CARD.md
MIN_LIP_R, MIN_LIP_MARGIN, MIN_OPENING, MAX_DRIFT = 0.6, 0.5, 0.04, 0.065


@pytest.fixture(scope="module")
def report():
    engine = load_engine("tiny")
    assert engine.trained
    return evaluate(engine, EvalSettings(marks_s=MARKS_S), progress=False)


def test_the_built_in_weights_are_committed_with_their_card():
    assert builtin_dir("tiny") == ROOT
    assert (ROOT / DIT_SUBDIR / "config.json").is_file() and (ROOT / VAE_SUBDIR / "config.json").is_file()
    assert sum(p.stat().st_size for p in ROOT.rglob("*.safetensors")) < 20 * 2**20  # a few MB
    card = (ROOT / "MODEL_CARD.md").read_text()
    assert card.splitlines()[0].endswith(": the built-in model") and "## Scores" in card
    hour = re.search(r"^\| 3600 \| (-?[\d.]+) \| (-?[\d.]+) \|", card, re.M)  # the hour mark: r, control
    assert hour is not None and float(hour[1]) > float(hour[2]) + MIN_LIP_MARGIN


@pytest.mark.integration
def test_a_streamed_session_is_a_talking_face(report):
    for w in report["windows"]:
        assert w["lip_sync_r"] > MIN_LIP_R, w
        assert w["lip_sync_r"] > w["lip_sync_r_shuffled"] + MIN_LIP_MARGIN, w
        assert w["mouth_open_mean"] > MIN_OPENING, w  # the mouth opens
        assert w["identity_drift"] < MAX_DRIFT, w  # and the face stays the reference's


def test_the_card_quotes_the_recipe_that_made_it():
    summary = json.loads((ROOT / VAE_SUBDIR / "training-summary.json").read_text())
    assert summary["vae_context"]["steps"] > 0
    card = (ROOT / "MODEL_CARD.md").read_text()
    assert re.search(r"^\| nf \| \d+ \|", card, re.M) and re.search(r"^\| convkv \| \d+ \|", card, re.M)
