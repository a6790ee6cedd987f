"""Where a session's checkpoint is assembled and written: snapshot now, write in the background.

A checkpoint is taken after chunk k is generated, and describes the session *before chunk k+1*:

* the DiT side, captured in the DiT thread right after chunk k into host buffers kept for the session
  (``liveact.sampling.capture``: ConvKV slots 0-5 after an eager compression, RNG state, conditioning;
  on CUDA pinned buffers filled on a side stream); every tensor-parallel rank captures its own heads;
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

Nothing here blocks generation: the capture is the only synchronous part (its time is reported as
the stall); the two markers are answered while the pipeline goes on, and ``CheckpointWriter`` writes
rank 0's parts while every other rank writes its own (``liveact.parallel.part_writer``), then commits
the manifest, in a background task (the next checkpoint is tried once the backoff has passed while
Redis is away). At most one checkpoint per session is in flight; a
checkpoint due while one is still being written is skipped, counted and logged (``skipped``). How often
they are due: ``CheckpointPolicy`` (count, time, a per-rank write budget, a maximum interval).

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

from liveact.parallel.ranks import DitSnapshot
from liveact.state.backoff import Backoff
from liveact.state.schema import (
    AUDIO_ROWS,
    DECODER_STATE,
    ENCODER_STATE,
    AudioPosition,
    CheckpointMeta,
    with_dit_prefix,
)
from liveact.state.store import CheckpointWrite, FencedError, StoreError, StoreFull, StoreUnavailable
from services.generator.audio_log import AudioLog
from services.generator.lease import LeaseKeeper

__all__ = ["CheckpointPolicy", "CheckpointWriter", "CommitReport", "PendingCheckpoint"]

log = logging.getLogger(__name__)
MB = 1_000_000  # --checkpoint-mbps counts decimal megabytes per second
FAIL_FULL, FAIL_UNAVAILABLE, FAIL_REFUSED = "full", "unavailable", "refused"  # why a checkpoint write failed


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a session's next checkpoint is due.

    By count (``every_chunks``) and/or time (``every_s``), as far as the write budget allows: with
    ``budget_mbps`` a checkpoint of B bytes per rank is followed by the next no sooner than B / budget
    seconds after it started, so no rank writes more than the budget on average. ``max_interval_s`` asks
    for one at least that often; where the budget does not allow it, the budget wins (``budget_limited``).
    """

    every_chunks: int = 4  # checkpoint after every N-th chunk (0 = not by count)
    every_s: float = 0.0  # and/or when this many seconds passed since the last one (0 = not by time)
    budget_mbps: float = 0.0  # per-rank write budget in MB/s, averaged over checkpoints (0 = none)
    max_interval_s: float = 0.0  # at least this often, where the budget allows (0 = no such bound)

    def min_interval_s(self, bytes_per_rank: int) -> float:
        """The shortest spacing the budget allows after a checkpoint of ``bytes_per_rank`` (0 without one)."""
        return bytes_per_rank / (self.budget_mbps * MB) if self.budget_mbps > 0 else 0.0

    def budget_limited(self, bytes_per_rank: int) -> bool:
        """Whether the budget spaces checkpoints further apart than ``max_interval_s`` asks."""
        return self.max_interval_s > 0 and self.min_interval_s(bytes_per_rank) > self.max_interval_s

    def due(self, chunks_since: int, seconds_since: float, last_bytes_per_rank: int = 0) -> bool:
        if seconds_since < self.min_interval_s(last_bytes_per_rank):
            return False
        by_count = self.every_chunks > 0 and chunks_since >= self.every_chunks
        by_time = self.every_s > 0 and seconds_since >= self.every_s
        by_max = self.max_interval_s > 0 and seconds_since >= self.max_interval_s
        return by_count or by_time or by_max

    def interval_s(self, chunk_s: float, bytes_per_rank: int) -> float:
        """The longest expected time between two checkpoints' starts: what an EXACT resume may have to replay
        (seconds of audio, plus the write time), from the count/time rules, the maximum and the budget."""
        rules = [r for r in (self.every_chunks * chunk_s, self.every_s, self.max_interval_s) if r > 0]
        nominal = min(rules) if rules else 0.0
        return max(nominal, self.min_interval_s(bytes_per_rank))


