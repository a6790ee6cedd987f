"""Mp4Writer: exact frame stamps, one AAC track ending with the video, and no leftovers on any path."""

from __future__ import annotations

import dataclasses
import gc
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from helpers import child_pids
from PIL import Image

from liveact.media import EncoderConfig, FfmpegError, MediaError, Mp4Writer, probe, video_frame_times

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

FPS, SR, SIZE = 20, 16000, 64
CHUNKS = (21, 32)  # the first chunk and a later chunk of the real loop, in video frames
CLICK_S = 1.0  # a single-sample click placed here in the audio
AAC_FRAME = 1024  # samples per AAC frame


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def click_track(seconds: float) -> np.ndarray:
    pcm = np.zeros(round(seconds * SR), np.float32)
    pcm[round(CLICK_S * SR)] = 0.9
    return pcm


def decoded_audio(path: Path) -> np.ndarray:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-f", "f32le", "-ac", "1", "-"],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return np.frombuffer(out.stdout, np.float32)


def media_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("liveact-")]


@pytest.fixture
def no_leftovers(tmp_path):
    """An EncoderConfig with a private temp dir; after the test, no new child, thread or temp file."""
    before = child_pids()
    temp = tmp_path / "tmp"
    temp.mkdir()
    yield EncoderConfig(temp_dir=str(temp))
    assert child_pids() - before == set()
    assert media_threads() == []
    assert list(temp.iterdir()) == []


def test_chunked_mp4_with_audio_has_exact_frames_and_times(tmp_path, no_leftovers):
    out = tmp_path / "out.mp4"
    with Mp4Writer(out, FPS, SIZE, SIZE, audio=(click_track(3.0), SR), config=no_leftovers) as writer:
        for i, n in enumerate(CHUNKS):
            writer.write(frames(n, i))
    total = sum(CHUNKS)
    info = probe(out, count_frames=True)
    video, audio = info.video, info.audio
    assert info.codecs == ("h264", "aac")
    assert video.frame_count == total
    assert video.fps == Fraction(20) and video.avg_fps == Fraction(20)
    assert video.pix_fmt == "yuv420p"
    assert video.duration == pytest.approx(total / FPS, abs=1e-6)  # 2.65 s
    assert video_frame_times(out) == [Fraction(k, FPS) for k in range(total)]
    assert audio.sample_rate == SR
    assert abs(audio.duration - video.duration) <= 1 / FPS  # measured: equal (3.0 s of audio trimmed to 2.65 s)
    assert info.duration == pytest.approx(total / FPS, abs=1e-6)
    pcm = decoded_audio(out)  # the decoder honours the edit list that hides the AAC priming
    expected = total * SR // FPS
    assert 0 <= len(pcm) - expected < AAC_FRAME  # ffmpeg 5.1 decodes the last frame's padding too
    assert abs(int(np.argmax(np.abs(pcm))) - CLICK_S * SR) <= 2  # lip sync: the click is where it was
    assert not writer.partial.exists()


@pytest.mark.parametrize("seconds", [2, 4])
def test_audio_file_is_padded_or_trimmed_to_the_video(tmp_path, no_leftovers, seconds):
    wav = tmp_path / "speech.wav"
    sine = f"sine=frequency=300:sample_rate={SR}:duration={seconds}"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", sine, str(wav)],
        check=True,
        timeout=30,
    )
    out = tmp_path / "padded.mp4"
    with Mp4Writer(out, FPS, SIZE, SIZE, audio=wav, config=no_leftovers) as writer:
        for i, n in enumerate(CHUNKS):
            writer.write(frames(n, i))
    info = probe(out, count_frames=True)
    assert info.video.frame_count == sum(CHUNKS)
    assert abs(info.audio.duration - info.video.duration) <= 1 / FPS  # measured: equal, 2.65 s


def test_video_only_and_fractional_rate(tmp_path, no_leftovers):
    out = tmp_path / "ntsc.mp4"
    with Mp4Writer(out, "30000/1001", SIZE, SIZE, config=no_leftovers) as writer:
        writer.write(frames(7))
    info = probe(out, count_frames=True)
    assert info.codecs == ("h264",) and info.video.fps == Fraction(30000, 1001)
    assert video_frame_times(out) == [k / Fraction(30000, 1001) for k in range(7)]


