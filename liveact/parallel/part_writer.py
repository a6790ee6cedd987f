"""A tensor-parallel worker rank's own checkpoint writes: its parts to Redis, in the background.

Rank 0 commits a checkpoint's manifest; every other rank writes its own parts (its heads of every
ConvKV cache) through its own Redis connection (``SessionStore.write_rank``), so no shard crosses
the control link and no rank waits for another's bytes. ``PartWriter`` runs one event loop in a
thread of the worker process: ``submit`` starts a write of a capture's buffers once their copy has
landed (``Captured.wait``) and returns at once; ``poll`` answers rank 0's ``collect`` with the
write's state: pending, done (its ``RankWrite``, which goes into the manifest) or failed (why,
and whether Redis was merely unavailable). Nothing is committed here: parts nobody commits expire.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from dataclasses import dataclass

from liveact.sampling.capture import Captured
from liveact.state.errors import StoreError, StoreUnavailable
from liveact.state.schema import with_dit_prefix
from liveact.state.settings import StoreSettings
from liveact.state.store import RankWrite, SessionStore

__all__ = ["PENDING", "PartWriter", "WriteState"]

log = logging.getLogger(__name__)

PENDING, DONE, FAILED = "pending", "done", "failed"


@dataclass(frozen=True)
class WriteState:
    """What rank 0's ``collect`` learns about one rank's write."""

    state: str  # PENDING, DONE or FAILED
    write: RankWrite | None = None
    error: str = ""
    unavailable: bool = False  # Redis was away (rank 0 backs off and tries a later checkpoint)

    def to_fields(self) -> dict:
        out: dict = {"state": self.state, "error": self.error, "unavailable": self.unavailable}
        if self.write is not None:
            out["write"] = self.write.to_json()
        return out

    @classmethod
    def from_fields(cls, fields: dict) -> WriteState:
        write = fields.get("write")
        return cls(
            state=str(fields.get("state", FAILED)),
            write=None if write is None else RankWrite.from_json(write),
            error=str(fields.get("error", "")),
            unavailable=bool(fields.get("unavailable", False)),
        )


class PartWriter:
    """Background writes of one worker rank (see the module docstring); ``close`` stops it."""

    def __init__(self, settings: StoreSettings) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="part-writer", daemon=True)
        self._thread.start()
        self._store = self._run(self._open(settings)).result()
        self._jobs: dict[tuple[int, int], concurrent.futures.Future[RankWrite]] = {}

    def busy(self, handle: int) -> bool:
        """Whether a write of this session's buffers is still running (they must not be captured into again)."""
        return any(h == handle and not f.done() for (h, _), f in self._jobs.items())

    def submit(self, handle: int, snapshot: int, session_id: str, captured: Captured) -> None:
        self._jobs = {key: f for key, f in self._jobs.items() if key[0] != handle or not f.done()}
        self._jobs[(handle, snapshot)] = self._run(self._write(session_id, captured))

    def poll(self, handle: int, snapshot: int) -> WriteState:
        job = self._jobs.get((handle, snapshot))
        if job is None:
            return WriteState(FAILED, error=f"no checkpoint write {snapshot} for this session on this rank")
        if not job.done():
            return WriteState(PENDING)
        del self._jobs[(handle, snapshot)]
        try:
            return WriteState(DONE, write=job.result())
        except StoreUnavailable as exc:
            return WriteState(FAILED, error=str(exc), unavailable=True)
        except (StoreError, ValueError) as exc:
            return WriteState(FAILED, error=f"{type(exc).__name__}: {exc}")

    def drop(self, handle: int) -> None:
        """The session closed: forget its writes (one still running finishes; its parts expire unreferenced)."""
        self._jobs = {key: f for key, f in self._jobs.items() if key[0] != handle}

    def close(self) -> None:
        self._run(self._store.close()).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def _run(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    @staticmethod
    async def _open(settings: StoreSettings) -> SessionStore:
        return SessionStore(settings)  # in the loop's thread: its connections belong to this loop

    async def _write(self, session_id: str, captured: Captured) -> RankWrite:
        await asyncio.to_thread(captured.wait)
        done = await self._store.write_rank(session_id, with_dit_prefix(captured.tensors))  # a shard's names
        log.debug("checkpoint parts written", extra={"session": session_id, "bytes_written": done.bytes_written})
        return done