@dataclass
class PendingCheckpoint:
    """A checkpoint being collected: the DiT part is fixed, the stream parts arrive."""

    id: int
    chunk_index: int  # the next chunk to generate
    next_frame: int  # its first video frame (client numbering)
    dit: DitSnapshot  # rank 0's captured state; the other ranks write their own parts
    rows_first: int
    rows: list[torch.Tensor]  # (n, L, C) blocks, in order from rows_first
    audio: AudioPosition  # where the encoder state will stand in the client's audio
    audio_total: int | None  # the audio had ended: all rows are held, no encoder state needed
    frame_offset: int  # client frame index - model frame index (changes at a LIVE resume)
    row_offset: int  # model row index of the encoder stream's row 0
    encoder_state: asyncio.Future[bytes]
    decoder_state: asyncio.Future[bytes]
    collecting_rows: bool = field(default=True)  # rows arriving before the encoder's snapshot belong to it

    def rank0(self) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
        """(meta, rank 0's tensors) once both stream states have arrived and the DiT copy has landed."""
        self.dit.rank0.wait()
        rows = torch.cat(self.rows) if self.rows else torch.zeros(0)
        tensors = with_dit_prefix(self.dit.rank0.tensors)
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
            tp=self.dit.ranks,
        )
        return meta, tensors


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().numpy().tobytes()


@dataclass(frozen=True)
class CommitReport:
    """One committed checkpoint's figures (logged and recorded as metrics)."""

    bytes_total: int  # tensor bytes of every rank
    bytes_per_rank: int  # the largest rank's
    written_total: int  # bytes sent to Redis (parts it did not hold yet: what changed since the last version)
    written_per_rank: int  # the largest rank's: what the per-rank write budget counts
    seconds: float  # snapshot ready to committed
    stall_s: float  # the DiT thread's capture (the longest rank's): all a checkpoint costs generation
    replay_s: float  # the longest expected time to the next checkpoint: what an EXACT resume may replay
    skipped: int  # checkpoints skipped so far in the session (due while one was being written)


