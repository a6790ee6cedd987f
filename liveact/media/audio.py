"""Audio sources for the writers, read a frame range at a time.

A writer asks for exactly ``samples_before(k1) - samples_before(k0)`` samples for frames k0..k1-1
(see ``timing``), so the audio it muxes always ends with the video: sources pad with silence past
their end and are simply not read past the last frame (which is what ``-shortest`` approximates).

* ``PcmSource``    - PCM already in memory (mono ``(n,)`` or ``(n, channels)`` float32).
* ``FileSource``   - any audio file ffmpeg can read, decoded by a child process as it is needed
                     (bounded: the decoder blocks while the writer is behind), at its own rate.
* ``PushedPcm``    - mono PCM pushed by a live producer alongside the frames (fMP4 streams).
"""

from __future__ import annotations

import collections
import os
import queue
from typing import Protocol

import ffmpeg
import numpy as np

from liveact.media.errors import MediaError
from liveact.media.probe import probe
from liveact.media.process import FfmpegProcess

__all__ = ["AudioInput", "AudioSource", "FileSource", "PcmSource", "PushedPcm", "open_audio"]

AudioInput = str | os.PathLike | tuple[np.ndarray, int] | None
_SAMPLE_BYTES = 4  # float32 PCM
_DECODER_PIECES = 16  # decoded pieces buffered ahead of the writer


class AudioSource(Protocol):
    sample_rate: int
    channels: int

    def read(self, samples: int) -> np.ndarray:
        """The next ``samples`` samples, (samples, channels) float32, zero past the source's end."""
        ...

    def close(self) -> None: ...


def as_pcm(pcm: np.ndarray) -> np.ndarray:
    """Validate PCM and return it as (n, channels) float32."""
    arr = np.asarray(pcm)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"PCM must be float samples shaped (n,) or (n, channels), got {arr.dtype} {arr.shape}")
    return arr.astype(np.float32, copy=False)


class PcmSource:
    def __init__(self, pcm: np.ndarray, sample_rate: int) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.pcm = as_pcm(pcm)
        self.sample_rate = int(sample_rate)
        self.channels = self.pcm.shape[1]
        self._pos = 0

    def read(self, samples: int) -> np.ndarray:
        out = np.zeros((samples, self.channels), np.float32)
        part = self.pcm[self._pos : self._pos + samples]
        out[: len(part)] = part
        self._pos += samples
        return out

    def close(self) -> None:
        pass


class FileSource:
    def __init__(self, path: str | os.PathLike, io_timeout_s: float, ffmpeg_bin: str = "ffmpeg") -> None:
        stream = probe(path).audio
        if stream is None or not stream.sample_rate:
            raise MediaError(f"{path} has no audio stream; pass an audio file (WAV, MP3, ...) or PCM")
        self.sample_rate = stream.sample_rate
        self.channels = int(stream.channels or 1)
        self.io_timeout_s = io_timeout_s
        argv = (
            ffmpeg.input(os.fspath(path))
            .audio.output("pipe:1", format="f32le", acodec="pcm_f32le", ac=self.channels, ar=self.sample_rate)
            .global_args("-hide_banner", "-nostats", "-loglevel", "error")
            .compile(cmd=ffmpeg_bin)
        )
        self._proc = FfmpegProcess(
            argv,
            stdin=False,
            stdout=True,
            io_timeout_s=io_timeout_s,
            max_pending_pieces=_DECODER_PIECES,
            name="audio decoder",
        )
        self._buffer = bytearray()
        self._ended = False

    def read(self, samples: int) -> np.ndarray:
        need = samples * self.channels * _SAMPLE_BYTES
        while len(self._buffer) < need and not self._ended:
            try:
                piece = self._proc.get(timeout=self.io_timeout_s)
            except queue.Empty:
                self._proc.kill()
                raise self._proc.error(f"produced no audio for {self.io_timeout_s} s") from None
            if piece is None:
                self._ended = True
                self._proc.wait(self.io_timeout_s)  # raises FfmpegError if decoding failed
            else:
                self._buffer += piece
        take = bytes(self._buffer[:need])
        del self._buffer[:need]
        out = np.zeros((samples, self.channels), np.float32)
        got = np.frombuffer(take, np.float32).reshape(-1, self.channels)
        out[: len(got)] = got
        return out

    def close(self) -> None:
        self._proc.kill()  # the decoder is normally still running: the video ended before the audio


class PushedPcm:
    """Mono PCM pushed by a producer; audio ahead of the video is held up to ``max_lead`` samples."""

    channels = 1

    def __init__(self, sample_rate: int, max_lead: int) -> None:
        if sample_rate <= 0:
            raise ValueError(f"audio_sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.max_lead = max_lead
        self._pieces: collections.deque[np.ndarray] = collections.deque()
        self.buffered = 0

    def feed(self, pcm: np.ndarray | None, samples: int) -> np.ndarray:
        """Add ``pcm`` (may be None) and take the next ``samples``; refuses (unchanged) past ``max_lead``."""
        new = np.zeros((0, 1), np.float32) if pcm is None else as_pcm(pcm)
        if new.shape[1] != 1:
            raise ValueError(f"streamed audio must be mono, got {new.shape[1]} channels")
        lead = self.buffered + len(new) - samples
        if lead > self.max_lead:
            raise ValueError(
                f"audio would run {lead / self.sample_rate:.2f} s ahead of the video (limit "
                f"{self.max_lead / self.sample_rate:.2f} s); push audio together with the frames it belongs to"
            )
        if len(new):
            self._pieces.append(new)
            self.buffered += len(new)
        return self.read(samples)

    def read(self, samples: int) -> np.ndarray:
        out = np.zeros((samples, 1), np.float32)
        filled = 0
        while filled < samples and self._pieces:
            head = self._pieces[0]
            n = min(samples - filled, len(head))
            out[filled : filled + n] = head[:n]
            filled += n
            if n == len(head):
                self._pieces.popleft()
            else:
                self._pieces[0] = head[n:]
        self.buffered -= filled
        return out

    def close(self) -> None:
        self._pieces.clear()
        self.buffered = 0


def open_audio(audio: AudioInput, io_timeout_s: float, ffmpeg_bin: str = "ffmpeg") -> AudioSource | None:
    """A source for ``Mp4Writer``'s ``audio`` argument: None, a file path, or ``(pcm, sample_rate)``."""
    if audio is None:
        return None
    if isinstance(audio, tuple):
        pcm, sample_rate = audio
        return PcmSource(pcm, sample_rate)
    if isinstance(audio, str | os.PathLike):
        return FileSource(audio, io_timeout_s, ffmpeg_bin)
    raise TypeError(f"audio must be a path, a (pcm, sample_rate) tuple or None, got {type(audio).__name__}")
