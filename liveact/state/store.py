"""``SessionStore``: session records, owner leases, checkpoints and audio logs in Redis.

One store per generator process, shared by all its sessions (``redis.asyncio``, a connection pool).
Per session (keys: ``keys.py``): a ``SessionRecord``; a lease whose fencing token every write of its
owner is checked against inside a Lua script (``scripts.py``), so a superseded owner's write is
refused atomically (``FencedError``) however late it arrives; checkpoints, whose parts
(``parts.py``: each tensor's raw bytes, keyed by their sha256, so what did not change since the last
version is refreshed, not sent again) are written first and whose ``Manifest`` is committed last,
so a reader never sees a half-written one (``read_checkpoint`` falls back to an older intact
version); after a commit, parts no kept version references are deleted; the audio log, trimmed
at each commit. Every key carries ``session_ttl_s``, refreshed by checkpoints, renewals and appends.
Redis failures raise ``StoreUnavailable`` and are never retried here (the caller backs off).
``docs/architecture.md`` ("Session state in Redis") has the whole design.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
import torch
from redis.asyncio.cluster import RedisCluster

from liveact.state import scripts
from liveact.state.bulk import PartConnection
from liveact.state.errors import (
    AudioOrderError,
    BadSecret,
    CheckpointCorrupt,
    CheckpointMissing,
    FencedError,
    SessionExists,
    SessionNotFound,
    StoreError,
    StoreFull,
    StoreUnavailable,
    UnsupportedFormat,
)
from liveact.state.keys import SessionKeys
from liveact.state.parts import PIPELINE_BYTES, PartIO, PartProblem, PartSlot, cut, place, slots
from liveact.state.redis_errors import redis_errors
from liveact.state.schema import (
    FORMAT_VERSION,
    CheckpointMeta,
    Manifest,
    SchemaError,
    SessionInfo,
    SessionRecord,
    StreamRef,
)
from liveact.state.settings import StoreSettings
from liveact.state.streams import unpack

__all__ = [  # the errors too, so callers need one import
    "AudioOrderError",
    "BadSecret",
    "Checkpoint",
    "CheckpointCorrupt",
    "CheckpointMissing",
    "CheckpointWrite",
    "FencedError",
    "Lease",
    "RankWrite",
    "SessionExists",
    "SessionNotFound",
    "SessionStore",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "UnsupportedFormat",
]

log = logging.getLogger(__name__)

AUDIO_FIELD = b"d"  # the one field of an audio stream entry
AUDIO_PAGE = 1024  # stream entries fetched per XRANGE
PROBE_KEY = "health-probe"  # ping's write (a full Redis answers PING but refuses writes)
PROBE_TTL_MS = 60_000
MS = 1000
PART_TOUCHES_PER_TTL = 4  # renewals refresh a session's parts once per session_ttl_s / 4 (writes refresh theirs)


@dataclass(frozen=True)
class Lease:
    """Ownership of a session: valid while ``token`` is the session's current fencing token."""

    session_id: str
    owner: str
    token: int


@dataclass(frozen=True)
class Checkpoint:
    """One committed checkpoint as read back."""

    version: int
    meta: CheckpointMeta
    shards: list[dict[str, torch.Tensor]]  # one tensor dict per tensor-parallel rank
    token: int = 0  # fencing token of the owner that wrote it
    created: float = 0.0  # writer's wall clock (Unix seconds)
    failed: list[str] = field(default_factory=list)  # newer versions skipped, and why


@dataclass(frozen=True)
class RankWrite:
    """What one rank's ``write_rank`` stored: its stream table and what it cost."""

    table: list[StreamRef]
    bytes: int  # the rank's stream bytes (its tensors and the padding between them)
    bytes_written: int  # of which sent to Redis (the rest: parts Redis already held, shared)
    parts: int  # distinct parts the table references
    written: tuple[str, ...]  # digests of the parts this write added

    def to_json(self) -> dict[str, Any]:
        """For a tensor-parallel worker's report to rank 0 (which commits the manifest)."""
        return {"table": [t.to_json() for t in self.table], "bytes": self.bytes, "bytes_written": self.bytes_written,
                "parts": self.parts, "written": list(self.written)}  # fmt: skip

    @classmethod
    def from_json(cls, obj: Any) -> RankWrite:
        try:
            table = [StreamRef.from_json(t) for t in obj["table"]]
            written = tuple(str(d) for d in obj["written"])
            return cls(table, int(obj["bytes"]), int(obj["bytes_written"]), int(obj["parts"]), written)
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"a rank's write report is unreadable: {exc}") from exc