OnWritten = Callable[[int, PendingCheckpoint, CommitReport], Awaitable[None]]
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
        on_commit: Callable[[CommitReport], None] | None = None,
        chunk_s: float = 0.0,
        on_skip: Callable[[], None] | None = None,
        on_fail: Callable[[str], None] | None = None,
    ) -> None:
        self.keeper, self.audio_log, self.policy, self.backoff = keeper, audio_log, policy, backoff
        self.on_commit = on_commit  # each committed checkpoint's figures: metrics
        self.chunk_s = chunk_s  # seconds of video (and audio) per steady chunk: the replay bound's unit
        self.on_skip = on_skip  # a due checkpoint not taken: metrics
        self.on_fail = on_fail  # a checkpoint write failed, with its reason (FAIL_FULL, ...): metrics
        self.task: asyncio.Task | None = None
        self.last_chunk = last_chunk  # chunk_index of the newest checkpoint started (or of the resumed one)
        self.last_time = time.monotonic()
        self.retry_at = 0.0  # monotonic time before which no checkpoint is started (after a failure)
        self.failures = 0  # consecutive failed writes
        self.written = 0  # checkpoints committed by this writer
        self.skipped = 0  # checkpoints due while the previous one was still being written (not started)
        self.last_written_per_rank = 0  # the largest rank's bytes sent to Redis by the last checkpoint
        self._skipping = False  # the current run of due-but-busy chunks was counted already
        self._ids = 0

    @property
    def disabled(self) -> str | None:
        """Why this session cannot be checkpointed any more (None while it can)."""
        return self.audio_log.disabled

    def due(self, chunks_done: int) -> bool:
        if self.disabled:
            return False
        now = time.monotonic()
        wanted = now >= self.retry_at and self.policy.due(
            chunks_done - self.last_chunk, now - self.last_time, self.last_written_per_rank
        )
        if wanted and self.task is not None and not self.task.done():  # still writing the previous one
            if not self._skipping:
                self.skipped += 1
                self._skipping = True
                if self.on_skip is not None:
                    self.on_skip()
                log.info(
                    "checkpoint due while the previous one is still being written: skipped",
                    extra={"session": self.keeper.session_id, "chunk": chunks_done, "skipped": self.skipped},
                )
            return False
        self._skipping = False
        return wanted

    def _failed(self, reason: str) -> None:
        if self.on_fail is not None:
            self.on_fail(reason)

    def not_taken(self, chunk: int, why: str) -> None:
        """A due checkpoint that could not start (a rank still writes the previous one's parts): counted."""
        self.skipped += 1
        if self.on_skip is not None:
            self.on_skip()
        log.info("checkpoint due but not taken", extra={"session": self.keeper.session_id, "chunk": chunk, "why": why})

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def start(self, pending: PendingCheckpoint, on_written: OnWritten, on_fenced: OnFenced) -> None:
        """Write ``pending`` in the background; then ``await on_written(version, pending, report)``."""
        self.last_chunk, self.last_time = pending.chunk_index, time.monotonic()
        self.task = asyncio.create_task(self._write(pending, on_written, on_fenced), name="checkpoint")

    async def settled(self) -> None:
        """Wait for the checkpoint being written, if any (whatever its outcome)."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def _write(self, pending: PendingCheckpoint, on_written: OnWritten, on_fenced: OnFenced) -> None:
        await asyncio.gather(pending.encoder_state, pending.decoder_state)
        started = time.monotonic()
        meta, rank0 = await asyncio.to_thread(pending.rank0)
        try:
            done = await self._store(pending, meta, rank0)
        except FencedError as exc:
            await on_fenced(exc)
            return
        except StoreUnavailable as exc:
            self.failures += 1
            delay = self.backoff.delay(self.failures - 1)
            self.retry_at = time.monotonic() + delay
            full = isinstance(exc, StoreFull)
            log.warning(
                "checkpoint not written: Redis is full; next try after the backoff" if full
                else "checkpoint write failed; next try after the backoff",
                extra={"session": self.keeper.session_id, "error": str(exc), "retry_in_s": round(delay, 3)},
            )  # fmt: skip
            self._failed(FAIL_FULL if full else FAIL_UNAVAILABLE)
            return
        except StoreError as exc:
            self.audio_log.disable(f"checkpoint refused: {exc}")
            self._failed(FAIL_REFUSED)
            return
        sid = self.keeper.session_id
        self.failures, self.retry_at = 0, 0.0
        self.audio_log.committed(meta.audio_seq)
        self.written += 1
        self.last_written_per_rank = done.written_per_rank
        report = CommitReport(
            bytes_total=sum(r.bytes for r in done.ranks), bytes_per_rank=done.bytes_per_rank,
            written_total=sum(r.bytes_written for r in done.ranks), written_per_rank=done.written_per_rank,
            seconds=time.monotonic() - started, stall_s=pending.dit.stall_s,
            replay_s=self.policy.interval_s(self.chunk_s, done.written_per_rank), skipped=self.skipped,
        )  # fmt: skip
        if self.on_commit is not None:
            self.on_commit(report)
        if self.policy.budget_limited(done.written_per_rank):
            log.warning(
                "the write budget spaces checkpoints further apart than --checkpoint-max-interval-s",
                extra={"session": sid, "interval_s": round(report.replay_s, 2), "max_s": self.policy.max_interval_s},
            )
        log.info(
            "checkpoint written",
            extra={"session": sid, "version": done.version, "chunk": pending.chunk_index,
                   "bytes_per_rank": report.bytes_per_rank, "written_per_rank": report.written_per_rank,
                   "stall_ms": round(report.stall_s * 1000, 2), "replay_s_max": round(report.replay_s, 2),
                   "skipped": self.skipped},
        )  # fmt: skip
        await on_written(done.version, pending, report)

    async def _store(self, pending: PendingCheckpoint, meta: CheckpointMeta, rank0: dict[str, torch.Tensor]
                     ) -> CheckpointWrite:  # fmt: skip
        """Rank 0 writes its parts while the other ranks write theirs; once all have, the manifest is committed.

        The other ranks are waited for whatever happens here, so no rank still reads its buffers when the
        session's next checkpoint is captured.
        """
        store, keeper = self.keeper.store, self.keeper
        others = asyncio.ensure_future(pending.dit.collect()) if pending.dit.collect is not None else None
        try:
            version = await keeper.guarded(lambda: store.begin_checkpoint(keeper.lease))
            mine = await store.write_rank(keeper.session_id, rank0)
            ranks = [mine, *(await others if others is not None else [])]
            await keeper.guarded(lambda: store.commit_checkpoint(keeper.lease, version, meta, ranks))
        finally:
            if others is not None:
                await asyncio.gather(others, return_exceptions=True)
        return CheckpointWrite(version, ranks)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
