"""Video writers that take decoded frames a chunk at a time, as uint8 arrays (T, H, W, 3) RGB.

Nothing they hold grows with the session: frames go straight to ffmpeg (or to PNG files), audio
is read or buffered only for the frames being written, and fMP4 output waits in a bounded queue.

* ``Mp4Writer``           - an H.264 MP4 file (faststart), audio muxed as AAC once for the whole stream.
* ``FragmentedMp4Stream`` - fragmented MP4 bytes delivered as ffmpeg produces them (a fragment per GOP).
* ``PngFrameWriter``      - ``frame_000000.png``, ``frame_000001.png``, ... in a directory.

Frame k is stamped at exactly k/fps (see ``FragmentedMp4Stream`` for the one exception); audio is
trimmed or padded with silence to the sample so the audio track ends with the video (``-shortest``
without its overshoot).
"""

from __future__ import annotations

import logging
import os
import queue
import weakref
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Self

import numpy as np
from PIL import Image

from liveact.media.audio import AudioInput, PushedPcm, open_audio
from liveact.media.encoder import DEFAULT_ENCODER, EncoderConfig, EncoderPipeline, check_frames
from liveact.media.timing import FpsLike

__all__ = ["FRAME_PATTERN", "FragmentedMp4Stream", "Mp4Writer", "PngFrameWriter"]

log = logging.getLogger(__name__)

FRAGMENTED_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
FRAME_PATTERN = "frame_{:06d}.png"
_PNG_COMPRESS_LEVEL = 1  # fast; PNG frames are for inspection, not storage


def _discard(pipeline: EncoderPipeline, partial: Path | None) -> None:
    """What happens to a writer dropped without close (or still open at exit): nothing is left behind."""
    if not pipeline.closed:
        log.warning("an unclosed video writer was discarded; its output is deleted")
    pipeline.abort()
    if partial is not None:
        partial.unlink(missing_ok=True)


class _EncoderWriter:
    """Context-manager plumbing shared by the ffmpeg writers; a forgotten writer kills its ffmpeg."""

    _pipeline: EncoderPipeline

    def _guard(self, partial: Path | None = None) -> None:
        self._finalizer = weakref.finalize(self, _discard, self._pipeline, partial)

    @property
    def fps(self) -> Fraction:
        return self._pipeline.fps

    @property
    def frames_written(self) -> int:
        return self._pipeline.frames_written

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:
        """Stop ffmpeg now and remove temporary files (the output is discarded)."""
        self._pipeline.abort()
        self._finalizer.detach()


