"""The H.264 (+ AAC) encoding pipeline shared by ``Mp4Writer`` and ``FragmentedMp4Stream``.

One ffmpeg child per output: raw RGB frames on stdin, stamped by the rawvideo demuxer's nominal
rate (frame k at exactly k/fps), and optionally raw float PCM through an ``AudioFifo``. Each
``write`` sends exactly the audio that covers its frames (see ``timing.samples_before``), before
the frames, so ffmpeg always has the audio it needs to interleave and the AAC track is encoded once
for the whole stream and ends with the video to the sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import ffmpeg
import numpy as np

from liveact.media.audio import AudioSource
from liveact.media.errors import MediaError
from liveact.media.fifo import AudioFifo
from liveact.media.process import FfmpegProcess
from liveact.media.timing import FpsLike, as_fps, keyframe_interval, samples_before

__all__ = ["DEFAULT_ENCODER", "EncoderConfig", "EncoderPipeline", "check_frames"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderConfig:
    """How frames are encoded and how long ffmpeg may take before it is treated as hung."""

    ffmpeg: str = "ffmpeg"
    video_codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    preset: str = "veryfast"
    tune: str | None = "zerolatency"  # no B-frames or lookahead: a frame is encoded as soon as it arrives
    crf: int = 20
    gop_seconds: float = 1.0  # one keyframe per second; fMP4 cuts a fragment at each keyframe
    audio_codec: str = "aac"
    audio_bitrate: str = "96k"
    loglevel: str = "error"  # warnings include routine back-pressure notices
    thread_queue_size: int = 64  # packets ffmpeg buffers per live input
    io_timeout_s: float = 30.0  # ffmpeg accepting no input (or no audio) for this long counts as hung
    close_timeout_s: float = 120.0  # finishing the file, including faststart's rewrite of the whole file
    max_pending_pieces: int = 64  # fMP4 output pieces held for a slow consumer before ffmpeg is paused
    read_size: int = 64 * 1024  # largest fMP4 output piece, bytes
    max_pending_audio: int = 8  # audio chunks queued for the FIFO writer
    max_audio_lead_s: float = 10.0  # streamed audio allowed ahead of the frames written so far
    temp_dir: str | None = None  # where the audio FIFO's private directory is made (None: system default)

    def __post_init__(self) -> None:
        if self.io_timeout_s <= 0 or self.close_timeout_s <= 0:
            raise ValueError("io_timeout_s and close_timeout_s must be positive")
        if self.max_pending_pieces < 1 or self.read_size < 1 or self.max_pending_audio < 1:
            raise ValueError("max_pending_pieces, read_size and max_pending_audio must be at least 1")


DEFAULT_ENCODER = EncoderConfig()

# Live inputs carry their format on the command line; probing them would only wait for data that
# the producer sends later (32 bytes is ffmpeg's smallest probe size).
_NO_PROBING = {"probesize": 32, "analyzeduration": 0}


def check_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Frames as a C-contiguous uint8 (T, H, W, 3) array; ValueError naming the mismatch otherwise."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be a uint8 numpy array (T, H, W, 3), got {type(frames).__name__} "
            f"{getattr(frames, 'dtype', '')}; convert model output with frames_to_uint8"
        )
    if frames.ndim != 4 or frames.shape[1:] != (height, width, 3):
        raise ValueError(f"frames must be shaped (T, {height}, {width}, 3), got {frames.shape}")
    return np.ascontiguousarray(frames)


class EncoderPipeline:
    """ffmpeg encoding frames (and paced audio) to ``target`` with ``container`` output options."""

    def __init__(
        self,
        fps: FpsLike,
        width: int,
        height: int,
        audio: AudioSource | None,
        target: str,
        container: dict[str, str],
        config: EncoderConfig,
        capture_stdout: bool,
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"width and height must be positive and even for {config.pix_fmt}, got {width}x{height}")
        self.fps: Fraction = as_fps(fps)
        self.width, self.height = width, height
        self.config = config
        self.audio = audio
        self.frames_written = 0
        self.closed = False
        self.fifo: AudioFifo | None = None
        self.process: FfmpegProcess | None = None
        try:
            if audio is not None:
                self.fifo = AudioFifo(config.io_timeout_s, config.max_pending_audio, config.temp_dir)
            self.process = FfmpegProcess(
                self._argv(target, container),
                stdin=True,
                stdout=capture_stdout,
                io_timeout_s=config.io_timeout_s,
                max_pending_pieces=config.max_pending_pieces,
                read_size=config.read_size,
                name="ffmpeg encoder",
            )
        except BaseException:
            self.abort()
            raise

    def _argv(self, target: str, container: dict[str, str]) -> list[str]:
        cfg = self.config
        gop = keyframe_interval(self.fps, cfg.gop_seconds)
        live = {"thread_queue_size": cfg.thread_queue_size, **_NO_PROBING}
        streams = [
            ffmpeg.input(
                "pipe:0",
                format="rawvideo",
                pix_fmt="rgb24",
                s=f"{self.width}x{self.height}",
                framerate=str(self.fps),
                **live,
            ).video
        ]
        options: dict[str, object] = dict(
            vcodec=cfg.video_codec,
            pix_fmt=cfg.pix_fmt,
            preset=cfg.preset,
            crf=cfg.crf,
            g=gop,
            keyint_min=gop,
            sc_threshold=0,
            format="mp4",
            **container,
        )
        if cfg.tune:
            options["tune"] = cfg.tune
        if self.audio is not None and self.fifo is not None:
            pcm = ffmpeg.input(
                str(self.fifo.path),
                format="f32le",
                ar=self.audio.sample_rate,
                ch_layout=f"{self.audio.channels}c",
                **live,
            )
            streams.append(pcm.audio)
            options.update({"acodec": cfg.audio_codec, "b:a": cfg.audio_bitrate})
        out = ffmpeg.output(*streams, target, **options)
        return (
            out.global_args("-hide_banner", "-nostats", "-loglevel", cfg.loglevel)
            .overwrite_output()
            .compile(cmd=cfg.ffmpeg)
        )

    def write(self, frames: np.ndarray, audio: np.ndarray | None = None) -> None:
        """Encode a chunk of frames; ``audio`` is what the source returned for exactly these frames."""
        if self.closed or self.process is None:
            raise MediaError("the writer is closed")
        frames = check_frames(frames, self.height, self.width)
        try:
            if self.fifo is not None and audio is not None:
                self.fifo.push(audio.tobytes())
            self.process.write(memoryview(frames).cast("B"))
        except BaseException:
            self.abort()
            raise
        self.frames_written += len(frames)

    def audio_samples_for(self, count: int) -> int:
        """Samples covering the next ``count`` frames."""
        assert self.audio is not None
        rate = self.audio.sample_rate
        return samples_before(self.frames_written + count, self.fps, rate) - samples_before(
            self.frames_written, self.fps, rate
        )

    def finish(self) -> None:
        """End the input and wait until ffmpeg has written everything; raises FfmpegError on failure."""
        if self.closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise MediaError("no frames were written; nothing to encode")
        assert self.process is not None
        try:
            self.process.close_input()  # video EOF first: ffmpeg then reads the audio to its end
            if self.fifo is not None:
                self.fifo.finish(self.config.io_timeout_s, lambda: self.process.returncode is None)
            self.process.wait(self.config.close_timeout_s)
        except BaseException:
            self.abort()
            raise
        self._release()

    def abort(self) -> None:
        """Kill ffmpeg and remove every temporary file; safe to call at any time, more than once."""
        if self.process is not None:
            self.process.kill()
        self._release()

    def _release(self) -> None:
        self.closed = True
        if self.fifo is not None:
            self.fifo.cleanup()
        if self.audio is not None:
            self.audio.close()
