"""`liveact eval`'s scores on frames whose truth is known, and one short streamed evaluation run."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from liveact.data.clip import synth_clip
from liveact.data.face import NEUTRAL, FaceRenderer, Identity
from liveact.evaluation import EvalSettings, contact_sheet, evaluate, flicker, identity_drift, score_window
from liveact.evaluation.sheets import SEPARATOR, sheet_name


@pytest.fixture(scope="module")
def clip():
    return synth_clip(seed=5, seconds=10.0)


@pytest.mark.integration
def test_rendered_truth_is_in_sync_and_the_shuffled_control_is_not(clip):
    scores = score_window(10.0, clip.frames, clip.reference, clip.audio, clip.sample_rate, clip.fps)
    assert scores.frames == 200
    assert scores.lip_sync_r > 0.8  # the renderer draws the mouth the audio implies
    assert abs(scores.lip_sync_r_shuffled) < 0.3
    assert scores.mouth_open_mean > 0.01


@pytest.mark.integration
def test_a_still_reference_never_syncs(clip):
    still = np.repeat(clip.reference[None], len(clip.frames), axis=0)
    scores = score_window(10.0, still, clip.reference, clip.audio, clip.sample_rate, clip.fps)
    assert scores.lip_sync_r == 0.0 and scores.mouth_open_mean == 0.0  # no variance, no opening
    assert scores.identity_drift == 0.0 and scores.flicker == 0.0


@pytest.mark.integration
def test_identity_drift_grows_with_a_changed_face(clip):
    other = FaceRenderer(Identity.sample(np.random.default_rng(123)), 64)(NEUTRAL)
    own = identity_drift(clip.frames, clip.reference)
    assert own < 0.03  # speaking, blinking and small head motion
    assert identity_drift(np.repeat(other[None], 10, axis=0), clip.reference) > 5 * own


def test_flicker_ignores_steady_motion_and_sees_jitter():
    ramp = np.stack([np.full((8, 8, 3), 10 * t, np.uint8) for t in range(20)])  # brightness rising steadily
    assert flicker(ramp) == 0.0
    jitter = ramp.copy()
    jitter[1::2] += 20
    assert flicker(jitter) == pytest.approx(40 / 255, rel=1e-5)


@pytest.mark.integration
def test_a_contact_sheet_shows_the_reference_then_frames_spread_over_the_window(clip):
    sheet = contact_sheet(clip.frames, clip.reference, count=5)  # 200 frames: 0, 50, 100, 149, 199
    h, w = clip.reference.shape[:2]
    assert sheet.shape == (h, 6 * w + SEPARATOR, 3) and sheet.dtype == np.uint8
    assert np.array_equal(sheet[:, :w], clip.reference) and (sheet[:, w : w + SEPARATOR] == 255).all()
    for i, frame in enumerate((0, 50, 100, 149, 199)):
        x = w + SEPARATOR + i * w
        assert np.array_equal(sheet[:, x : x + w], clip.frames[frame])
    assert contact_sheet(clip.frames[:3], clip.reference).shape[1] == 4 * w + SEPARATOR  # fewer frames than asked


@pytest.mark.integration
def test_a_streamed_session_is_scored_in_windows_ending_at_the_marks(tmp_path):
    from liveact.pipeline import load_engine

    engine = load_engine("tiny")  # the scores' plumbing here; their values in the built-in model's test
    settings = EvalSettings(marks_s=(4.0, 8.0), window_s=4.0)
    report = evaluate(engine, settings, progress=False, sheets=tmp_path / "sheets")
    for mark in (4.0, 8.0):
        with Image.open(tmp_path / "sheets" / sheet_name(mark)) as sheet:  # reference + 9 frames, upscaled 2x
            assert sheet.size == (2 * (10 * 64 + SEPARATOR), 2 * 64)
    assert report["generated_s"] == 8.0 and report["trained"] == engine.trained
    assert [w["end_s"] for w in report["windows"]] == [4.0, 8.0]
    assert all(w["frames"] == 80 for w in report["windows"])
    for w in report["windows"]:
        assert all(np.isfinite(v) for v in w.values())
        assert 0 <= w["identity_drift"] <= 1 and 0 <= w["flicker"] <= 1


def test_marks_shorter_than_the_window_are_refused():
    with pytest.raises(ValueError, match="every mark must be >= window_s"):
        EvalSettings(marks_s=(5.0,), window_s=10.0)
