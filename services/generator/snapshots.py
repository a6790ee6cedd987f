"""Where a running session's checkpoint is taken: rows fixed, markers sent, rows collected.

After a due chunk k the DiT state arrives captured in host buffers (``SessionDiT.step(..., snapshot=True)``,
``liveact.sampling.capture``); under
the session's lock the rows chunk k+1 and later need are copied from the ring and the encoder's
marker is queued after all PCM queued so far (``ClientReader.position``), then the decoder's marker
follows chunk k's latents. Rows that arrive before the encoder answers belong to the checkpoint too
(``rows_added``). ``CheckpointWriter`` then writes the whole in the background.
"""

from __future__ import annotations

import asyncio

import torch

from liveact.config import LiveActConfig
from liveact.parallel.ranks import DitSnapshot
from liveact.sampling.chunking import plan_chunk
from liveact.v1 import common_pb2
from services.generator.checkpoint import CheckpointWriter, CommitReport, OnFenced, OnWritten, PendingCheckpoint
from services.generator.client_reader import ClientReader
from services.generator.links import DecoderLink, EncoderLink
from services.generator.scheduler import ChunkScheduler

__all__ = ["SessionSnapshots"]


class SessionSnapshots:
    def __init__(
        self, writer: CheckpointWriter, config: LiveActConfig, schedule: ChunkScheduler, progress: asyncio.Condition,
        reader: ClientReader, encoder: EncoderLink, decoder: DecoderLink,
    ) -> None:  # fmt: skip
        self.writer, self.config, self.schedule, self.progress = writer, config, schedule, progress
        self.reader, self.encoder, self.decoder = reader, encoder, decoder
        self.pending: PendingCheckpoint | None = None

    def due(self, chunks_done: int) -> bool:
        if self.encoder.ended and self.schedule.total_frames is None:
            return False  # audio ended but its last rows are still on their way: wait for them
        return self.writer.due(chunks_done)

    async def take(self, next_chunk: int, dit_state: DitSnapshot | None, on_written: OnWritten,
                   on_fenced: OnFenced) -> None:  # fmt: skip
        """Fix the audio rows held now, send both snapshot markers, write in the background."""
        if dit_state is None:
            self.writer.not_taken(next_chunk, "a tensor-parallel rank is still writing the previous checkpoint")
            return
        s, numbering = self.schedule, self.schedule.numbering
        async with self.progress:
            total, position = s.total_frames, self.reader.position
            if self.encoder.ended and total is None:  # EndOfAudio went to the encoder meanwhile: too late
                return
            if total is None and not self.writer.audio_log.exact_from(position.seq):
                return  # the audio log has a gap after this point: the checkpoint could not be replayed
            first, rows = s.held_rows(next_chunk)  # (n, L, C), n = 0 when no row is held yet
            marker = self.writer.next_id()
            encoder_state = self.encoder.snapshot(marker) if total is None else _done(b"")  # all rows held
            pending = self.pending = PendingCheckpoint(
                id=marker, chunk_index=next_chunk, dit=dit_state, rows=[rows], rows_first=first, audio=position,
                next_frame=numbering.client_frame(plan_chunk(self.config, next_chunk).video_frames[0]),
                audio_total=total, frame_offset=numbering.frame_offset, row_offset=numbering.row_offset,
                encoder_state=encoder_state, decoder_state=self.decoder.ask_snapshot(marker),
                collecting_rows=total is None,
            )  # fmt: skip
        await self.decoder.send_marker(marker)  # right after chunk next_chunk - 1

        async def written(version: int, p: PendingCheckpoint, report: CommitReport) -> None:
            if self.pending is p:
                self.pending = None
            await on_written(version, p, report)

        self.writer.start(pending, written, on_fenced)

    def rows_added(self, part: torch.Tensor) -> None:
        """Rows (n, L, C) appended to the ring (under the session's lock)."""
        if self.pending is not None and self.pending.collecting_rows:
            self.pending.rows.append(part.clone())

    def encoder_answered(self, snap: common_pb2.StreamSnapshot) -> None:
        """The encoder's snapshot arrived: the rows up to here are the checkpoint's."""
        p = self.pending
        if p is None or snap.id != p.id:
            return  # stale: the link logs it
        if self.schedule.numbering.model_row(snap.next_frame) != self.schedule.rows_end:
            raise RuntimeError(f"encoder snapshot at row {snap.next_frame}; {self.schedule.rows_end} rows arrived")
        p.collecting_rows = False


def _done(value: bytes) -> asyncio.Future[bytes]:
    fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut
