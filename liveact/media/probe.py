"""A small ffprobe wrapper: streams, codecs, exact frame rates, frame counts and frame times.

Rates and time bases are ``Fraction``s, read from ffprobe's ``num/den`` strings, so a 20 fps
stream reads exactly 20 and frame times compare exactly with ``k / fps``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from liveact.media.errors import FfmpegError, MediaError

__all__ = ["MediaInfo", "StreamInfo", "probe", "video_frame_times"]

DEFAULT_TIMEOUT_S = 60.0
_STDERR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class StreamInfo:
    """One stream; video fields are None for audio streams and the other way round."""

    index: int
    kind: str  # "video", "audio", "data", ...
    codec: str
    time_base: Fraction
    duration: float | None  # seconds, from the container's stream header
    frame_count: int | None  # counted by decoding with count_frames=True, else the header's nb_frames
    width: int | None = None
    height: int | None = None
    fps: Fraction | None = None  # r_frame_rate
    avg_fps: Fraction | None = None  # avg_frame_rate
    pix_fmt: str | None = None
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True)
class MediaInfo:
    format_name: str
    duration: float | None
    streams: tuple[StreamInfo, ...]

    @property
    def video(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "audio"), None)

    @property
    def codecs(self) -> tuple[str, ...]:
        return tuple(s.codec for s in self.streams)


def probe(
    path: str | os.PathLike,
    *,
    count_frames: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    ffprobe: str = "ffprobe",
) -> MediaInfo:
    """Describe a media file; ``count_frames`` decodes every stream to count frames exactly (slower)."""
    args = ["-show_format", "-show_streams"] + (["-count_frames"] if count_frames else [])
    data = _run(ffprobe, path, args, timeout_s)
    fmt = data.get("format", {})
    streams = tuple(_stream(s) for s in data.get("streams", []))
    return MediaInfo(format_name=fmt.get("format_name", ""), duration=_float(fmt.get("duration")), streams=streams)


def video_frame_times(
    path: str | os.PathLike, *, timeout_s: float = DEFAULT_TIMEOUT_S, ffprobe: str = "ffprobe"
) -> list[Fraction]:
    """Presentation time (pts x time base, exact) of every frame of the first video stream, in order."""
    args = ["-select_streams", "v:0", "-show_entries", "stream=time_base:frame=pts"]
    data = _run(ffprobe, path, args, timeout_s)
    streams = data.get("streams", [])
    if not streams:
        raise MediaError(f"{path} has no video stream")
    time_base = _fraction(streams[0]["time_base"])
    times = []
    for frame in data.get("frames", []):
        if "pts" not in frame:
            raise MediaError(f"{path}: a video frame has no pts")
        times.append(int(frame["pts"]) * time_base)
    return times


def _run(ffprobe: str, path: str | os.PathLike, args: list[str], timeout_s: float) -> dict[str, Any]:
    if shutil.which(ffprobe) is None:
        raise MediaError(f"{ffprobe!r} was not found on PATH; install ffmpeg (it provides ffprobe)")
    if not os.path.isfile(path):
        raise MediaError(f"{path} does not exist or is not a file")
    argv = [ffprobe, "-v", "error", "-print_format", "json", *args, os.fspath(path)]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise FfmpegError(f"ffprobe did not finish within {timeout_s} s on {path}") from None
    stderr = done.stderr.decode(errors="replace")[-_STDERR_TAIL_CHARS:].strip()
    if done.returncode != 0:
        raise FfmpegError(f"ffprobe could not read {path}", done.returncode, stderr)
    return json.loads(done.stdout or b"{}")


def _stream(s: dict[str, Any]) -> StreamInfo:
    kind = s.get("codec_type", "unknown")
    counted = s.get("nb_read_frames") or s.get("nb_frames")
    common = dict(
        index=int(s["index"]),
        kind=kind,
        codec=s.get("codec_name", "unknown"),
        time_base=_fraction(s.get("time_base", "0/1")),
        duration=_float(s.get("duration")),
        frame_count=int(counted) if counted not in (None, "N/A") else None,
    )
    if kind == "video":
        return StreamInfo(
            **common,
            width=s.get("width"),
            height=s.get("height"),
            fps=_fraction(s.get("r_frame_rate", "0/1")),
            avg_fps=_fraction(s.get("avg_frame_rate", "0/1")),
            pix_fmt=s.get("pix_fmt"),
        )
    if kind == "audio":
        return StreamInfo(**common, sample_rate=int(s["sample_rate"]), channels=s.get("channels"))
    return StreamInfo(**common)


def _fraction(text: str) -> Fraction:
    num, _, den = text.partition("/")
    return Fraction(int(num), int(den or 1)) if int(den or 1) else Fraction(0)


def _float(value: Any) -> float | None:
    return None if value in (None, "N/A") else float(value)
