"""Streaming rows: equal to offline (mel exactly, wav2vec2 within a measured tolerance), bounded memory,
rows addressable by absolute frame index, and the finality rule (lookahead)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from signals import SR, speech_like
from test_audio_features import w2v_dir  # noqa: F401  (fixture)

from liveact.audio import AudioConfig, RowsUnavailable, StreamingAudioFeatures, audio_features, load_backend
from liveact.config import ConfigError, get_preset
from liveact.sampling.audio_window import gather_window

TINY = get_preset("tiny")
MEL = AudioConfig.for_model(TINY.model)
W2V = AudioConfig(layers=2, channels=32)
MEL_TOLERANCE = 1e-5  # float64 inside, cast to float32: measured max |diff| 0.0
# Random tiny wav2vec2 on speech_like(6 s), defaults (21 history, 3 lookahead, blocks of 8): measured
# relative RMS 0.24, mean per-row cosine 0.97 (min 0.83), max |diff| 1.43 on rows of mean |x| 0.80.
# See wav2vec2.py for why windowed rows cannot be exact.
W2V_REL_RMS, W2V_MEAN_COS = 0.30, 0.95


def _sizes(kind: str, rng: np.random.Generator) -> list[int]:
    return {"1": [1], "137": [137], "1s": [SR], "random": [int(n) for n in rng.integers(1, 4 * SR // 10, 200)]}[kind]


def _stream(backend, cfg, x, sizes, fps=20) -> tuple[StreamingAudioFeatures, torch.Tensor]:
    s = StreamingAudioFeatures(backend, cfg, fps=fps)
    got, i, k, final = [], 0, 0, 0
    while i < x.size:
        part = s.push(x[i : i + sizes[k % len(sizes)]])
        assert part.start == final and part.stop == s.frames_final
        got.append(part.rows)
        i, k, final = i + sizes[k % len(sizes)], k + 1, part.stop
    got.append(s.finish().rows)
    return s, torch.cat(got)


@pytest.mark.parametrize("kind", ["1", "137", "1s", "random"])
def test_mel_stream_equals_offline(kind):
    x = speech_like(0.8 if kind == "1" else 4.0, seed=4)
    backend = load_backend(MEL)
    offline = audio_features(x, backend, MEL, fps=20)
    s, rows = _stream(backend, MEL, x, _sizes(kind, np.random.default_rng(0)))
    assert rows.shape == offline.shape and (rows - offline).abs().max() <= MEL_TOLERANCE
    for k in range(4):
        assert torch.allclose(s.chunk_window(TINY, k), gather_window(TINY, offline, k), atol=MEL_TOLERANCE)


@pytest.mark.parametrize("fps", [24, 25, 30])
def test_mel_stream_equals_offline_at_other_fps(fps):
    x = speech_like(2.0, seed=5)
    backend = load_backend(MEL)
    _, rows = _stream(backend, MEL, x, [977], fps=fps)
    assert (rows - audio_features(x, backend, MEL, fps=fps)).abs().max() <= MEL_TOLERANCE


def test_wav2vec2_stream_is_close_to_offline(w2v_dir):  # noqa: F811
    x = speech_like(6.0, seed=6)
    backend = load_backend(W2V, w2v_dir)
    offline = audio_features(x, backend, W2V, fps=20)
    _, a = _stream(backend, W2V, x, [137])
    _, b = _stream(backend, W2V, x, _sizes("random", np.random.default_rng(1)))
    assert torch.equal(a, b)  # fixed blocks: the push sizes never change a row
    rel = ((a - offline).norm() / offline.norm()).item()
    cos = torch.nn.functional.cosine_similarity(a.flatten(1), offline.flatten(1), dim=1).mean().item()
    assert a.shape == offline.shape and rel <= W2V_REL_RMS and cos >= W2V_MEAN_COS


def test_rows_become_final_after_the_lookahead():
    """fps 25 (no stretch): rows 0..7 need audio up to frame 7 + 3 = 10, i.e. 10 * 640 samples."""
    spf = MEL.samples_per_frame
    s = StreamingAudioFeatures(load_backend(MEL), MEL, fps=25)
    assert s.push(np.zeros(10 * spf - 1, dtype=np.float32)).rows.shape[0] == 0
    first = s.push(np.zeros(1, dtype=np.float32))
    assert (first.start, first.stop, s.frames_final) == (0, 8, 8)
    assert not s.chunk_ready(TINY, 0)
    with pytest.raises(RowsUnavailable, match="not final") as err:
        s.rows(0, 9)
    assert err.value.reason == "not_final"


def test_ten_minutes_in_small_pieces_keep_buffers_bounded():
    cfg = AudioConfig.for_model(TINY.model, retain_frames=128)
    backend = load_backend(cfg)
    s = StreamingAudioFeatures(backend, cfg, fps=20)
    rng = np.random.default_rng(2)
    voice = speech_like(4.0, seed=7)
    most: dict[str, int] = {}
    pushed, chunk = 0, 0
    while pushed < 600 * SR:
        n = int(rng.integers(1, 4000))
        piece = np.resize(np.roll(voice, -(pushed % voice.size)), n)
        s.push(piece)
        pushed += n
        most = {k: max(v, most.get(k, 0)) for k, v in s.buffer_sizes().items()}
        while s.chunk_ready(TINY, chunk):  # a sampler consuming windows as they are ready
            assert s.chunk_window(TINY, chunk).shape == (1, 53, 5, 4, 32)
            chunk += 1
    s.finish()
    assert s.total_frames == pushed * 20 // SR and chunk > 350
    bound = (cfg.stream_block_frames + cfg.lookahead_frames + 2) * cfg.samples_per_frame + 4000
    assert most["tempo_input_samples"] <= bound and most["stretched_samples"] <= bound
    assert most["ring_rows"] == 128
    last = s.rows(s.total_frames - 10, s.total_frames)  # absolute indices, hours in
    assert last.shape == (10, 4, 32) and last.isfinite().all()
    with pytest.raises(RowsUnavailable, match="dropped") as err:
        s.rows(0, 4)
    assert err.value.reason == "dropped"


def test_finish_rules():
    s = StreamingAudioFeatures(load_backend(MEL), MEL, fps=20)
    s.push(np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match="shorter than one video frame"):
        s.finish()
    with pytest.raises(ConfigError, match="lookahead_frames"):
        StreamingAudioFeatures(load_backend(MEL), AudioConfig.for_model(TINY.model, lookahead_frames=1))
