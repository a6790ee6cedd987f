"""Synthetic talking heads (liveact.data): determinism, the renderer, mouth targets, motion, measurement, datasets."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

from liveact.cli.main import main
from liveact.data import clip as clip_mod
from liveact.data import speech
from liveact.data.clip import clip_seed, read_clip, synth_clip, write_dataset
from liveact.data.face import (
    EYE_ASPECT,
    EYE_Y,
    FACE_CENTRE_Y,
    MOUTH_Y,
    NEUTRAL,
    FaceRenderer,
    FaceState,
    Identity,
)
from liveact.data.measure import mouth_opening
from liveact.data.motion import HEAD_LIMITS, blink_track, head_motion, smooth
from liveact.data.speech import VISUAL_LEAD_S, frame_rms, mouth_from_audio, speak
from liveact.media import probe

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

SR, FPS, SIZE = 16000, 20.0, 64
SENTENCE = "Hello! I am a tiny talking head. My lips follow the speech, one chunk at a time."


@pytest.fixture(scope="module")
def clip():
    return synth_clip(7, 3.0)


@pytest.fixture(scope="module")
def spoken():
    """Real espeak-ng speech with silence around it: (S,) float32 at 16 kHz."""
    pcm = speak(SENTENCE, "en", 160, 50)
    pad = np.zeros(round(0.4 * SR), np.float32)
    return np.concatenate([pad, pcm, pad])


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


# ---------------------------------------------------------------------------------------------
# determinism


@pytest.mark.integration
def test_same_seed_same_clip_other_seed_other_person(clip):
    again = synth_clip(7, 3.0)
    for name in ("frames", "audio", "mouth", "blink", "head", "reference"):
        assert np.array_equal(getattr(clip, name), getattr(again, name)), name
    assert clip.text == again.text and clip.identity == again.identity
    other = synth_clip(8, 3.0)
    assert other.identity != clip.identity and other.text != clip.text
    assert clip.frames.shape == (60, SIZE, SIZE, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (3 * SR,) and clip.audio.dtype == np.float32
    assert clip.mouth.shape == (60, 2) and clip.blink.shape == (60,) and clip.head.shape == (60, 3)
    assert np.array_equal(clip.reference, FaceRenderer(clip.identity)(NEUTRAL))


# ---------------------------------------------------------------------------------------------
# renderer


def changed(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > 0)


@pytest.mark.parametrize("seed", range(5))
def test_mouth_and_blink_change_only_their_regions(seed):
    ident = Identity.sample(np.random.default_rng(seed))
    r = FaceRenderer(ident, SIZE)
    ref = r(NEUTRAL)
    b = 0.5 * ident.face_height * SIZE  # face half-height, pixels
    a = b * ident.face_aspect
    cx, cy = SIZE / 2, FACE_CENTRE_Y * SIZE

    ys, xs = changed(ref, r(FaceState(mouth_open=1.0)))
    assert len(ys) > 10
    assert ys.min() >= cy + (MOUTH_Y - 0.25) * b - 1 and ys.max() <= cy + (MOUTH_Y + 0.25) * b + 1  # lower face
    assert np.abs(xs + 0.5 - cx).max() <= 0.6 * a + 1  # centre

    ys, xs = changed(ref, r(FaceState(blink=1.0)))
    assert len(ys) > 4
    eye_y, eye_hh = cy + EYE_Y * b, EYE_ASPECT * ident.eye_size * a
    assert ys.min() >= eye_y - eye_hh - 1.5 and ys.max() <= eye_y + eye_hh + 1.5
    assert np.abs(np.abs(xs + 0.5 - cx) - ident.eye_spacing * a).max() <= ident.eye_size * a + 1.5


def test_identities_look_different():
    faces, backgrounds = [], []
    for seed in range(8):
        ident = Identity.sample(np.random.default_rng(100 + seed))
        img = FaceRenderer(ident, SIZE)(NEUTRAL).astype(float)
        faces.append(img[28:34, 26:38].reshape(-1, 3).mean(axis=0))  # cheeks and nose
        backgrounds.append(np.concatenate([img[:6, :6], img[:6, -6:]]).reshape(-1, 3).mean(axis=0))
        assert Identity.from_dict(json.loads(json.dumps(ident.to_dict()))) == ident
    for colours in (faces, backgrounds):
        assert max(np.linalg.norm(p - q) for p, q in itertools.combinations(colours, 2)) > 100
    looks = [np.concatenate(pair) for pair in zip(faces, backgrounds, strict=True)]  # (6,) face + background
    assert min(np.linalg.norm(p - q) for p, q in itertools.combinations(looks, 2)) > 30  # no two look alike
    luma = [float(f @ [0.299, 0.587, 0.114]) for f in faces]
    assert max(luma) - min(luma) > 70  # skin tones from light to dark


# ---------------------------------------------------------------------------------------------
# mouth targets from audio


@pytest.mark.integration
def test_opening_follows_loudness_with_the_visual_lead(spoken):
    mouth = mouth_from_audio(spoken, SR, FPS)
    opening = mouth[:, 0]
    assert mouth.shape == (round(len(spoken) / SR * FPS), 2)
    assert 0 <= mouth.min() and mouth.max() <= 1
    assert np.percentile(opening[opening > 0.05], 90) > 0.8  # speech uses most of the range
    assert corr(opening, frame_rms(spoken, SR, FPS, offset_s=VISUAL_LEAD_S)) > 0.7
    rms = frame_rms(spoken, SR, FPS)
    lags = range(-4, 6)  # lag > 0: the mouth at t matches the audio at t + lag (mouth earlier)
    scores = [
        corr(opening[: len(opening) - lag], rms[lag:]) if lag >= 0 else corr(opening[-lag:], rms[:lag]) for lag in lags
    ]
    best = list(lags)[int(np.argmax(scores))]
    assert abs(best - VISUAL_LEAD_S * FPS) <= 1


def test_silence_keeps_the_mouth_closed():
    mouth = mouth_from_audio(np.zeros(2 * SR, np.float32), SR, FPS)
    assert mouth.shape == (40, 2) and (mouth[:, 0] < 0.05).all()


def vowel(formants: list[tuple[float, float]], f0: float = 120.0, seconds: float = 1.0) -> np.ndarray:
    """A harmonic buzz shaped by Gaussian formants (centre Hz, bandwidth Hz)."""
    t = np.arange(round(seconds * SR)) / SR
    x = np.zeros_like(t)
    for k in range(1, int(4000 / f0)):
        gain = sum(np.exp(-0.5 * ((k * f0 - f) / bw) ** 2) for f, bw in formants)
        x += gain * np.sin(2 * np.pi * k * f0 * t)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_front_vowel_is_wider_than_rounded_vowel():
    ee = mouth_from_audio(vowel([(270, 80), (2300, 120), (3000, 150)]), SR, FPS)[4:-4, 1]
    oo = mouth_from_audio(vowel([(300, 80), (870, 100)]), SR, FPS)[4:-4, 1]
    assert ee.mean() > 0.7 and oo.mean() < 0.3


# ---------------------------------------------------------------------------------------------
# blinks and head motion


def test_blinks_are_plausible_and_reopen():
    track = blink_track(np.random.default_rng(3), int(60 * FPS), FPS)
    assert 0 <= track.min() and track.max() <= 1
    closed = track > 0.5
    onsets = np.flatnonzero(closed[1:] & ~closed[:-1])
    assert 6 <= len(onsets) <= 30  # mean interval 4 s: ~15 a minute
    active = np.concatenate([[0], (track > 0).astype(int), [0]])
    starts, ends = np.flatnonzero(np.diff(active) == 1), np.flatnonzero(np.diff(active) == -1)
    assert len(starts) == len(onsets) + int(closed[0])
    assert ((ends - starts) <= 0.25 * FPS + 1).all()  # each blink is brief and back to open (0) after it


@pytest.mark.integration
def test_head_motion_is_small_and_follows_prosody(clip, spoken):
    assert (np.abs(clip.head) <= np.asarray(HEAD_LIMITS) + 1e-6).all() and clip.head.std(axis=0).min() > 0
    loudness = frame_rms(spoken, SR, FPS)
    scores = []
    for seed in range(4):
        head = head_motion(np.random.default_rng(seed), loudness, FPS)
        assert (np.abs(head) <= np.asarray(HEAD_LIMITS) + 1e-6).all()
        scores.append(corr(head[:, 1], smooth(loudness, FPS, 0.25)))
    assert min(scores) > 0.2 and np.mean(scores) > 0.4


# ---------------------------------------------------------------------------------------------
# measurement


@pytest.mark.integration
def test_measured_opening_tracks_the_true_opening(clip):
    measured = mouth_opening(clip.frames, clip.reference)
    assert clip.head.std(axis=0).max() > 0.002  # the head moves in this clip
    assert corr(measured, clip.mouth[:, 0]) > 0.9
    assert measured[clip.mouth[:, 0] < 0.02].max(initial=0) < 0.02  # a closed mouth reads closed


# ---------------------------------------------------------------------------------------------
# dataset and CLI


@pytest.mark.integration
def test_write_read_and_extend_dataset(tmp_path):
    out = write_dataset(tmp_path / "ds", clips=1, seconds=2.0, progress=False)
    first = (out / "clip_00000.npz").stat().st_mtime_ns
    write_dataset(out, clips=2, seconds=2.0, progress=False)  # extends: clip 0 is kept, clip 1 added
    assert sorted(p.name for p in out.glob("*.npz")) == ["clip_00000.npz", "clip_00001.npz"]
    assert (out / "clip_00000.npz").stat().st_mtime_ns == first
    info = json.loads((out / "dataset.json").read_text())
    assert info == {"format": 1, "size": 64, "fps": 20.0, "sample_rate": SR, "seconds": 2.0, "seed": 0, "clips": 2}
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [e["file"] for e in lines] == ["clip_00000.npz", "clip_00001.npz"] and lines[1]["frames"] == 40
    loaded = read_clip(out / "clip_00001.npz")
    fresh = synth_clip(clip_seed(0, 1), 2.0)
    for name in clip_mod.ARRAYS:
        assert np.array_equal(getattr(loaded, name), getattr(fresh, name)), name
    assert loaded.identity == fresh.identity and loaded.text == fresh.text == lines[1]["text"]
    with pytest.raises(ValueError, match="other settings"):
        write_dataset(out, clips=2, seconds=3.0, progress=False)


@pytest.mark.integration
def test_cli_synth_with_preview(tmp_path, capsys):
    out, preview = tmp_path / "ds", tmp_path / "preview.mp4"
    argv = ["data", "synth", "--out", str(out), "--clips", "2", "--seconds", "2", "--seed", "3"]
    assert main([*argv, "--preview", str(preview)]) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 2
    assert len(list(out.glob("clip_*.npz"))) == 2 and (out / "manifest.jsonl").exists()
    info = probe(preview)
    assert info.video is not None and info.video.width == 64 and info.audio is not None
    assert abs(info.duration - 2.0) < 0.15


def test_data_help_lists_synth(capsys):
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    assert "synth" in capsys.readouterr().out


def test_missing_espeak_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="espeak-ng"):
        speak("hello")
