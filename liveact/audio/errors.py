"""Errors of the audio front end; each message says what the caller should change."""

from __future__ import annotations

__all__ = ["AudioError", "RowsUnavailable"]


class AudioError(ValueError):
    """Audio that cannot be turned into features (not audio, empty, too short, broken)."""


class RowsUnavailable(LookupError):
    """Feature rows asked for by absolute frame index that are not held.

    ``reason`` is ``"not_final"`` (push more audio, or call ``finish``) or ``"dropped"`` (the rows
    fell out of the bounded buffer: fetch windows in order, or raise ``retain_frames``).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
