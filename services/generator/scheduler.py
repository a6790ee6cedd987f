"""Which chunk is next and what it needs: a generator session's bookkeeping, pure and synchronous.

A session's audio arrives as feature rows (from the audio encoder) into a bounded ring
(``ROWS_KEPT`` rows); chunk k can be generated once every row of its audio window is final, and
must be generated before the ring overwrites a row it needs. ``ChunkScheduler`` answers the
questions the session's tasks wait on, and records what they did:

* ``can_generate`` - the next chunk's window is final and fewer than ``chunk_queue`` generated
  chunks are still on their way to the client (back-pressure from a slow reader);
* ``ring_room`` - rows the encoder may deliver without overwriting a row a chunk still needs;
* ``may_send_pcm`` - the PCM sent to the encoder is less than ``ROWS_KEPT`` rows ahead of the first
  row still needed (so an encoder never works far ahead of the DiT);
* ``all_done`` - the audio ended and every chunk covering it is generated.

Nothing here awaits, locks or talks gRPC: the session wraps it in one ``asyncio.Condition``.
Numbers: rows and chunks are in the model's timeline; ``Numbering`` maps them to the client's
frames and to the encoder stream's rows (they differ after a LIVE resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from liveact.audio.rows import ChunkWindows
from liveact.config import LiveActConfig
from liveact.pipeline import chunks_needed
from liveact.sampling.audio_window import ROWS_KEPT, window_index
from liveact.sampling.chunking import chunk_needing_row, plan_chunk

__all__ = ["ROWS_KEPT", "ChunkScheduler", "Numbering"]

_NO_END_YET = 2**62  # "no end known yet" for window_index: indices clamp only at frame 0


@dataclass(frozen=True)
class Numbering:
    """A session's numbering: client frame = model frame + ``frame_offset``; model row = encoder
    stream row + ``row_offset``. Both are 0 until a LIVE resume splices new audio in."""

    frame_offset: int = 0
    row_offset: int = 0

    def client_frame(self, model_frame: int) -> int:
        return model_frame + self.frame_offset

    def model_row(self, encoder_row: int) -> int:
        return encoder_row + self.row_offset


class ChunkScheduler:
    """One session's chunk schedule: the ring of feature rows, the next chunk, what was delivered."""

    def __init__(
        self,
        config: LiveActConfig,
        numbering: Numbering,
        fps: float,
        sample_rate: int,
        chunk_queue: int,
        next_chunk: int = 0,
        pcm_frames_sent: int = 0,
        rows_kept: int = ROWS_KEPT,
    ) -> None:
        """``fps`` and ``sample_rate``: the session's video rate and its client PCM's sample rate."""
        self.config, self.numbering = config, numbering
        self.fps, self.sample_rate = fps, sample_rate
        self.chunk_queue, self.rows_kept = chunk_queue, rows_kept
        m = config.model
        self.windows = ChunkWindows(rows_kept, m.audio_layers, m.audio_channels)
        self.next_chunk = next_chunk  # the chunk whose window is taken next
        self.delivered = next_chunk  # chunks before this were handed to gRPC for the client
        self.pcm_frames_sent = pcm_frames_sent  # PCM sample frames sent to the encoder (its numbering)
        self._rows_of: tuple[int, tuple[int, int]] | None = None  # (k, rows_needed_by(k)), one chunk at a time
        first, last = self.rows_needed_by(next_chunk)
        if last - first + 1 >= rows_kept:
            raise ValueError(f"ROWS_KEPT={rows_kept} cannot hold one audio window (rows {first}..{last})")

    # -- questions ------------------------------------------------------------------------------
    @property
    def total_frames(self) -> int | None:
        """Feature rows (model numbering) the whole audio makes, once it has ended; else None."""
        return self.windows.total_frames

    @property
    def rows_end(self) -> int:
        """One past the newest row held."""
        return self.windows.ring.end

    def rows_needed_by(self, k: int) -> tuple[int, int]:
        """The first and last feature row (model frame) of chunk k's audio window."""
        if self._rows_of is None or self._rows_of[0] != k:
            index = window_index(self.config, k, _NO_END_YET)  # (Fv, W)
            self._rows_of = (k, (int(index.min()), int(index.max())))
        return self._rows_of[1]

    def ring_room(self) -> int:
        """Rows that can be appended without dropping one that chunk ``next_chunk`` or later needs."""
        ring = self.windows.ring
        return ring.capacity - (ring.end - self.rows_needed_by(self.next_chunk)[0])

    def pcm_rows(self) -> float:
        """Feature rows (model numbering) the PCM sent to the encoder makes."""
        return self.pcm_frames_sent * self.fps / self.sample_rate + self.numbering.row_offset

    def may_send_pcm(self) -> bool:
        """Whether the encoder may get more PCM: it is less than ``rows_kept`` rows ahead of the DiT."""
        return self.pcm_rows() - self.rows_needed_by(self.next_chunk)[0] < self.rows_kept

    def chunk_ready(self, k: int) -> bool:
        return self.windows.ready(self.config, k)

    def all_done(self) -> bool:
        """The audio ended and chunk ``next_chunk`` would be past it."""
        total = self.windows.total_frames
        return total is not None and self.next_chunk >= chunks_needed(self.config, total)

    def can_generate(self) -> bool:
        """The next chunk's window is final and the client is at most ``chunk_queue`` chunks behind."""
        k = self.next_chunk
        return self.chunk_ready(k) and k < self.delivered + self.chunk_queue  # a dropped row raises, as before

    def keep_frames(self, k: int) -> int:
        """Frames of chunk k the video keeps (the last chunk is cut where the audio ends)."""
        start, end = plan_chunk(self.config, k).video_frames
        total = self.windows.total_frames
        return end - start if total is None else min(end, total) - start

    def chunk_of_pcm(self) -> int:
        """The chunk whose window the PCM sent so far completes (its trace carries that PCM)."""
        last_row = max(int(self.pcm_rows()) - 1, 0)
        return max(chunk_needing_row(self.config, last_row), self.next_chunk)

    def held_rows(self, k: int) -> tuple[int, torch.Tensor]:
        """(first, rows (n, L, C)): the rows held now that chunk k and later need (a copy)."""
        end = self.windows.ring.end
        first = min(self.rows_needed_by(k)[0], end)
        return first, self.windows.ring.get(first, end)

    # -- changes --------------------------------------------------------------------------------
    def restore(self, rows_first: int, rows: torch.Tensor, total_frames: int | None) -> None:
        """A resumed session's rows: absolute rows ``rows_first ..`` (n, L, C), and the audio's end if known."""
        self.windows.ring.restart_at(rows_first)
        if rows.dim() == 3 and rows.shape[0]:
            self.windows.append(rows)
        if total_frames is not None:
            self.windows.finish(total_frames)

    def take(self) -> tuple[int, torch.Tensor]:
        """(k, window (1, Fv, W, L, C)) of the next chunk, which must be ready; the window is a copy:
        rows only chunk k needed may now be overwritten."""
        k = self.next_chunk
        window = self.windows.window(self.config, k)
        self.next_chunk = k + 1
        return k, window

    def add_rows(self, block: torch.Tensor) -> torch.Tensor:
        """Append as many of ``block`` (n, L, C) as the ring has room for; returns the rows appended."""
        part = block[: max(self.ring_room(), 0)]
        if part.shape[0]:
            self.windows.append(part)
        return part

    def finish(self, encoder_rows: int) -> None:
        """The encoder's stream ended after ``encoder_rows`` rows (its numbering)."""
        self.windows.finish(self.numbering.model_row(encoder_rows))

    def sent_pcm(self, frames: int) -> None:
        """The encoder has been sent PCM up to sample frame ``frames`` (its numbering)."""
        self.pcm_frames_sent = frames

    def delivered_chunk(self, k: int) -> None:
        """Chunk k was handed to gRPC for the client."""
        self.delivered = max(self.delivered, k + 1)
