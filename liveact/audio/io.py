"""Decode audio to mono float32 at the model's sample rate.

Files and encoded bytes go through ffmpeg (the command is built with ffmpeg-python, run with a
timeout so nothing hangs): the first audio stream is taken, downmixed to mono with ffmpeg's
default matrix and resampled to ``sample_rate``. Raw PCM (s16le / f32le, interleaved) is parsed
here when it is already at the target rate, and resampled by ffmpeg otherwise.

What is refused, with an ``AudioError`` saying what to fix: a missing or empty file, a file with no
audio stream (text, images), data ffmpeg cannot decode, non-finite samples, and audio shorter than
``min_duration_s``. A truncated file whose header is intact decodes to the samples present (ffmpeg
stops at the cut); its warning is logged.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import ffmpeg
import numpy as np

from liveact.audio.config import AudioConfig
from liveact.audio.errors import AudioError

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "PCM_SAMPLE_BYTES",
    "PcmFormat",
    "decode_audio",
    "decode_pcm",
    "pcm_from_bytes",
]

log = logging.getLogger(__name__)

PcmFormat = Literal["s16le", "f32le"]
_PCM_DTYPES: dict[str, np.dtype] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
PCM_SAMPLE_BYTES: dict[PcmFormat, int] = {"s16le": 2, "f32le": 4}  # bytes of one sample of one channel
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000  # client PCM rates taken (others than the models' are resampled)
MAX_CHANNELS = 8  # interleaved channels of client PCM (averaged to mono)
_S16_SCALE = 32768.0  # s16 full scale -> [-1, 1)
_OUTPUT_FORMAT = "f32le"
_STDERR_TAIL = 400  # characters of ffmpeg's stderr quoted in an error
_GLOBAL_ARGS = ("-hide_banner", "-loglevel", "warning")


def decode_audio(
    source: str | os.PathLike[str] | bytes,
    config: AudioConfig | None = None,
    *,
    sample_rate: int | None = None,
    min_duration_s: float | None = None,
    timeout_s: float | None = None,
) -> np.ndarray:
    """Any audio file (path) or encoded file contents (bytes) -> (S,) float32 mono at ``sample_rate``."""
    cfg = config or AudioConfig()
    rate = cfg.sample_rate if sample_rate is None else sample_rate
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise AudioError("audio bytes are empty: send the contents of an audio file (WAV, MP3, AAC, ...)")
        with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:  # a file, not a pipe: MP4 needs to seek
            tmp.write(data)
            tmp.flush()
            pcm = _run_ffmpeg(ffmpeg.input(tmp.name), rate, timeout_s or cfg.decode_timeout_s, "audio bytes")
    else:
        path = Path(source)
        if not path.is_file():
            raise AudioError(f"audio file {str(path)!r} does not exist or is not a file: check the path")
        if path.stat().st_size == 0:
            raise AudioError(f"audio file {str(path)!r} is empty (0 bytes): re-export or re-upload it")
        pcm = _run_ffmpeg(ffmpeg.input(str(path)), rate, timeout_s or cfg.decode_timeout_s, repr(str(path)))
    return _checked(pcm, rate, cfg.min_duration_s if min_duration_s is None else min_duration_s)


def decode_pcm(
    data: bytes,
    fmt: PcmFormat,
    input_rate: int,
    channels: int,
    config: AudioConfig | None = None,
    *,
    min_duration_s: float | None = None,
) -> np.ndarray:
    """Raw interleaved PCM -> (S,) float32 mono at ``config.sample_rate`` (ffmpeg resamples if needed)."""
    cfg = config or AudioConfig()
    min_s = cfg.min_duration_s if min_duration_s is None else min_duration_s
    if input_rate == cfg.sample_rate:
        return _checked(pcm_from_bytes(data, fmt, channels), cfg.sample_rate, min_s)
    _validate_pcm(data, fmt, channels, input_rate)
    stream = ffmpeg.input("pipe:", format=fmt, ar=input_rate, ac=channels)
    pcm = _run_ffmpeg(stream, cfg.sample_rate, cfg.decode_timeout_s, f"raw {fmt} PCM", stdin=data)
    return _checked(pcm, cfg.sample_rate, min_s)


def pcm_from_bytes(data: bytes, fmt: PcmFormat, channels: int) -> np.ndarray:
    """Raw interleaved PCM -> (S,) float32 mono (channel mean), no resampling: for streaming pushes."""
    _validate_pcm(data, fmt, channels)
    samples = np.frombuffer(data, dtype=_PCM_DTYPES[fmt]).astype(np.float32)
    if fmt == "s16le":
        samples /= _S16_SCALE
    return samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)


def _validate_pcm(data: bytes, fmt: str, channels: int, rate: int | None = None) -> None:
    if fmt not in _PCM_DTYPES:
        raise AudioError(f"raw PCM format must be one of {sorted(_PCM_DTYPES)}, got {fmt!r}")
    if channels < 1 or (rate is not None and rate < 1):
        raise AudioError(f"raw PCM needs channels >= 1 and a sample rate >= 1, got {channels} and {rate}")
    frame_bytes = _PCM_DTYPES[fmt].itemsize * channels
    if len(data) % frame_bytes:
        raise AudioError(
            f"raw {fmt} PCM of {len(data)} bytes is not a whole number of {channels}-channel frames "
            f"({frame_bytes} bytes each): send complete frames"
        )


# ffmpeg notes that say nothing about damage (a WAV without a channel-layout header, for one)
_BENIGN_STDERR = ("Guessed Channel Layout",)


def _run_ffmpeg(stream, rate: int, timeout_s: float, what: str, stdin: bytes | None = None) -> np.ndarray:
    out = stream["a:0"].output("pipe:", format=_OUTPUT_FORMAT, ac=1, ar=rate)
    cmd = out.global_args(*_GLOBAL_ARGS, *(() if stdin is not None else ("-nostdin",))).compile()
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError(
            f"decoding {what} took longer than {timeout_s:.0f} s: send a shorter or uncorrupted file"
        ) from None
    except FileNotFoundError:
        raise AudioError("ffmpeg is not installed: install it (apt-get install ffmpeg)") from None
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0:
        if "matches no streams" in err:
            raise AudioError(f"{what} contains no audio stream: send an audio file (WAV, MP3, AAC, FLAC, ...)")
        raise AudioError(
            f"ffmpeg could not decode {what} (is it an audio file?): {err[-_STDERR_TAIL:] or 'no message'}"
        )
    err = "\n".join(line for line in err.splitlines() if not any(b in line for b in _BENIGN_STDERR))
    if err:
        log.warning("ffmpeg decoded %s with warnings (truncated or damaged input?): %s", what, err[-_STDERR_TAIL:])
    return np.frombuffer(proc.stdout, dtype=_PCM_DTYPES[_OUTPUT_FORMAT]).copy()


def _checked(pcm: np.ndarray, rate: int, min_duration_s: float) -> np.ndarray:
    if pcm.size == 0:
        raise AudioError("the audio decoded to 0 samples: the file holds no sound, send a non-empty recording")
    if not np.isfinite(pcm).all():
        raise AudioError("the audio holds NaN or infinite samples: re-export it as PCM or a standard codec")
    duration = pcm.size / rate
    if duration < min_duration_s:
        raise AudioError(
            f"the audio is {duration * 1000:.0f} ms long, shorter than the {min_duration_s * 1000:.0f} ms minimum: "
            "send a longer recording"
        )
    return pcm
