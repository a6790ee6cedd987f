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
  state has not seen. The Redis audio log holds every AudioChunk from there on, so a resume
  replays it through the restored encoder and regenerates chunk k+1.. exactly.

Once the audio has ended and the encoder's last rows are all in the generator's ring (a client
that sends a file faster than real time gets there early), a checkpoint needs no encoder state:
it stores the remaining rows and ``audio_total``, and a resume runs without an encoder stream. If
the audio has ended but rows are still on their way, a due checkpoint waits for them.

Nothing here blocks generation: the DiT copy is the only synchronous part; the two markers are
answered while the pipeline goes on, and ``CheckpointWriter`` serialises and writes (with retries
while Redis is away) in a background task. At most one checkpoint per session is in flight; a
checkpoint due while one is still being written is skipped.

Shards, one per tensor-parallel rank (``--tp N``; the store writes each rank's shard as its own
parts): every shard holds its rank's ``dit.*`` (``liveact.state.sampler_state``: the rank's heads
of every ConvKV cache, plus the replicated RNG state and conditioning); shard 0 also holds
``audio.rows`` (float32 (n, L, C), absolute rows ``rows_first ..``) and ``encoder.state`` /
``decoder.state`` (uint8: the streams' own safetensors bytes). A checkpoint written at one degree
resumes at another through ``liveact.parallel.reshard``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from liveact.state.backoff import Backoff
from liveact.state.store import FencedError, Lease, SessionStore, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1  # of the meta and tensor names below; a resume refuses other formats
DIT_PREFIX = "dit."
AUDIO_ROWS, ENCODER_STATE, DECODER_STATE = "audio.rows", "encoder.state", "decoder.state"
LEASE_RENEWALS_PER_TTL = 3  # the lease is renewed this many times per lease TTL
DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024  # audio logged since the last commit before the log is dropped


@dataclass(frozen=True)
class CheckpointPolicy:
    every_chunks: int = 4  # checkpoint after every N-th chunk (0 = not by count)
    every_s: float = 0.0  # and/or when this many seconds passed since the last one (0 = not by time)

    def due(self, chunks_since: int, seconds_since: float) -> bool:
        by_count = self.every_chunks > 0 and chunks_since >= self.every_chunks
        by_time = self.every_s > 0 and seconds_since >= self.every_s
        return by_count or by_time


@dataclass(frozen=True)
class AudioPosition:
    """A point in the client's audio: AudioChunk ``seq`` at byte ``offset``, ``frames`` sample frames in."""

    seq: int = 0
    offset: int = 0
    frames: int = 0


@dataclass
class PendingCheckpoint:
    """A checkpoint being collected: the DiT part is fixed, the stream parts arrive."""

    id: int
    chunk_index: int  # the next chunk to generate
    next_frame: int  # its first video frame (client numbering)
    dit: list[dict[str, torch.Tensor]]  # every rank's sampler state, rank order
    rows_first: int
    rows: list[torch.Tensor]  # (n, L, C) blocks, in order from rows_first
    collecting_rows: bool = True
    audio: AudioPosition | None = None  # set when the encoder marker is sent
    audio_total: int | None = None  # the audio had ended: all rows are held, no encoder state needed
    frame_offset: int = 0  # client frame index - model frame index (changes at a LIVE resume)
    row_offset: int = 0  # model row index of the encoder stream's row 0
    encoder_state: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    decoder_state: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def shards(self) -> tuple[dict, list[dict[str, torch.Tensor]]]:
        """(meta, one tensor dict per rank) once both stream states have arrived."""
        rows = torch.cat(self.rows) if self.rows else torch.zeros(0)
        shards = [{DIT_PREFIX + k: v for k, v in rank.items()} for rank in self.dit]
        tensors = shards[0]
        tensors[AUDIO_ROWS] = rows.contiguous()
        tensors[ENCODER_STATE] = _bytes_tensor(self.encoder_state.result())
        tensors[DECODER_STATE] = _bytes_tensor(self.decoder_state.result())
        assert self.audio is not None
        meta = {
            "format": CHECKPOINT_FORMAT,
            "chunk_index": self.chunk_index,
            "next_frame": self.next_frame,
            "rows_first": self.rows_first,
            "rows_end": self.rows_first + int(rows.shape[0]) if rows.dim() == 3 else self.rows_first,
            "audio_seq": self.audio.seq,
            "audio_offset": self.audio.offset,
            "pcm_frames": self.audio.frames,
            "audio_total": self.audio_total,
            "frame_offset": self.frame_offset,
            "row_offset": self.row_offset,
            "tp": len(shards),
        }
        return meta, shards


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().numpy().tobytes()


class CheckpointWriter:
    """One session's checkpoints: when they are due, and the background write.

    A write that finds Redis away is not retried with stale state: the next checkpoint is due once
    the backoff delay has passed and carries the session's state of that moment, so checkpointing
    catches up as soon as Redis is back. A fenced write (another generator owns the session now)
    ends the session with ABORTED through ``on_fenced``.
    """

    def __init__(
        self,
        store: SessionStore,
        lease: Lease,
        policy: CheckpointPolicy,
        backoff: Backoff,
        secret: str,
        info: dict,
        log_from: int = 0,
        max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        self.store, self.lease, self.policy, self.backoff = store, lease, policy, backoff
        self.secret, self.info = secret, info  # to put the session back if Redis lost it
        # the audio log holds every AudioChunk from this seq on (None: a gap is open after a failure)
        self.log_from: int | None = log_from
        self.log_retry_at = 0.0
        self.log_failures = 0
        self.committed_audio_seq = log_from  # the newest committed checkpoint's audio_seq
        self.log_bytes = 0  # logged since the newest commit (approximately: reset at each commit)
        self.max_log_bytes = max_log_bytes
        self.on_commit = on_commit  # (tensor bytes, seconds from snapshot ready to commit): metrics
        self.task: asyncio.Task | None = None
        self.last_chunk = 0
        self.last_time = time.monotonic()
        self.retry_at = 0.0  # monotonic time before which no checkpoint is started (after a failure)
        self.failures = 0  # consecutive failed writes
        self.written = 0  # checkpoints committed by this writer
        self.disabled: str | None = None  # why this session cannot be checkpointed any more
        self._ids = 0

    def due(self, chunks_done: int) -> bool:
        if self.disabled or (self.task is not None and not self.task.done()):
            return False
        now = time.monotonic()
        return now >= self.retry_at and self.policy.due(chunks_done - self.last_chunk, now - self.last_time)

    async def guarded(self, op):
        """``await op()``; if fenced, put the session back when Redis merely lost it, then retry once.

        ``FencedError`` stays only when another owner holds a newer token.
        """
        try:
            return await op()
        except FencedError:
            await self.store.reinstate(self.lease, self.secret, self.info)
            return await op()

    async def keep_lease(self, on_fenced) -> None:
        """Renew the lease every third of its TTL while the session runs (Redis away: try again later)."""
        period = self.store.settings.lease_ttl_s / LEASE_RENEWALS_PER_TTL
        while True:
            await asyncio.sleep(period)
            try:
                await self.guarded(lambda: self.store.renew(self.lease))
            except FencedError as exc:
                await on_fenced(exc)
                return
            except StoreError as exc:
                log.debug("lease renewal failed", extra={"session": self.lease.session_id, "error": str(exc)})

    async def log_audio(self, seq: int, data: bytes) -> None:
        """Log AudioChunk ``seq`` (write-ahead of its use); ``FencedError`` if another owner took over.

        Redis trouble never stops the session: the chunk is then not logged (nor are those that
        arrive while backing off), and checkpoints wait until the encoder is past the gap. The log
        is bounded: past ``max_log_bytes`` without a commit (Redis takes appends but refuses
        checkpoints) it is dropped back to the newest checkpoint, and a resume from that checkpoint
        asks the client to resend its audio from there.
        """
        if not self.log_open():
            self.audio_not_logged(seq)
            return
        try:
            await self.guarded(lambda: self.store.append_audio(self.lease, seq, data))
        except StoreUnavailable as exc:
            self.audio_not_logged(seq, str(exc))
            return
        except FencedError:
            raise
        except StoreError as exc:
            self.disable(f"the audio log refused AudioChunk {seq}: {exc}")
            return
        self.audio_logged(seq)
        self.log_bytes += len(data)
        if self.log_bytes > self.max_log_bytes:
            log.warning(
                "audio log over its limit without a checkpoint: dropped",
                extra={"session": self.lease.session_id, "bytes": self.log_bytes, "from_seq": self.committed_audio_seq},
            )
            self.log_bytes = 0
            self.audio_not_logged(seq + 1)  # the next logged chunk starts a new contiguous log
            try:
                await self.store.truncate_audio(self.lease, self.committed_audio_seq)
            except StoreError as exc:
                log.warning("audio log not dropped", extra={"session": self.lease.session_id, "error": str(exc)})

    def log_open(self) -> bool:
        """Whether to try logging audio now (not while backing off after a failure)."""
        return not self.disabled and time.monotonic() >= self.log_retry_at

    def audio_logged(self, seq: int) -> None:
        self.log_failures = 0
        if self.log_from is None:
            self.log_from = seq
            log.info("audio log continuous again", extra={"session": self.lease.session_id, "from_seq": seq})

    def audio_not_logged(self, seq: int, error: str | None = None) -> None:
        """AudioChunk ``seq`` is missing from the log: checkpoints wait for audio past the gap."""
        if self.log_from is not None:
            log.warning("audio log gap", extra={"session": self.lease.session_id, "seq": seq, "error": error})
        self.log_from = None
        if error is not None:
            self.log_failures += 1
            self.log_retry_at = time.monotonic() + self.backoff.delay(self.log_failures - 1)

    def exact_from(self, audio_seq: int) -> bool:
        """Whether a checkpoint at ``audio_seq`` can be replayed exactly from the log."""
        return self.log_from is not None and audio_seq >= self.log_from

    def disable(self, reason: str) -> None:
        if not self.disabled:
            log.warning("checkpoints off for this session", extra={"session": self.lease.session_id, "why": reason})
        self.disabled = reason

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def start(self, pending: PendingCheckpoint, on_written, on_fenced) -> None:
        """Write ``pending`` in the background; then ``await on_written(version, pending)``."""
        self.last_chunk, self.last_time = pending.chunk_index, time.monotonic()
        self.task = asyncio.create_task(self._write(pending, on_written, on_fenced), name="checkpoint")

    async def _write(self, pending: PendingCheckpoint, on_written, on_fenced) -> None:
        await asyncio.gather(pending.encoder_state, pending.decoder_state)
        started = time.monotonic()
        meta, shards = await asyncio.to_thread(pending.shards)
        try:
            version = await self.guarded(lambda: self.store.write_checkpoint(self.lease, meta, shards))
        except FencedError as exc:
            await on_fenced(exc)
            return
        except StoreUnavailable as exc:
            self.failures += 1
            delay = self.backoff.delay(self.failures - 1)
            self.retry_at = time.monotonic() + delay
            log.warning(
                "checkpoint write failed; next try after the backoff",
                extra={"session": self.lease.session_id, "error": str(exc), "retry_in_s": round(delay, 3)},
            )
            return
        except StoreError as exc:
            self.disable(f"checkpoint refused: {exc}")
            return
        self.failures, self.retry_at = 0, 0.0
        self.committed_audio_seq, self.log_bytes = int(meta["audio_seq"]), 0
        self.written += 1
        if self.on_commit is not None:
            self.on_commit(sum(t.nbytes for shard in shards for t in shard.values()), time.monotonic() - started)
        where = {"session": self.lease.session_id, "version": version, "chunk": pending.chunk_index}
        log.info("checkpoint written", extra=where)
        await on_written(version, pending)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
