"""Where a session's checkpoint is assembled and written: snapshot now, write in the background.

A checkpoint is taken after chunk k is generated, and describes the session *before chunk k+1*:

* the DiT side, copied synchronously in the DiT thread right after chunk k (``export_sampler``:
  ConvKV slots 0-5 after an eager compression, RNG state, conditioning);
* the audio side: the feature rows chunk k+1 and later need that the generator already holds
  (copied from the ring, plus the rows that still arrive until the encoder's snapshot), and the
  audio encoder stream's state after the client PCM up to ``AudioPosition`` (an in-band snapshot
  marker: the encoder answers with its state once it has processed everything before the marker);
* the decoder stream's state after chunk k (an in-band marker after chunk k's latents);
* the audio position: AudioChunk ``seq`` and byte ``offset`` of the first client PCM the encoder
  state has not seen. The Redis audio log (``audio_log.py``) holds every AudioChunk from there on,
  so a resume replays it through the restored encoder and regenerates chunk k+1.. exactly.

Once the audio has ended and the encoder's last rows are all in the generator's ring (a client
that sends a file faster than real time gets there early), a checkpoint needs no encoder state:
it stores the remaining rows and ``audio_total``, and a resume runs without an encoder stream. If
the audio has ended but rows are still on their way, a due checkpoint waits for them.

Nothing here blocks generation: the DiT copy is the only synchronous part; the two markers are
answered while the pipeline goes on, and ``CheckpointWriter`` serialises and writes (with retries
while Redis is away) in a background task. At most one checkpoint per session is in flight; a
checkpoint due while one is still being written is skipped.

Shards, one per tensor-parallel rank: names and metadata are ``liveact.state.schema``'s. A
checkpoint written at one degree resumes at another through ``liveact.parallel.reshard``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import torch

from liveact.state.backoff import Backoff
from liveact.state.schema import (
    AUDIO_ROWS,
    DECODER_STATE,
    ENCODER_STATE,
    AudioPosition,
    CheckpointMeta,
    with_dit_prefix,
)
from liveact.state.store import FencedError, StoreError, StoreUnavailable
from services.generator.audio_log import AudioLog
from services.generator.lease import LeaseKeeper

__all__ = ["CheckpointPolicy", "CheckpointWriter", "PendingCheckpoint"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointPolicy:
    every_chunks: int = 4  # checkpoint after every N-th chunk (0 = not by count)
    every_s: float = 0.0  # and/or when this many seconds passed since the last one (0 = not by time)

    def due(self, chunks_since: int, seconds_since: float) -> bool:
        by_count = self.every_chunks > 0 and chunks_since >= self.every_chunks
        by_time = self.every_s > 0 and seconds_since >= self.every_s
        return by_count or by_time


@dataclass
class PendingCheckpoint:
    """A checkpoint being collected: the DiT part is fixed, the stream parts arrive."""

    id: int
    chunk_index: int  # the next chunk to generate
    next_frame: int  # its first video frame (client numbering)
    dit: list[dict[str, torch.Tensor]]  # every rank's sampler state, rank order
    rows_first: int
    rows: list[torch.Tensor]  # (n, L, C) blocks, in order from rows_first
    audio: AudioPosition  # where the encoder state will stand in the client's audio
    audio_total: int | None  # the audio had ended: all rows are held, no encoder state needed
    frame_offset: int  # client frame index - model frame index (changes at a LIVE resume)
    row_offset: int  # model row index of the encoder stream's row 0
    encoder_state: asyncio.Future[bytes]
    decoder_state: asyncio.Future[bytes]
    collecting_rows: bool = field(default=True)  # rows arriving before the encoder's snapshot belong to it

    def shards(self) -> tuple[CheckpointMeta, list[dict[str, torch.Tensor]]]:
        """(meta, one tensor dict per rank) once both stream states have arrived."""
        rows = torch.cat(self.rows) if self.rows else torch.zeros(0)
        shards = [with_dit_prefix(rank) for rank in self.dit]
        tensors = shards[0]
        tensors[AUDIO_ROWS] = rows.contiguous()
        tensors[ENCODER_STATE] = _bytes_tensor(self.encoder_state.result())
        tensors[DECODER_STATE] = _bytes_tensor(self.decoder_state.result())
        meta = CheckpointMeta(
            chunk_index=self.chunk_index,
            next_frame=self.next_frame,
            rows_first=self.rows_first,
            rows_end=self.rows_first + int(rows.shape[0]) if rows.dim() == 3 else self.rows_first,
            audio_seq=self.audio.seq,
            audio_offset=self.audio.offset,
            pcm_frames=self.audio.frames,
            audio_total=self.audio_total,
            frame_offset=self.frame_offset,
            row_offset=self.row_offset,
            tp=len(shards),
        )
        return meta, shards


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().numpy().tobytes()


OnWritten = Callable[[int, PendingCheckpoint], Awaitable[None]]
OnFenced = Callable[[FencedError], Awaitable[None]]


class CheckpointWriter:
    """One session's checkpoints: when they are due, and the background write.

    A write that finds Redis away is not retried with stale state: the next checkpoint is due once
    the backoff delay has passed and carries the session's state of that moment, so checkpointing
    catches up as soon as Redis is back. A fenced write (another generator owns the session now)
    ends the session with ABORTED through ``on_fenced``.
    """

    def __init__(
        self,
        keeper: LeaseKeeper,
        audio_log: AudioLog,
        policy: CheckpointPolicy,
        backoff: Backoff,
        last_chunk: int = 0,
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        self.keeper, self.audio_log, self.policy, self.backoff = keeper, audio_log, policy, backoff
        self.on_commit = on_commit  # (tensor bytes, seconds from snapshot ready to commit): metrics
        self.task: asyncio.Task | None = None
        self.last_chunk = last_chunk  # chunk_index of the newest checkpoint started (or of the resumed one)
        self.last_time = time.monotonic()
        self.retry_at = 0.0  # monotonic time before which no checkpoint is started (after a failure)
        self.failures = 0  # consecutive failed writes
        self.written = 0  # checkpoints committed by this writer
        self._ids = 0

    @property
    def disabled(self) -> str | None:
        """Why this session cannot be checkpointed any more (None while it can)."""
        return self.audio_log.disabled

    def due(self, chunks_done: int) -> bool:
        if self.disabled or (self.task is not None and not self.task.done()):
            return False
        now = time.monotonic()
        return now >= self.retry_at and self.policy.due(chunks_done - self.last_chunk, now - self.last_time)

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def start(self, pending: PendingCheckpoint, on_written: OnWritten, on_fenced: OnFenced) -> None:
        """Write ``pending`` in the background; then ``await on_written(version, pending)``."""
        self.last_chunk, self.last_time = pending.chunk_index, time.monotonic()
        self.task = asyncio.create_task(self._write(pending, on_written, on_fenced), name="checkpoint")

    async def settled(self) -> None:
        """Wait for the checkpoint being written, if any (whatever its outcome)."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def _write(self, pending: PendingCheckpoint, on_written: OnWritten, on_fenced: OnFenced) -> None:
        await asyncio.gather(pending.encoder_state, pending.decoder_state)
        started = time.monotonic()
        meta, shards = await asyncio.to_thread(pending.shards)
        store, sid = self.keeper.store, self.keeper.session_id
        try:
            version = await self.keeper.guarded(lambda: store.write_checkpoint(self.keeper.lease, meta, shards))
        except FencedError as exc:
            await on_fenced(exc)
            return
        except StoreUnavailable as exc:
            self.failures += 1
            delay = self.backoff.delay(self.failures - 1)
            self.retry_at = time.monotonic() + delay
            log.warning(
                "checkpoint write failed; next try after the backoff",
                extra={"session": sid, "error": str(exc), "retry_in_s": round(delay, 3)},
            )
            return
        except StoreError as exc:
            self.audio_log.disable(f"checkpoint refused: {exc}")
            return
        self.failures, self.retry_at = 0, 0.0
        self.audio_log.committed(meta.audio_seq)
        self.written += 1
        if self.on_commit is not None:
            self.on_commit(sum(t.nbytes for shard in shards for t in shard.values()), time.monotonic() - started)
        log.info("checkpoint written", extra={"session": sid, "version": version, "chunk": pending.chunk_index})
        await on_written(version, pending)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
