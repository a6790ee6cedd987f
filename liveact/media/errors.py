"""Errors raised by ``liveact.media``; each message says what to fix."""

from __future__ import annotations

__all__ = ["FfmpegError", "ImageError", "MediaError"]


class ImageError(ValueError):
    """A reference image that cannot be used: missing, empty, corrupt, not an image, or too large."""


class MediaError(RuntimeError):
    """Encoding, decoding or probing failed (ffmpeg missing, a file without the expected stream, ...)."""


class FfmpegError(MediaError):
    """An ffmpeg/ffprobe child failed, stalled or was stopped; carries the tail of its stderr."""

    def __init__(self, message: str, returncode: int | None = None, stderr_tail: str = "") -> None:
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        detail = f" (exit code {returncode})" if returncode is not None else ""
        tail = f"\nffmpeg stderr (last lines):\n{stderr_tail}" if stderr_tail else ""
        super().__init__(f"{message}{detail}{tail}")
