"""Decoding: every kind of input is either handled or refused with an AudioError saying what to fix."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from signals import SR, tone, write_wav

from liveact.audio import AudioConfig, AudioError, audio_features, decode_audio, decode_pcm, load_backend
from liveact.audio.io import pcm_from_bytes

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

MEL = AudioConfig(backend="mel", layers=4, channels=32)


def _peak_hz(x: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * sr / x.size)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_sample_rate_is_resampled_to_16k(tmp_path, rate):
    path = write_wav(tmp_path / f"tone_{rate}.wav", tone(1.0, rate, hz=440.0), rate)
    pcm = decode_audio(path)
    assert pcm.dtype == np.float32 and abs(pcm.size - SR) <= 2
    assert abs(_peak_hz(pcm) - 440.0) < 2.0
    assert 0.25 < np.abs(pcm).max() < 0.35


def test_stereo_is_downmixed(tmp_path):
    left = tone(1.0, 44100, hz=300.0)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, np.zeros_like(left)], axis=1), 44100)
    pcm = decode_audio(path)
    assert pcm.ndim == 1 and abs(pcm.size - SR) <= 2
    assert abs(_peak_hz(pcm) - 300.0) < 2.0 and 0.1 < np.abs(pcm).max() < 0.3  # half-ish of one channel


def test_bytes_decode_like_the_file(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(0.5, 22050), 22050)
    assert np.array_equal(decode_audio(path.read_bytes()), decode_audio(path))


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError, match="no audio stream"):
        decode_audio(path)


def test_png_file_is_refused(tmp_path):
    path = tmp_path / "face.png"
    Image.new("RGB", (16, 16), (200, 100, 50)).save(path)
    with pytest.raises(AudioError, match="no audio stream"):
        decode_audio(path)


def test_empty_file_and_bytes_are_refused(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        decode_audio(path)
    with pytest.raises(AudioError, match="empty"):
        decode_audio(b"")


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        decode_audio(tmp_path / "nope.wav")


def test_truncated_wav_decodes_what_is_there(tmp_path):
    data = write_wav(tmp_path / "full.wav", tone(1.0, SR), SR).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])  # header says 1 s, half the samples are present
    pcm = decode_audio(cut)  # ffmpeg drops the last partial packet (a few samples)
    assert SR // 2 - 64 <= pcm.size <= SR // 2 and np.isfinite(pcm).all()


def test_wav_cut_inside_its_header_is_refused(tmp_path):
    data = write_wav(tmp_path / "full.wav", tone(1.0, SR), SR).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:30])
    with pytest.raises(AudioError, match="could not decode"):
        decode_audio(cut)


def test_silence_gives_finite_features(tmp_path):
    path = write_wav(tmp_path / "silence.wav", np.zeros(SR), SR)
    pcm = decode_audio(path)
    rows = audio_features(pcm, load_backend(MEL), MEL, fps=20)
    assert rows.shape == (20, 4, 32) and rows.isfinite().all()


def test_tenth_of_a_second_is_handled(tmp_path):
    """Chosen behaviour: 0.1 s is kept (2 frames at 20 fps); below one frame is refused."""
    pcm = decode_audio(write_wav(tmp_path / "short.wav", tone(0.1, 44100), 44100))
    rows = audio_features(pcm, load_backend(MEL), MEL, fps=20)
    assert rows.shape == (2, 4, 32) and rows.isfinite().all()


def test_shorter_than_the_minimum_is_refused(tmp_path):
    path = write_wav(tmp_path / "blip.wav", tone(0.02, SR), SR)
    with pytest.raises(AudioError, match="shorter than the 50 ms minimum"):
        decode_audio(path)
    with pytest.raises(AudioError, match="shorter than one video frame"):
        audio_features(tone(0.04, SR), load_backend(MEL), MEL, fps=20)


def test_decode_times_out_instead_of_hanging(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(0.5, SR), SR)
    with pytest.raises(AudioError, match="took longer"):
        decode_audio(path, timeout_s=1e-4)


@pytest.mark.parametrize("fmt", ["s16le", "f32le"])
def test_raw_pcm(fmt):
    x = tone(0.5, 48000, hz=500.0)
    stereo = np.stack([x, x], axis=1)
    data = (stereo * 32767).astype("<i2").tobytes() if fmt == "s16le" else stereo.astype("<f4").tobytes()
    resampled = decode_pcm(data, fmt, 48000, 2)
    assert abs(resampled.size - SR // 2) <= 2 and abs(_peak_hz(resampled) - 500.0) < 3.0
    same_rate = pcm_from_bytes(data, fmt, 2)
    assert same_rate.size == x.size and np.allclose(same_rate, x, atol=1e-4)


def test_raw_pcm_with_a_partial_frame_is_refused():
    with pytest.raises(AudioError, match="whole number"):
        pcm_from_bytes(b"\x00" * 7, "s16le", 2)
    with pytest.raises(AudioError, match="format"):
        pcm_from_bytes(b"\x00" * 8, "u8", 1)