def test_bad_frames_are_refused_without_breaking_the_writer(tmp_path, no_leftovers):
    out = tmp_path / "ok.mp4"
    with Mp4Writer(out, FPS, SIZE, SIZE, config=no_leftovers) as writer:
        with pytest.raises(ValueError, match=r"\(T, 64, 64, 3\)"):
            writer.write(frames(2)[:, :32])
        with pytest.raises(ValueError, match="uint8"):
            writer.write(frames(2).astype(np.float32))
        writer.write(frames(3))
    assert probe(out, count_frames=True).video.frame_count == 3


def test_exception_inside_with_block_discards_the_output(tmp_path, no_leftovers):
    out = tmp_path / "never.mp4"
    with (
        pytest.raises(RuntimeError, match="boom"),
        Mp4Writer(out, FPS, SIZE, SIZE, audio=(click_track(2), SR), config=no_leftovers) as writer,
    ):
        writer.write(frames(5))
        raise RuntimeError("boom")
    assert not out.exists() and not writer.partial.exists()


def test_a_forgotten_writer_leaves_nothing_behind(tmp_path, no_leftovers):
    writer = Mp4Writer(tmp_path / "lost.mp4", FPS, SIZE, SIZE, audio=(click_track(2), SR), config=no_leftovers)
    writer.write(frames(4))
    partial = writer.partial
    del writer
    gc.collect()
    assert not partial.exists()


def test_closing_without_frames_is_an_error(tmp_path, no_leftovers):
    writer = Mp4Writer(tmp_path / "empty.mp4", FPS, SIZE, SIZE, config=no_leftovers)
    with pytest.raises(MediaError, match="no frames"):
        writer.close()


def test_ffmpeg_failure_surfaces_its_stderr(tmp_path, no_leftovers):
    config = dataclasses.replace(no_leftovers, preset="no-such-preset")
    out = tmp_path / "bad.mp4"
    with pytest.raises(FfmpegError, match="no-such-preset") as caught:  # x264's own complaint, from stderr
        with Mp4Writer(out, FPS, SIZE, SIZE, audio=(click_track(2), SR), config=config) as writer:
            for _ in range(20):
                writer.write(frames(8))
    assert caught.value.returncode not in (None, 0)
    assert not out.exists() and not writer.partial.exists()


@pytest.mark.parametrize("with_audio", [False, True])
def test_stalled_ffmpeg_is_killed_not_waited_for(tmp_path, no_leftovers, with_audio):
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")  # never reads its input, never opens the audio FIFO
    fake.chmod(0o755)
    config = dataclasses.replace(no_leftovers, ffmpeg=str(fake), io_timeout_s=0.5)
    audio = (click_track(2), SR) if with_audio else None
    writer = Mp4Writer(tmp_path / "stall.mp4", FPS, SIZE, SIZE, audio=audio, config=config)
    with pytest.raises(FfmpegError, match=r"accepted no input for 0\.5 s"):
        writer.write(frames(20))  # 245 KB: more than the pipe holds


def test_slow_close_is_bounded(tmp_path, no_leftovers):
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text("#!/bin/sh\ncat > /dev/null\nexec sleep 30\n")  # reads everything, then hangs
    fake.chmod(0o755)
    config = dataclasses.replace(no_leftovers, ffmpeg=str(fake), close_timeout_s=0.5)
    writer = Mp4Writer(tmp_path / "slow.mp4", FPS, SIZE, SIZE, config=config)
    writer.write(frames(2))
    with pytest.raises(FfmpegError, match=r"did not finish within 0\.5 s"):
        writer.close()


def test_probe_errors(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        probe(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(FfmpegError, match="could not read"):
        probe(junk)
    picture = tmp_path / "picture.png"
    Image.new("RGB", (8, 8)).save(picture)
    with pytest.raises(MediaError, match="has no audio stream; pass an audio file"):
        Mp4Writer(tmp_path / "x.mp4", FPS, SIZE, SIZE, audio=picture)
