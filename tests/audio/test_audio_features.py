"""Offline rows: the frame count, the frame grid, the mel backend, the wav2vec2 backend (tiny, local)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from signals import SR, speech_like
from transformers import Wav2Vec2Config, Wav2Vec2Model

from liveact.audio import AudioConfig, AudioError, audio_features, frame_count, interpolate_to_frames, load_backend
from liveact.audio.offline import model_audio
from liveact.audio.wav2vec2 import Wav2Vec2Backend
from liveact.config import ConfigError, get_preset
from liveact.sampling.audio_window import gather_window

MEL = AudioConfig.for_model(get_preset("tiny").model)
W2V = AudioConfig(layers=2, channels=32)


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory):
    """A tiny random wav2vec2 (base conv layout, 2 layers x 32) saved like a local checkpoint."""
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    path = tmp_path_factory.mktemp("wav2vec2")
    Wav2Vec2Model(cfg).save_pretrained(path)
    return path


def test_tiny_preset_gets_the_mel_backend_and_18b_wav2vec2():
    assert (MEL.backend, MEL.layers, MEL.channels) == ("mel", 4, 32)
    big = AudioConfig.for_model(get_preset("liveact-18b").model)
    assert (big.backend, big.layers, big.channels) == ("wav2vec2", 12, 768)


@pytest.mark.parametrize(("seconds", "fps"), [(1.0, 20), (2.37, 20), (3.0, 24), (1.01, 25), (0.1, 20), (1.7, 30)])
def test_row_count_is_the_output_frame_count(seconds, fps):
    x = speech_like(seconds)
    rows = audio_features(x, load_backend(MEL), MEL, fps=fps)
    assert rows.shape == (math.floor(x.size / SR * fps), 4, 32) == (frame_count(x.size, SR, fps), 4, 32)
    stretched, n = model_audio(x, MEL, fps)
    assert n == rows.shape[0] and stretched.size == n * MEL.samples_per_frame


def test_interpolation_is_linear_with_aligned_corners():
    native = torch.arange(5, dtype=torch.float32).view(5, 1) * torch.ones(5, 3)  # (T=5, 3)
    rows = interpolate_to_frames(native, 9)
    assert torch.allclose(rows[:, 0], torch.linspace(0, 4, 9))
    assert torch.equal(interpolate_to_frames(native, 3)[:, 0], torch.tensor([0.0, 2.0, 4.0]))  # exact grid
    assert torch.equal(interpolate_to_frames(native[:1], 4), native[:1].expand(4, 3))
    with pytest.raises(AudioError):
        interpolate_to_frames(native, 0)


def test_mel_responds_to_loudness():
    backend = load_backend(MEL)
    speech = audio_features(speech_like(2.0), backend, MEL)
    quiet = audio_features(0.1 * speech_like(2.0), backend, MEL)
    silence = audio_features(np.zeros(2 * SR, dtype=np.float32), backend, MEL)
    assert torch.equal(silence[:, 0], torch.full_like(silence[:, 0], math.log10(MEL.mel.log_floor)))
    assert torch.equal(silence[:, 3], torch.zeros_like(silence[:, 3]))  # delta of a constant
    assert speech[:, 0].mean() > quiet[:, 0].mean() + 1.5 > silence[:, 0].mean() + 1.5
    assert speech[:, 3].abs().mean() > 0.05  # the delta view moves with the syllables


def test_mel_is_deterministic_and_windows_fit_the_sampler():
    backend = load_backend(MEL)
    a, b = audio_features(speech_like(3.0), backend, MEL), audio_features(speech_like(3.0), backend, MEL)
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert gather_window(get_preset("tiny"), a, 1).shape == (1, 53, 5, 4, 32)


def test_mel_refuses_more_bands_than_bins():
    with pytest.raises(ConfigError, match="mel bands"):
        load_backend(AudioConfig(backend="mel", layers=4, channels=768))


def test_wav2vec2_rows_are_hidden_states_1_on(w2v_dir):
    """Our hook-captured stack equals transformers' own hidden_states[1:] for the same encoder input."""
    backend = load_backend(W2V, w2v_dir)
    stretched, n = model_audio(speech_like(1.5), W2V, 20)
    rows = backend.window_features(stretched, n)
    assert rows.shape == (n, 2, 32) and rows.isfinite().all()

    model = backend.model
    wave = torch.from_numpy(stretched).double()
    wave = ((wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)).float()[None]
    with torch.no_grad():
        conv = model.feature_extractor(wave)  # (1, E, T)
        assert conv.shape[2] == 2 * n - 1  # the fixed grid: row i is conv frame 2i
        grid = conv[:, :, ::2]  # (1, E, N): align_corners interpolation lands on whole frames

        class _Fixed(torch.nn.Module):
            def forward(self, _):
                return grid

        original = model.feature_extractor
        model.feature_extractor = _Fixed()
        try:
            out = model(torch.zeros(1, 1), output_hidden_states=True)
        finally:
            model.feature_extractor = original
    reference = torch.stack(out.hidden_states[1:], dim=2)[0]  # (N, L, C)
    assert torch.allclose(rows, reference, atol=1e-5)


def test_wav2vec2_loading_errors(tmp_path, w2v_dir):
    with pytest.raises(AudioError, match="weights_dir"):
        load_backend(W2V)
    with pytest.raises(AudioError, match=r"config\.json"):
        load_backend(W2V, tmp_path)
    (tmp_path / "config.json").write_text((w2v_dir / "config.json").read_text())
    with pytest.raises(AudioError, match="no weights"):
        load_backend(W2V, tmp_path)
    with pytest.raises(ConfigError, match="match AudioConfig"):
        Wav2Vec2Backend.from_pretrained(w2v_dir, AudioConfig())  # 12 x 768 asked, 2 x 32 present
