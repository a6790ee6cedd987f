"""``FrameRing``: feature rows addressable by absolute video-frame index, in bounded memory.

Legend: R capacity (rows kept), L layers, C channels.

Rows are appended in frame order; only the latest R are held (a fixed (R, L, C) tensor used as a
ring), but every lookup takes absolute frame indices, so a session can run for hours while the
sampler keeps asking for "rows 151200 .. 151253".

``restart_at(end)`` empties a ring and positions it at absolute frame ``end``: a stream restored from
a snapshot goes on appending frames ``end, end + 1, ...`` without the rows before (asking for them
raises ``RowsUnavailable("dropped")``), so a snapshot needs only the position, not the rows.
"""

from __future__ import annotations

import torch

from liveact.audio.errors import RowsUnavailable
from liveact.config import ConfigError, LiveActConfig
from liveact.sampling.audio_window import window_index

__all__ = ["ChunkWindows", "FrameRing"]


class FrameRing:
    def __init__(self, capacity: int, layers: int, channels: int) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._data = torch.zeros(capacity, layers, channels)  # (R, L, C)
        self.end = 0  # absolute index one past the newest row
        self._first = 0  # absolute index of the first row appended since the ring (re)started

    @property
    def start(self) -> int:
        """Oldest absolute frame index still held."""
        return max(self._first, self.end - self.capacity)

    def restart_at(self, end: int) -> None:
        """Drop every row; the next row appended is frame ``end`` (frames before it read as dropped)."""
        if end < 0:
            raise ValueError(f"a ring position must be >= 0, got {end}")
        self._data.zero_()
        self.end = self._first = end

    def append(self, rows: torch.Tensor) -> None:
        """rows (n, L, C), the frames ``end .. end+n-1``."""
        if rows.shape[1:] != self._data.shape[1:]:
            raise ValueError(f"rows must be (n, {tuple(self._data.shape[1:])}), got {tuple(rows.shape)}")
        n = rows.shape[0]
        keep = rows[-self.capacity :]
        slots = torch.arange(self.end + n - keep.shape[0], self.end + n) % self.capacity
        self._data[slots] = keep.to(self._data.dtype)
        self.end += n

    def gather(self, index: torch.Tensor) -> torch.Tensor:
        """index (*I) int64 absolute frames -> rows (*I, L, C) (a copy)."""
        if index.numel():
            lo, hi = int(index.min()), int(index.max())
            if hi >= self.end:
                raise RowsUnavailable(
                    f"frame {hi} is not final yet (final rows: 0..{self.end - 1}): push more audio or call finish()",
                    reason="not_final",
                )
            if lo < self.start:
                raise RowsUnavailable(
                    f"frame {lo} was dropped (rows {self.start}..{self.end - 1} are held, capacity {self.capacity}): "
                    "fetch windows as they become ready or raise retain_frames",
                    reason="dropped",
                )
        flat = torch.index_select(self._data, 0, (index % self.capacity).reshape(-1))  # (prod(I), L, C)
        return flat.view(*index.shape, *self._data.shape[1:])

    def get(self, start: int, stop: int) -> torch.Tensor:
        """Rows of frames [start, stop) -> (stop-start, L, C)."""
        return self.gather(torch.arange(start, stop, dtype=torch.int64))


_UNBOUNDED_ROWS = 2**62  # "no end known yet": window_index then clamps only at frame 0


class ChunkWindows:
    """Feature rows arriving in frame order -> each chunk's audio window, once it is final.

    Used wherever rows come from (a local ``StreamingAudioFeatures`` or a remote audio encoder).
    Before ``finish(total)`` windows may only use rows that exist; after it, indices past the end
    clamp to the last row, exactly as ``liveact.sampling.audio_window.gather_window`` does offline.
    """

    def __init__(self, capacity: int, layers: int, channels: int) -> None:
        self.ring = FrameRing(capacity, layers, channels)
        self.total_frames: int | None = None

    def append(self, rows: torch.Tensor) -> None:
        self.ring.append(rows)

    def finish(self, total_frames: int) -> None:
        if total_frames != self.ring.end:
            raise ValueError(f"stream ended with {total_frames} frames but {self.ring.end} rows arrived")
        self.total_frames = total_frames

    def _index(self, config: LiveActConfig, chunk_index: int) -> torch.Tensor:
        m = config.model
        layers, channels = self.ring._data.shape[1:]
        if (m.audio_layers, m.audio_channels) != (layers, channels):
            raise ConfigError(
                f"model wants {m.audio_layers} x {m.audio_channels} rows, this stream makes {layers} x {channels}"
            )
        n = self.total_frames if self.total_frames is not None else _UNBOUNDED_ROWS
        return window_index(config, chunk_index, n)  # (Fv, W) absolute frames

    def ready(self, config: LiveActConfig, chunk_index: int) -> bool:
        """Whether chunk k's window is final; ``RowsUnavailable("dropped")`` if it left the buffer."""
        index = self._index(config, chunk_index)
        if int(index.max()) >= self.ring.end:
            return False
        self.ring.gather(index[:1, :1])  # raises if the oldest row was dropped
        return True

    def window(self, config: LiveActConfig, chunk_index: int) -> torch.Tensor:
        """Chunk k's window (1, Fv, W, L, C)."""
        return self.ring.gather(self._index(config, chunk_index)).unsqueeze(0)