class Mp4Writer(_EncoderWriter):
    """Write an H.264 (yuv420p) MP4 to ``path``, with ``audio`` (a file path or ``(pcm, sample_rate)``) as AAC.

    The file is written as ``.<name>.partial`` next to ``path`` and renamed when ``close`` returns,
    so ``path`` only ever holds a complete, faststart MP4; ``abort`` (or an exception inside a
    ``with`` block) deletes the partial file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: FpsLike,
        width: int,
        height: int,
        audio: AudioInput = None,
        config: EncoderConfig = DEFAULT_ENCODER,
    ) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        source = open_audio(audio, config.io_timeout_s, config.ffmpeg)
        try:
            self._pipeline = EncoderPipeline(
                fps, width, height, source, str(self.partial), {"movflags": "+faststart"}, config, capture_stdout=False
            )
        except BaseException:
            if source is not None:
                source.close()
            raise
        self._guard(self.partial)

    def write(self, frames: np.ndarray) -> None:
        """Encode a chunk of frames (T, H, W, 3) uint8; blocks while ffmpeg catches up."""
        p = self._pipeline
        frames = check_frames(frames, p.height, p.width)
        try:
            pcm = p.audio.read(p.audio_samples_for(len(frames))) if p.audio is not None else None
            p.write(frames, pcm)
        except BaseException:
            self.abort()
            raise

    def close(self) -> Path:
        """Finish the file (audio, index, faststart) and return its path once it is complete."""
        try:
            self._pipeline.finish()
        except BaseException:
            self.abort()
            raise
        self._finalizer.detach()
        os.replace(self.partial, self.path)
        log.info("wrote %s: %d frames at %s fps", self.path, self.frames_written, self.fps)
        return self.path

    def abort(self) -> None:
        super().abort()
        self.partial.unlink(missing_ok=True)


class FragmentedMp4Stream(_EncoderWriter):
    """Encode chunks to fragmented MP4 bytes, delivered incrementally (``read``, ``drain`` or iteration).

    The first piece holds ``ftyp`` + an empty ``moov``; after that a ``moof``+``mdat`` fragment
    arrives at every keyframe (once per ``config.gop_seconds``). Pass ``audio_sample_rate`` for an
    AAC track and give ``write`` the mono PCM that goes with each chunk's frames; missing audio is
    silence, and audio ahead of the frames is held (up to ``config.max_audio_lead_s``).

    Timestamps: without audio frame k is at exactly k/fps. With audio, fragmented MP4 has no edit
    list to hide the AAC encoder's priming (1024 samples), so ffmpeg delays the video by the same
    amount (rounded to the video time base; frame 0 keeps pts 0 and shows that much longer): audio
    and video stay in sync, and every later frame is at k/fps + 1024/sample_rate.

    Back-pressure: at most ``config.max_pending_pieces`` pieces of at most ``config.read_size``
    bytes wait for the consumer. When that queue is full the reader thread stops reading ffmpeg,
    ffmpeg stops taking frames, and ``write`` blocks until the consumer catches up; if it makes no
    progress for ``config.io_timeout_s`` the stream is killed and ``write`` raises ``FfmpegError``.
    Consume from another thread (or ``drain`` between writes); ``close`` waits for ffmpeg to exit,
    which needs the rest of the output to fit in the queue or a consumer to keep draining.
    """

    def __init__(
        self,
        fps: FpsLike,
        width: int,
        height: int,
        audio_sample_rate: int | None = None,
        config: EncoderConfig = DEFAULT_ENCODER,
    ) -> None:
        self._audio = None
        if audio_sample_rate is not None:
            self._audio = PushedPcm(audio_sample_rate, max_lead=round(config.max_audio_lead_s * audio_sample_rate))
        container = {"movflags": FRAGMENTED_MOVFLAGS, "flush_packets": "1"}
        self._pipeline = EncoderPipeline(fps, width, height, self._audio, "pipe:1", container, config, True)
        self._guard()

    @property
    def max_pending_pieces(self) -> int:
        return self._pipeline.config.max_pending_pieces

    @property
    def pending_pieces(self) -> int:
        """Pieces produced by ffmpeg and not yet taken by the consumer (never above ``max_pending_pieces``)."""
        assert self._pipeline.process is not None
        return self._pipeline.process.pieces.qsize()

    def write(self, frames: np.ndarray, audio: np.ndarray | None = None) -> None:
        """Encode a chunk of frames (T, H, W, 3) uint8, with the mono float PCM that accompanies them."""
        p = self._pipeline
        frames = check_frames(frames, p.height, p.width)
        if audio is not None and self._audio is None:
            raise ValueError("this stream has no audio track; create it with audio_sample_rate to send audio")
        pcm = self._audio.feed(audio, p.audio_samples_for(len(frames))) if self._audio is not None else None
        p.write(frames, pcm)

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next piece of MP4 bytes, waiting up to ``timeout`` (queue.Empty); None at the end of the stream."""
        assert self._pipeline.process is not None
        return self._pipeline.process.get(timeout)

    def drain(self) -> list[bytes]:
        """Every piece available now, without waiting (may be empty)."""
        pieces = []
        while True:
            try:
                piece = self.read(timeout=0)
            except queue.Empty:
                return pieces
            if piece is None:
                return pieces
            pieces.append(piece)

    def __iter__(self) -> Iterator[bytes]:
        """Pieces until the stream ends (after ``close`` or ``abort``)."""
        while (piece := self.read()) is not None:
            yield piece

    def close(self) -> None:
        """End the stream: ffmpeg writes the last fragment; returns once it has exited.

        A stream that never got a frame just ends (no bytes, no error).
        """
        if self.frames_written == 0:
            self.abort()
            return
        self._pipeline.finish()
        self._finalizer.detach()


class PngFrameWriter:
    """Write each frame as ``directory/frame_%06d.png`` (numbered from ``start_index``)."""

    def __init__(self, directory: str | os.PathLike, start_index: int = 0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.next_index = start_index
        self._size: tuple[int, int] | None = None

    def write(self, frames: np.ndarray) -> list[Path]:
        if self._size is None and isinstance(frames, np.ndarray) and frames.ndim == 4:
            self._size = frames.shape[1:3]
        height, width = self._size or (0, 0)
        frames = check_frames(frames, height, width)
        paths = []
        for frame in frames:
            path = self.directory / FRAME_PATTERN.format(self.next_index)
            Image.fromarray(frame).save(path, compress_level=_PNG_COMPRESS_LEVEL)
            paths.append(path)
            self.next_index += 1
        return paths

    def close(self) -> None:
        pass

    def __enter__(self) -> PngFrameWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
