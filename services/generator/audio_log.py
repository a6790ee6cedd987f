"""A session's audio log: every AudioChunk written to Redis before it is used, for an exact resume.

A checkpoint records the first AudioChunk its encoder state has not wholly seen; a resume replays
the log from there. So a checkpoint is only worth writing while the log holds every chunk from its
position on: ``exact_from(seq)``. Redis trouble never stops the session: a chunk that cannot be
logged opens a gap (the chunks arriving while backing off are not logged either), and checkpoints
wait until the encoder is past it. The log is bounded: past ``max_bytes`` without a commit (Redis
takes appends but refuses checkpoints) it is dropped back to the newest checkpoint, and a resume
from that checkpoint asks the client to resend its audio from there.
"""

from __future__ import annotations

import logging
import time

from liveact.state.backoff import Backoff
from liveact.state.store import FencedError, StoreError, StoreUnavailable
from services.generator.lease import LeaseKeeper

__all__ = ["DEFAULT_MAX_LOG_BYTES", "AudioLog"]

log = logging.getLogger(__name__)

DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024  # audio logged since the last commit before the log is dropped


class AudioLog:
    def __init__(
        self, keeper: LeaseKeeper, backoff: Backoff, log_from: int = 0, max_bytes: int = DEFAULT_MAX_LOG_BYTES
    ) -> None:
        self.keeper, self.backoff, self.max_bytes = keeper, backoff, max_bytes
        self.log_from: int | None = log_from  # every AudioChunk from this seq on is logged (None: a gap is open)
        self.committed_seq = log_from  # the newest committed checkpoint's audio_seq
        self.bytes = 0  # logged since the newest commit (approximately: reset at each commit)
        self.retry_at = 0.0  # monotonic time before which no append is tried (after a failure)
        self.failures = 0  # consecutive failed appends
        self.disabled: str | None = None  # why neither audio nor checkpoints are written for this session any more

    async def append(self, seq: int, data: bytes) -> None:
        """Log AudioChunk ``seq``, write-ahead of its use; ``FencedError`` if another owner took over."""
        sid = self.keeper.session_id
        if not self.is_open():
            self.missed(seq)
            return
        store = self.keeper.store
        try:
            await self.keeper.guarded(lambda: store.append_audio(self.keeper.lease, seq, data))
        except StoreUnavailable as exc:
            self.missed(seq, str(exc))
            return
        except FencedError:
            raise
        except StoreError as exc:
            self.disable(f"the audio log refused AudioChunk {seq}: {exc}")
            return
        self.logged(seq)
        self.bytes += len(data)
        if self.bytes > self.max_bytes:
            log.warning(
                "audio log over its limit without a checkpoint: dropped",
                extra={"session": sid, "bytes": self.bytes, "from_seq": self.committed_seq},
            )
            self.bytes = 0
            self.missed(seq + 1)  # the next logged chunk starts a new contiguous log
            try:
                await store.truncate_audio(self.keeper.lease, self.committed_seq)
            except StoreError as exc:
                log.warning("audio log not dropped", extra={"session": sid, "error": str(exc)})

    def is_open(self) -> bool:
        """Whether to try logging audio now (not while backing off after a failure)."""
        return not self.disabled and time.monotonic() >= self.retry_at

    def logged(self, seq: int) -> None:
        self.failures = 0
        if self.log_from is None:
            self.log_from = seq
            log.info("audio log continuous again", extra={"session": self.keeper.session_id, "from_seq": seq})

    def missed(self, seq: int, error: str | None = None) -> None:
        """AudioChunk ``seq`` is missing from the log: checkpoints wait for audio past the gap."""
        if self.log_from is not None:
            log.warning("audio log gap", extra={"session": self.keeper.session_id, "seq": seq, "error": error})
        self.log_from = None
        if error is not None:
            self.failures += 1
            self.retry_at = time.monotonic() + self.backoff.delay(self.failures - 1)

    def exact_from(self, audio_seq: int) -> bool:
        """Whether a checkpoint at ``audio_seq`` can be replayed exactly from the log."""
        return self.log_from is not None and audio_seq >= self.log_from

    def disable(self, reason: str) -> None:
        """Redis refused a write (not a hiccup): this session is no longer logged or checkpointed."""
        if not self.disabled:
            log.warning("checkpoints off for this session", extra={"session": self.keeper.session_id, "why": reason})
        self.disabled = reason

    def committed(self, audio_seq: int) -> None:
        """A checkpoint at ``audio_seq`` was committed: the store trimmed the log before it."""
        self.committed_seq, self.bytes = audio_seq, 0
