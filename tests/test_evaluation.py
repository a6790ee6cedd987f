"""`liveact eval`'s scores on frames whose truth is known, and one short streamed evaluation run."""

from __future__ import annotations

import numpy as np
import pytest

from liveact.data.clip import synth_clip
from liveact.data.face import NEUTRAL, FaceRenderer, Identity
from liveact.evaluation import EvalSettings, evaluate, flicker, identity_drift, score_window


@pytest.fixture(scope="module")
def clip():
    return synth_clip(seed=5, seconds=10.0)


def test_rendered_truth_is_in_sync_and_the_shuffled_control_is_not(clip):
    scores = score_window(10.0, clip.frames, clip.reference, clip.audio, clip.sample_rate, clip.fps)
    assert scores.frames == 200
    assert scores.lip_sync_r > 0.8  # the renderer draws the mouth the audio implies
    assert abs(scores.lip_sync_r_shuffled) < 0.3
    assert scores.mouth_open_mean > 0.01


def test_a_still_reference_never_syncs(clip):
    still = np.repeat(clip.reference[None], len(clip.frames), axis=0)
    scores = score_window(10.0, still, clip.reference, clip.audio, clip.sample_rate, clip.fps)
    assert scores.lip_sync_r == 0.0 and scores.mouth_open_mean == 0.0  # no variance, no opening
    assert scores.identity_drift == 0.0 and scores.flicker == 0.0


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


def test_a_streamed_session_is_scored_in_windows_ending_at_the_marks():
    from liveact.pipeline import load_engine

    engine = load_engine("tiny")  # the scores' plumbing here; their values in the built-in model's test
    report = evaluate(engine, EvalSettings(marks_s=(4.0, 8.0), window_s=4.0), progress=False)
    assert report["generated_s"] == 8.0 and report["trained"] == engine.trained
    assert [w["end_s"] for w in report["windows"]] == [4.0, 8.0]
    assert all(w["frames"] == 80 for w in report["windows"])
    for w in report["windows"]:
        assert all(np.isfinite(v) for v in w.values())
        assert 0 <= w["identity_drift"] <= 1 and 0 <= w["flicker"] <= 1


def test_marks_shorter_than_the_window_are_refused():
    with pytest.raises(ValueError, match="every mark must be >= window_s"):
        EvalSettings(marks_s=(5.0,), window_s=10.0)
