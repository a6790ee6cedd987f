"""FragmentedMp4Stream (incremental bytes, bounded back-pressure, audio alongside) and PngFrameWriter."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
from helpers import child_pids
from PIL import Image

from liveact.media import EncoderConfig, FragmentedMp4Stream, PngFrameWriter, probe, video_frame_times

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

FPS, SR, SIZE = 20, 16000, 64
CHUNKS = (21, 32, 32)  # video frames per chunk of the real loop
AAC_DELAY = 1024  # samples the AAC encoder primes with (no edit list can hide them in fragmented MP4)
PIECE_WAIT_S = 10.0


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def stream_chunks(stream: FragmentedMp4Stream, audio: np.ndarray | None = None) -> tuple[list[bytes], list[bytes]]:
    """Write CHUNKS, collecting pieces as they come; returns (pieces before close, pieces after)."""
    before, start = [], 0
    for i, n in enumerate(CHUNKS):
        pcm = None if audio is None else audio[start * SR // FPS : (start + n) * SR // FPS]
        stream.write(frames(n, i), pcm)
        start += n
        if i == 0:
            before.append(stream.read(timeout=PIECE_WAIT_S))  # the init segment (ftyp + empty moov)
        before += stream.drain()
    before.append(stream.read(timeout=PIECE_WAIT_S))  # a fragment completed by a later keyframe
    before += stream.drain()
    stream.close()
    return before, list(stream)


def test_fragments_arrive_before_close_and_concatenate(tmp_path):
    kids = child_pids()
    stream = FragmentedMp4Stream(FPS, SIZE, SIZE)
    before, after = stream_chunks(stream)
    assert len(before) > 1  # bytes were delivered while the stream was still open
    assert all(before) and before[0][4:8] == b"ftyp"
    out = tmp_path / "stream.mp4"
    out.write_bytes(b"".join(before + after))
    info = probe(out, count_frames=True)
    assert info.codecs == ("h264",)
    assert info.video.frame_count == sum(CHUNKS)
    assert info.video.fps == Fraction(FPS)
    assert video_frame_times(out) == [Fraction(k, FPS) for k in range(sum(CHUNKS))]
    keyframes = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags", "-of", "csv", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.count("K")
    assert keyframes == -(-sum(CHUNKS) // FPS)  # GOP = fps: one keyframe per second, no scene cuts
    assert child_pids() - kids == set()


def test_audio_pushed_alongside_stays_in_sync(tmp_path):
    total = sum(CHUNKS)
    pcm = np.zeros(total * SR // FPS, np.float32)
    pcm[SR] = 0.9  # a click at 1.0 s, i.e. with frame 20
    stream = FragmentedMp4Stream(FPS, SIZE, SIZE, audio_sample_rate=SR)
    before, after = stream_chunks(stream, pcm)
    out = tmp_path / "av.mp4"
    out.write_bytes(b"".join(before + after))
    info = probe(out, count_frames=True)
    assert info.codecs == ("h264", "aac")
    assert info.video.frame_count == total
    # Fragmented MP4 has no edit list to hide the AAC priming, so ffmpeg delays the video by the
    # same 1024 samples (rounded to the video time base; frame 0 keeps pts 0 and is shown that much
    # longer): every later frame is shifted by one constant, and sync is preserved.
    times = video_frame_times(out)
    shifts = {t - Fraction(k, FPS) for k, t in enumerate(times)}
    assert len(shifts - {Fraction(0)}) == 1
    (shift,) = shifts - {Fraction(0)}
    assert abs(shift - Fraction(AAC_DELAY, SR)) <= info.video.time_base
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(out), "-map", "0:a", "-f", "f32le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    click = int(np.argmax(np.abs(np.frombuffer(decoded, np.float32))))
    assert abs(Fraction(click, SR) - (times[FPS])) <= Fraction(2, SR)  # the click plays with frame 20
    assert abs(info.audio.duration - info.video.duration) <= 1 / FPS


def test_audio_far_ahead_of_video_is_refused():
    config = EncoderConfig(max_audio_lead_s=1.0)
    stream = FragmentedMp4Stream(FPS, SIZE, SIZE, audio_sample_rate=SR, config=config)
    try:
        with pytest.raises(ValueError, match="ahead of the video"):
            stream.write(frames(1), np.zeros(3 * SR, np.float32))
        with pytest.raises(ValueError, match="no audio track"):
            FragmentedMp4Stream(FPS, SIZE, SIZE).write(frames(1), np.zeros(800, np.float32))
        stream.write(frames(2), np.zeros(1600, np.float32))  # still usable
    finally:
        stream.abort()


def test_slow_consumer_blocks_the_writer_with_bounded_buffering():
    config = EncoderConfig(max_pending_pieces=2, read_size=1024, io_timeout_s=30)
    stream = FragmentedMp4Stream(FPS, SIZE, SIZE, config=config)
    video = frames(200)  # noise: ~3 KB per encoded frame, far more than every buffer on the way
    done = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for start in range(0, len(video), FPS):
                stream.write(video[start : start + FPS])
            stream.close()
        except BaseException as exc:  # surfaced by the assertions below
            errors.append(exc)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + PIECE_WAIT_S
    while stream.pending_pieces < stream.max_pending_pieces and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the consumer stays away a while longer
    assert stream.pending_pieces == stream.max_pending_pieces == 2  # full, and never more
    assert not done.is_set()  # the writer is held back by the consumer, not buffering ahead
    pieces, peak = [], 0
    while (piece := stream.read(timeout=PIECE_WAIT_S)) is not None:  # the slow consumer, finally
        peak = max(peak, stream.pending_pieces)
        pieces.append(piece)
    producer.join(PIECE_WAIT_S)
    assert not errors and done.is_set()
    assert peak <= 2 and max(map(len, pieces)) <= config.read_size


def test_stream_output_is_a_valid_file_after_threaded_consumption(tmp_path):
    stream = FragmentedMp4Stream(FPS, SIZE, SIZE)
    received: list[bytes] = []
    consumer = threading.Thread(target=lambda: received.extend(stream))
    consumer.start()
    for i, n in enumerate(CHUNKS):
        stream.write(frames(n, i))
    stream.close()
    consumer.join(PIECE_WAIT_S)
    out = tmp_path / "threaded.mp4"
    out.write_bytes(b"".join(received))
    assert probe(out, count_frames=True).video.frame_count == sum(CHUNKS)


def test_abort_ends_a_waiting_consumer():
    kids = child_pids()
    stream = FragmentedMp4Stream(FPS, SIZE, SIZE, audio_sample_rate=SR)
    with pytest.raises(queue.Empty):
        stream.read(timeout=0.05)  # nothing is produced before frames arrive
    received: list[bytes] = []
    consumer = threading.Thread(target=lambda: received.extend(stream))
    consumer.start()
    stream.write(frames(5), np.zeros(4000, np.float32))
    stream.abort()
    consumer.join(PIECE_WAIT_S)
    assert not consumer.is_alive()
    assert child_pids() - kids == set()


def test_png_frame_writer(tmp_path):
    with PngFrameWriter(tmp_path / "frames") as writer:
        first = writer.write(frames(2, 0))
        writer.write(frames(3, 1))
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"frame_{k:06d}.png" for k in range(5)]
    assert [p.name for p in first] == names[:2]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "frames" / names[3])), frames(3, 1)[1])
    with pytest.raises(ValueError, match="shaped"):
        writer.write(frames(1)[:, :8])