@dataclass(frozen=True)
class CheckpointWrite:
    """A committed checkpoint: its version and every rank's write."""

    version: int
    ranks: list[RankWrite]

    @property
    def bytes_per_rank(self) -> int:
        """The largest rank's tensor bytes."""
        return max(r.bytes for r in self.ranks)

    @property
    def written_per_rank(self) -> int:
        """The largest rank's bytes sent to Redis (what a per-rank write budget is spent on)."""
        return max(r.bytes_written for r in self.ranks)


def _record(secret: str, info: SessionInfo) -> str:
    """A session record (JSON): the resume secret's sha256, never the secret, and ``info``."""
    return _to_json(SessionRecord(_secret_digest(secret), info, time.time()).to_json(), "info")


def _secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable (str/int/float/bool/None/list/dict): {exc}") from exc


class SessionStore:
    """Async access to every session's state; safe to share between concurrent sessions."""

    def __init__(self, settings: StoreSettings, client: aioredis.Redis | RedisCluster | None = None) -> None:
        """``client`` defaults to ``settings.connect()`` (connects lazily, on the first call)."""
        problems = settings.validate()
        if problems:
            raise ValueError("; ".join(problems))
        self.settings = settings
        self.client = settings.connect() if client is None else client
        self._session_ttl_ms = round(settings.session_ttl_s * MS)
        self.link = PartConnection(settings)  # every part command: a blocking connection in a worker thread
        self.parts = PartIO(self.link, self._session_ttl_ms, settings.part_bytes)
        self._lease_ttl_ms = round(settings.lease_ttl_s * MS)
        self._touched = TouchClock(settings.session_ttl_s / PART_TOUCHES_PER_TTL)
        register = self.client.register_script
        self._acquire = register(scripts.ACQUIRE)
        self._renew = register(scripts.RENEW)
        self._release = register(scripts.RELEASE)
        self._reinstate = register(scripts.REINSTATE)
        self._truncate_audio = register(scripts.TRUNCATE_AUDIO)
        self._begin = register(scripts.BEGIN_CHECKPOINT)
        self._commit = register(scripts.COMMIT_CHECKPOINT)
        self._append = register(scripts.APPEND_AUDIO)

    async def close(self) -> None:
        await asyncio.to_thread(self.link.close)
        await self.client.aclose()

    async def ping(self) -> None:
        """Raises ``StoreUnavailable`` unless Redis answers and takes a write (``StoreFull`` at maxmemory):
        for health reporting."""
        with redis_errors("ping"):
            await self.client.ping()
            await self.client.set(f"{self.settings.key_prefix}:{PROBE_KEY}", b"1", px=PROBE_TTL_MS)

    def keys(self, session_id: str) -> SessionKeys:
        return SessionKeys(self.settings.key_prefix, session_id)

    def _script_keys(self, k: SessionKeys) -> list[str]:
        return [k.lease, *k.tagged()]  # the order scripts.py documents

    # -- session record ------------------------------------------------------------------------

    async def create_session(self, session_id: str, secret: str, info: SessionInfo) -> None:
        """Record a new session: the secret's sha256 and ``info``; ``SessionExists`` if the id is taken."""
        k = self.keys(session_id)
        if not isinstance(secret, str) or not secret:
            raise ValueError("the resume secret must be a non-empty string")
        record = _record(secret, info)
        with redis_errors("create_session", session_id):
            created = await self.client.set(k.record, record, nx=True, px=self._session_ttl_ms)
        if not created:
            raise SessionExists(f"session {session_id} already exists")

    async def check_secret(self, session_id: str, secret: str) -> SessionInfo:
        """The session's ``info`` if ``secret`` is its resume secret; ``SessionNotFound`` / ``BadSecret``
        (``CheckpointCorrupt`` if the record is unreadable)."""
        k = self.keys(session_id)
        with redis_errors("check_secret", session_id):
            raw = await self.client.get(k.record)
        if raw is None:
            raise SessionNotFound(f"session {session_id} not found (never created, deleted or expired)")
        try:
            record = SessionRecord.from_json(json.loads(raw))
        except (ValueError, SchemaError) as exc:
            raise CheckpointCorrupt(f"session {session_id}: its record is unreadable ({exc})") from exc
        given = _secret_digest(secret) if isinstance(secret, str) else ""
        if not hmac.compare_digest(given.encode(), record.secret_sha256.encode()):
            raise BadSecret(f"session {session_id}: the resume secret does not match")
        return record.info

    async def delete_session(self, session_id: str) -> None:
        """Remove the session: its small keys and every part its manifests list (orphans expire)."""
        k = self.keys(session_id)
        self._touched.forget(session_id)
        with redis_errors("delete_session", session_id):
            history = await self.client.lrange(k.history, 0, -1)
            await self.client.delete(*self._script_keys(k))
            await self.parts.delete(self._manifest_parts(session_id, history))

    # -- lease ---------------------------------------------------------------------------------

    async def acquire(self, session_id: str, owner: str) -> Lease:
        """Become the session's owner with a fresh fencing token (takes over from any previous owner)."""
        k = self.keys(session_id)
        if not owner:
            raise ValueError("owner must be a non-empty string (e.g. the pod name)")
        with redis_errors("acquire", session_id):
            token, previous = await self._acquire(
                keys=self._script_keys(k), args=[owner, self._lease_ttl_ms, self._session_ttl_ms]
            )
        previous = previous.decode() if isinstance(previous, bytes) else previous
        if previous and previous != owner:
            log.info("session %s: %s took over from %s (token %d)", session_id, owner, previous, token)
        return Lease(session_id, owner, int(token))

    async def renew(self, lease: Lease) -> None:
        """Extend the lease (and the session's TTLs); ``FencedError`` if another owner took over.

        A lease that merely expired (nobody acquired since) is restored. The parts of the kept versions
        (hundreds of keys per rank at full size) get their TTL back once per
        ``session_ttl_s / PART_TOUCHES_PER_TTL`` only: between two such touches every part is either
        touched or written (refreshed) by a checkpoint, so none has less than three quarters of its TTL
        behind it.
        """
        sid = lease.session_id
        k = self.keys(sid)
        with redis_errors("renew", sid):
            history = await self._renew(
                keys=self._script_keys(k),
                args=[lease.token, lease.owner, self._lease_ttl_ms, self._session_ttl_ms],
            )
            if self._touched.due(sid):
                started = time.monotonic()
                await self.parts.touch(self._manifest_parts(sid, history))
                self._touched.mark(sid, started)

    async def reinstate(self, lease: Lease, secret: str, info: SessionInfo) -> None:
        """Put back a session Redis lost (restart without persistence, or expiry): record, fence, lease.

        ``FencedError`` if a newer owner exists. The owner calls it when a write was fenced with no
        current token at all; checkpoint versions then start again at 1.
        """
        k = self.keys(lease.session_id)
        record = _record(secret, info)
        with redis_errors("reinstate", lease.session_id):
            await self._reinstate(
                keys=self._script_keys(k),
                args=[lease.token, lease.owner, self._lease_ttl_ms, self._session_ttl_ms, record],
            )
        log.warning("session %s: reinstated in Redis with token %d", lease.session_id, lease.token)

    async def release(self, lease: Lease) -> bool:
        """Give the lease up; False (and nothing deleted) if it is no longer this token's."""
        k = self.keys(lease.session_id)
        self._touched.forget(lease.session_id)
        with redis_errors("release", lease.session_id):
            return bool(await self._release(keys=self._script_keys(k), args=[lease.token]))

    # -- checkpoints ---------------------------------------------------------------------------

    async def write_checkpoint(
        self, lease: Lease, meta: CheckpointMeta, shards: Sequence[Mapping[str, torch.Tensor]]
    ) -> CheckpointWrite:
        """Store one checkpoint (``shards[r]`` = rank r's tensors) and commit it.

        ``FencedError`` if the lease was taken over (before any part is written, or at the commit: then
        the parts this write added are removed again); ``StoreUnavailable`` if Redis failed (parts
        already written expire with the session TTL).
        """
        if not shards:
            raise ValueError("a checkpoint needs at least one shard (one tensor dict per rank)")
        if len(shards) != meta.tp:
            raise ValueError(f"meta.tp is {meta.tp} but {len(shards)} shards were given")
        version = await self.begin_checkpoint(lease)
        ranks = [await self.write_rank(lease.session_id, shard) for shard in shards]
        await self.commit_checkpoint(lease, version, meta, ranks)
        return CheckpointWrite(version, ranks)

    async def begin_checkpoint(self, lease: Lease) -> int:
        """The next checkpoint's version; ``FencedError`` (nothing written) unless ``lease`` still holds."""
        k = self.keys(lease.session_id)
        with redis_errors("write_checkpoint", lease.session_id):
            return int(await self._begin(keys=self._script_keys(k), args=[lease.token, self._session_ttl_ms]))

    async def write_rank(self, session_id: str, tensors: Mapping[str, torch.Tensor]) -> RankWrite:
        """Write one rank's parts that Redis does not hold yet (the others get a fresh TTL).

        Needs no lease: nothing references the parts until ``commit_checkpoint``, and they expire with
        the session TTL. Every tensor-parallel rank may call it for its own tensors, in its own process.
        """
        k = self.keys(session_id)
        cuts = await asyncio.to_thread(cut, tensors, self.settings.cut_bytes)
        views = {k.part(p.sha256): v for c in cuts for p, v in zip(c.ref.parts, c.views, strict=True)}
        keys = list(views)
        with redis_errors("write_checkpoint", session_id):
            held = await self.parts.refresh(keys)
            new = [key for key, there in zip(keys, held, strict=True) if not there]
            await self.parts.write([(key, views[key]) for key in new])
        table = [c.ref for c in cuts]
        digests = {k.part(p.sha256): p.sha256 for t in table for p in t.parts}
        return RankWrite(
            table=table,
            bytes=sum(t.nbytes for t in table),
            bytes_written=sum(len(views[key]) for key in new),
            parts=len(keys),
            written=tuple(digests[key] for key in new),
        )

    async def commit_checkpoint(
        self, lease: Lease, version: int, meta: CheckpointMeta, ranks: Sequence[RankWrite]
    ) -> None:
        """Make ``version`` (every rank's parts written) the newest checkpoint, then collect what no kept
        version references. ``FencedError`` if the lease was taken over (the parts it added are removed)."""
        sid = lease.session_id
        k = self.keys(sid)
        if len(ranks) != meta.tp:
            raise ValueError(f"meta.tp is {meta.tp} but {len(ranks)} ranks were written")
        manifest = Manifest(version, sid, lease.token, meta, [r.table for r in ranks], time.time())
        minid = f"{meta.audio_seq + 1}-0"  # the log keeps the AudioChunks from meta.audio_seq on
        try:
            with redis_errors("write_checkpoint", sid):
                dropped = await self._commit(
                    keys=self._script_keys(k),
                    args=[
                        lease.token,
                        _to_json(manifest.to_json(), "manifest"),
                        self.settings.keep_versions,
                        self._session_ttl_ms,
                        minid,
                        version,
                    ],
                )
        except StoreUnavailable:
            raise  # the commit may or may not have landed: leave the parts to their TTL
        except StoreError:
            await self._discard(sid, {d for r in ranks for d in r.written})  # refused: unreferenced
            raise
        try:
            with redis_errors("write_checkpoint gc", sid):
                history = await self.client.lrange(k.history, 0, -1)
                kept = self._digests(sid, history)
                await self.parts.delete(sorted(k.part(d) for d in self._digests(sid, dropped) - kept))
                await self.parts.touch(sorted(k.part(d) for d in kept - manifest.referenced()))
        except StoreError as exc:
            log.warning(
                "session %s: checkpoint %d committed, old parts not collected (they expire): %s", sid, version, exc
            )
        log.debug("session %s: checkpoint %d committed (%d streams)", sid, version, sum(len(r.table) for r in ranks))

    async def read_checkpoint(self, session_id: str) -> Checkpoint:
        """The newest intact checkpoint; ``CheckpointMissing`` if none was committed, ``CheckpointCorrupt``
        if none is intact, ``UnsupportedFormat`` if one in the way was written in another format."""
        k = self.keys(session_id)
        with redis_errors("read_checkpoint", session_id):
            history = await self.client.lrange(k.history, 0, -1)
        if not history:
            raise CheckpointMissing(f"session {session_id} has no checkpoint")
        failed: list[str] = []
        for n, raw in enumerate(history):
            try:
                obj = json.loads(raw)
                version, fmt = Manifest.header(obj)
            except (ValueError, SchemaError) as exc:
                failed.append(f"history entry {n}: unreadable manifest ({exc})")
                continue
            if fmt != FORMAT_VERSION:
                raise UnsupportedFormat(
                    f"session {session_id} checkpoint {version} has format {fmt!r}; this build reads "
                    f"format {FORMAT_VERSION} only (resume with the version that wrote it)"
                )
            try:
                manifest = Manifest.from_json(obj)
            except SchemaError as exc:
                failed.append(f"version {version}: {exc}")
                continue
            problem, shards = await self._load(session_id, manifest)
            if problem:
                failed.append(f"version {version}: {problem}")
                continue
            if failed:
                log.warning("session %s: using checkpoint %d; newer failed: %s", session_id, version, "; ".join(failed))
            return Checkpoint(
                version=version,
                meta=manifest.meta,
                shards=shards,
                token=manifest.token,
                created=manifest.created,
                failed=failed,
            )
        raise CheckpointCorrupt(f"session {session_id}: no intact checkpoint: {'; '.join(failed)}")

    async def _load(self, session_id: str, manifest: Manifest) -> tuple[str, list[dict[str, torch.Tensor]]]:
        """(problem, shards): ``problem`` is '' when every part exists, matches and decodes."""
        if manifest.session != session_id:
            return f"manifest names session {manifest.session!r}", []
        if len(manifest.shards) != manifest.meta.tp:
            return f"manifest lists {len(manifest.shards)} shards for tp {manifest.meta.tp}", []
        k = self.keys(session_id)
        shards = []
        for rank, table in enumerate(manifest.shards):
            buffers = [torch.empty(st.nbytes, dtype=torch.uint8) for st in table]  # what the rank's tensors view
            for group in _rounds(slots(table), PIPELINE_BYTES):  # bounded bytes in flight
                with redis_errors("read_checkpoint", session_id):
                    blobs = await self.parts.read([k.part(slot.part.sha256) for slot in group])
                try:
                    await asyncio.to_thread(_place_all, table, buffers, group, blobs)
                except PartProblem as exc:
                    return f"rank {rank} {exc}", []
            shards.append({n: t for st, buf in zip(table, buffers, strict=True) for n, t in unpack(st, buf).items()})
        return "", shards

    # -- audio log -----------------------------------------------------------------------------

    async def append_audio(self, lease: Lease, seq: int, data: bytes) -> None:
        """Log audio chunk ``seq`` (0, 1, 2, ...); ``AudioOrderError`` unless seq > the last logged one."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"audio seq must be an int >= 0, got {seq!r}")
        k = self.keys(lease.session_id)
        try:
            with redis_errors("append_audio", lease.session_id):
                await self._append(
                    keys=self._script_keys(k), args=[lease.token, f"{seq + 1}-0", bytes(data), self._session_ttl_ms]
                )
        except AudioOrderError as exc:
            raise AudioOrderError(
                f"append_audio {lease.session_id}: seq {seq} is not after the last logged seq "
                f"(a duplicate or out of order; see last_audio_seq)"
            ) from exc

    async def read_audio(self, session_id: str, from_seq: int = 0) -> list[tuple[int, bytes]]:
        """Logged chunks with seq >= ``from_seq``, in order, as (seq, data)."""
        if from_seq < 0:
            raise ValueError(f"from_seq must be >= 0, got {from_seq}")
        k = self.keys(session_id)
        out: list[tuple[int, bytes]] = []
        start = f"{from_seq + 1}-0"
        with redis_errors("read_audio", session_id):
            while True:
                entries = await self.client.xrange(k.audio, min=start, max="+", count=AUDIO_PAGE) or []
                for entry_id, fields in entries:
                    assert entry_id is not None and fields is not None  # redis-py's types allow None; XRANGE never
                    out.append((_entry_seq(entry_id), cast(bytes, fields[AUDIO_FIELD])))  # raw replies: bytes
                if len(entries) < AUDIO_PAGE:
                    return out
                start = f"{out[-1][0] + 2}-0"  # the id after the last seq read

    async def truncate_audio(self, lease: Lease, from_seq: int) -> int:
        """Drop logged chunks with seq >= ``from_seq`` so they can be logged again; returns how many."""
        k = self.keys(lease.session_id)
        with redis_errors("truncate_audio", lease.session_id):
            return int(await self._truncate_audio(keys=self._script_keys(k), args=[lease.token, f"{from_seq + 1}-0"]))

    async def last_audio_seq(self, session_id: str) -> int | None:
        """The highest seq ever logged (even if a commit trimmed it since); None if none was."""
        k = self.keys(session_id)
        with redis_errors("last_audio_seq", session_id):
            if not await self.client.exists(k.audio):
                return None
            info = await self.client.xinfo_stream(k.audio)
        last = _entry_seq(info["last-generated-id"])
        return None if last < 0 else last

    # -- parts ---------------------------------------------------------------------------------

    async def _discard(self, session_id: str, digests: set[str]) -> None:
        """Remove parts a refused write added, except those a committed version references (shared)."""
        k = self.keys(session_id)
        try:
            with redis_errors("write_checkpoint cleanup", session_id):
                kept = self._digests(session_id, await self.client.lrange(k.history, 0, -1))
                await self.parts.delete(sorted(k.part(d) for d in digests - kept))
        except StoreError as exc:
            log.warning("session %s: refused checkpoint's parts not deleted (they expire): %s", session_id, exc)

    def _digests(self, session_id: str, manifests: Sequence[bytes | str]) -> set[str]:
        """Part digests referenced by ``manifests`` (unreadable ones are skipped: their parts expire)."""
        out: set[str] = set()
        for raw in manifests:
            try:
                out |= Manifest.digests(json.loads(raw))
            except (ValueError, SchemaError):
                log.warning("session %s: skipping an unreadable manifest", session_id)
        return out

    def _manifest_parts(self, session_id: str, manifests: Sequence[bytes | str]) -> list[str]:
        """Part keys referenced by ``manifests``, each once."""
        k = self.keys(session_id)
        return sorted(k.part(d) for d in self._digests(session_id, manifests))


class TouchClock:
    """When this store last refreshed each session's parts (monotonic seconds); a session not marked for two
    periods is forgotten (its lease is gone), so the clock holds live sessions only."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._at: dict[str, float] = {}

    def due(self, session_id: str) -> bool:
        at = self._at.get(session_id)
        return at is None or time.monotonic() - at >= self.period_s

    def mark(self, session_id: str, at: float) -> None:
        """``session_id``'s parts were all refreshed after ``at`` (the time the refresh started)."""
        horizon = time.monotonic() - 2 * self.period_s
        self._at = {s: t for s, t in self._at.items() if t >= horizon}
        self._at[session_id] = at

    def forget(self, session_id: str) -> None:
        self._at.pop(session_id, None)


def _rounds(parts: list[PartSlot], budget: int) -> list[list[PartSlot]]:
    """Parts grouped so that each group's bytes stay within ``budget`` (a larger part alone)."""
    groups: list[list[PartSlot]] = [[]]
    size = 0
    for slot in parts:
        if groups[-1] and size + slot.part.bytes > budget:
            groups.append([])
            size = 0
        groups[-1].append(slot)
        size += slot.part.bytes
    return groups


def _place_all(table: list[StreamRef], buffers: list[torch.Tensor], group: list[PartSlot],
               blobs: list[bytes | None]) -> None:  # fmt: skip
    for slot, blob in zip(group, blobs, strict=True):
        place(table, buffers, slot, blob)


def _entry_seq(entry_id: bytes | str) -> int:
    """Audio seq of a stream entry id ``<seq + 1>-0``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0]) - 1
