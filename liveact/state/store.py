"""``SessionStore``: session records, owner leases, checkpoints and audio logs in Redis.

One store per generator process, shared by all its sessions (``redis.asyncio``, a connection pool).
What it keeps per session (key layout and Redis Cluster design in ``liveact.state.keys``):

* **Record** - a ``SessionRecord``: the sha256 of the resume secret (never the secret) and the
  caller's ``SessionInfo``.
  ``check_secret`` compares digests in constant time.
* **Lease with fencing token** - ``acquire`` atomically INCRs the session's fence counter and makes
  the caller the owner with that token: acquiring always takes over (a resuming generator supersedes
  the old owner; the client authorised the resume with its secret). Every write of an owner is
  checked against the token inside a Lua script, so a superseded owner's write is refused
  atomically (``FencedError``) however late it arrives.
* **Checkpoints** - ``write_checkpoint`` packs each tensor-parallel rank's tensors with safetensors,
  splits the blob into parts of at most ``part_bytes``, writes the parts (with the session TTL),
  then commits a ``Manifest`` (the ``CheckpointMeta``, each part's key, sha256 and size; the types
  and the format version are ``liveact.state.schema``'s) with one script that checks the
  token, pushes the manifest onto the history (``keep_versions`` kept), trims the audio log and
  refreshes TTLs. The history moves only after every part exists, so a reader never sees a
  half-written checkpoint; parts of manifests that fall out of the history are deleted after.
  ``read_checkpoint`` returns the newest version whose parts all exist and match their digests,
  falling back to older ones (with a warning) when the newest is damaged.
* **Audio log** - a stream of the PCM chunks received since the last checkpoint (entry id
  ``<seq + 1>-0``), for an exact replay on resume; a commit trims the entries before its meta's
  ``audio_seq``.

Every key of a session carries ``session_ttl_s``, refreshed by checkpoints, renewals and audio
appends, so an abandoned session disappears by itself. Redis failures (refused, timed out, bad
credentials) raise ``StoreUnavailable`` and nothing is retried here: the caller retries with
``liveact.state.backoff``. Tensors passed to ``write_checkpoint`` are read while it runs (packing
happens in a worker thread): pass a snapshot if the session keeps stepping meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
import torch
from redis.asyncio.cluster import RedisCluster

from liveact.state import codec, scripts
from liveact.state.errors import (
    AudioOrderError,
    BadSecret,
    CheckpointCorrupt,
    CheckpointMissing,
    FencedError,
    SessionExists,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    UnsupportedFormat,
)
from liveact.state.keys import SessionKeys
from liveact.state.schema import (
    FORMAT_VERSION,
    CheckpointMeta,
    Manifest,
    PartRef,
    SchemaError,
    SessionInfo,
    SessionRecord,
)
from liveact.state.settings import StoreSettings

__all__ = [  # the errors too, so callers need one import
    "AudioOrderError",
    "BadSecret",
    "Checkpoint",
    "CheckpointCorrupt",
    "CheckpointMissing",
    "FencedError",
    "Lease",
    "SessionExists",
    "SessionNotFound",
    "SessionStore",
    "StoreError",
    "StoreUnavailable",
    "UnsupportedFormat",
]

log = logging.getLogger(__name__)

AUDIO_FIELD = b"d"  # the one field of an audio stream entry
AUDIO_PAGE = 1024  # stream entries fetched per XRANGE
PIPELINE_BYTES = 256 * 1024 * 1024  # bytes of parts in flight per pipeline round trip (bounds memory)
MS = 1000

_UNAVAILABLE = (
    rexc.ConnectionError,  # refused, reset, AuthenticationError, BusyLoadingError
    rexc.TimeoutError,
    rexc.ReadOnlyError,  # a replica after failover
    rexc.ClusterDownError,
    rexc.RedisClusterException,  # no node of the cluster answered (RedisClusterUnreachableError), no slots
    rexc.TryAgainError,
    rexc.MasterDownError,
    TimeoutError,
    OSError,
)
_REFUSALS = {
    scripts.FENCED: FencedError,
    scripts.NOSESSION: SessionNotFound,
    scripts.AUDIOSEQ: AudioOrderError,
    scripts.STALE: StoreError,
}


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


@contextlib.contextmanager
def _redis_errors(what: str, session_id: str = "") -> Iterator[None]:
    """Translate redis-py exceptions raised inside the block into ``StoreError`` subclasses."""
    what = f"{what} {session_id}" if session_id else what
    try:
        yield
    except StoreError:
        raise
    except rexc.AuthenticationError as exc:
        raise StoreUnavailable(f"{what}: Redis refused the credentials ({exc}): check password") from exc
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"{what}: Redis unavailable ({type(exc).__name__}: {exc})") from exc
    except rexc.ResponseError as exc:
        message = str(exc)
        code = message.split(" ", 1)[0]
        if code in _REFUSALS:
            raise _REFUSALS[code](f"{what}: {message}") from exc
        raise StoreError(f"{what}: Redis error: {message}") from exc
    except rexc.RedisError as exc:
        raise StoreError(f"{what}: Redis error ({type(exc).__name__}: {exc})") from exc


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


def _encode_shards(shards: Sequence[Mapping[str, torch.Tensor]], part_bytes: int) -> list[list[tuple[memoryview, str]]]:
    """Per rank, the packed blob's parts with their sha256 (zero-copy views keep the blobs alive)."""
    return [
        [(view, codec.digest(view)) for view in codec.part_views(codec.pack(shard), part_bytes)] for shard in shards
    ]


def _decode_shard(rank: int, parts: list[PartRef], blobs: list[bytes]) -> tuple[str, dict[str, torch.Tensor]]:
    """(problem, tensors) of one rank's fetched parts; ``problem`` is '' when all match and decode."""
    for i, (part, blob) in enumerate(zip(parts, blobs, strict=True)):
        if len(blob) != part.bytes or codec.digest(blob) != part.sha256:
            return f"rank {rank} part {i} does not match its sha256/size ({len(blob)} bytes)", {}
    try:
        return "", codec.unpack(codec.join(blobs))
    except codec.CodecError as exc:
        return f"rank {rank}: {exc}", {}


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
        self._lease_ttl_ms = round(settings.lease_ttl_s * MS)
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
        await self.client.aclose()

    async def ping(self) -> None:
        """Raises ``StoreUnavailable`` unless Redis answers (for health reporting)."""
        with _redis_errors("ping"):
            await self.client.ping()

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
        with _redis_errors("create_session", session_id):
            created = await self.client.set(k.record, record, nx=True, px=self._session_ttl_ms)
        if not created:
            raise SessionExists(f"session {session_id} already exists")

    async def check_secret(self, session_id: str, secret: str) -> SessionInfo:
        """The session's ``info`` if ``secret`` is its resume secret; ``SessionNotFound`` / ``BadSecret``
        (``CheckpointCorrupt`` if the record is unreadable)."""
        k = self.keys(session_id)
        with _redis_errors("check_secret", session_id):
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
        with _redis_errors("delete_session", session_id):
            history = await self.client.lrange(k.history, 0, -1)
            await self.client.delete(*self._script_keys(k))
            await self._delete_parts(self._manifest_parts(session_id, history))

    # -- lease ---------------------------------------------------------------------------------

    async def acquire(self, session_id: str, owner: str) -> Lease:
        """Become the session's owner with a fresh fencing token (takes over from any previous owner)."""
        k = self.keys(session_id)
        if not owner:
            raise ValueError("owner must be a non-empty string (e.g. the pod name)")
        with _redis_errors("acquire", session_id):
            token, previous = await self._acquire(
                keys=self._script_keys(k), args=[owner, self._lease_ttl_ms, self._session_ttl_ms]
            )
        previous = previous.decode() if isinstance(previous, bytes) else previous
        if previous and previous != owner:
            log.info("session %s: %s took over from %s (token %d)", session_id, owner, previous, token)
        return Lease(session_id, owner, int(token))

    async def renew(self, lease: Lease) -> None:
        """Extend the lease (and the session's TTLs); ``FencedError`` if another owner took over.

        A lease that merely expired (nobody acquired since) is restored.
        """
        k = self.keys(lease.session_id)
        with _redis_errors("renew", lease.session_id):
            history = await self._renew(
                keys=self._script_keys(k),
                args=[lease.token, lease.owner, self._lease_ttl_ms, self._session_ttl_ms],
            )
            await self._touch_parts(self._manifest_parts(lease.session_id, history))

    async def reinstate(self, lease: Lease, secret: str, info: SessionInfo) -> None:
        """Put back a session Redis lost (restart without persistence, or expiry): record, fence, lease.

        ``FencedError`` if a newer owner exists. The owner calls it when a write was fenced with no
        current token at all; checkpoint versions then start again at 1.
        """
        k = self.keys(lease.session_id)
        record = _record(secret, info)
        with _redis_errors("reinstate", lease.session_id):
            await self._reinstate(
                keys=self._script_keys(k),
                args=[lease.token, lease.owner, self._lease_ttl_ms, self._session_ttl_ms, record],
            )
        log.warning("session %s: reinstated in Redis with token %d", lease.session_id, lease.token)

    async def release(self, lease: Lease) -> bool:
        """Give the lease up; False (and nothing deleted) if it is no longer this token's."""
        k = self.keys(lease.session_id)
        with _redis_errors("release", lease.session_id):
            return bool(await self._release(keys=self._script_keys(k), args=[lease.token]))

    # -- checkpoints ---------------------------------------------------------------------------

    async def write_checkpoint(
        self, lease: Lease, meta: CheckpointMeta, shards: Sequence[Mapping[str, torch.Tensor]]
    ) -> int:
        """Store one checkpoint (``shards[r]`` = rank r's tensors) and commit it; returns its version.

        ``FencedError`` (parts removed again) if the lease was taken over; ``StoreUnavailable`` if
        Redis failed (parts already written expire with the session TTL).
        """
        sid = lease.session_id
        k = self.keys(sid)
        if not shards:
            raise ValueError("a checkpoint needs at least one shard (one tensor dict per rank)")
        if len(shards) != meta.tp:
            raise ValueError(f"meta.tp is {meta.tp} but {len(shards)} shards were given")
        encoded = await asyncio.to_thread(_encode_shards, shards, self.settings.part_bytes)

        with _redis_errors("write_checkpoint", sid):
            version = int(await self._begin(keys=self._script_keys(k), args=[lease.token, self._session_ttl_ms]))
        table = [
            [PartRef(k.part(version, rank, i), sha, len(view)) for i, (view, sha) in enumerate(parts)]
            for rank, parts in enumerate(encoded)
        ]
        manifest = Manifest(version, sid, lease.token, meta, table, time.time())
        written = [p.key for rank in table for p in rank]
        minid = f"{meta.audio_seq + 1}-0"  # the log keeps the AudioChunks from meta.audio_seq on
        try:
            with _redis_errors("write_checkpoint", sid):
                await self._write_parts(
                    [
                        (p.key, view)
                        for ps, parts in zip(table, encoded, strict=True)
                        for p, (view, _) in zip(ps, parts, strict=True)
                    ]
                )
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
            await self._discard(sid, written)  # refused: nothing references these parts
            raise
        try:
            with _redis_errors("write_checkpoint gc", sid):
                await self._delete_parts(self._manifest_parts(sid, dropped))
                history = await self.client.lrange(k.history, 1, -1)
                await self._touch_parts(self._manifest_parts(sid, history))
        except StoreError as exc:
            log.warning(
                "session %s: checkpoint %d committed, old parts not collected (they expire): %s", sid, version, exc
            )
        log.debug("session %s: checkpoint %d committed (%d parts)", sid, version, len(written))
        return version

    async def read_checkpoint(self, session_id: str) -> Checkpoint:
        """The newest intact checkpoint; ``CheckpointMissing`` if none was committed, ``CheckpointCorrupt``
        if none is intact, ``UnsupportedFormat`` if one in the way was written in another format."""
        k = self.keys(session_id)
        with _redis_errors("read_checkpoint", session_id):
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
        shards = []
        for rank, parts in enumerate(manifest.shards):
            with _redis_errors("read_checkpoint", session_id):
                blobs = await self._read_parts([p.key for p in parts])
            missing = [i for i, blob in enumerate(blobs) if blob is None]
            if missing:
                return f"rank {rank} part {missing[0]} is missing (expired or deleted)", []
            problem, tensors = await asyncio.to_thread(_decode_shard, rank, parts, blobs)
            if problem:
                return problem, []
            shards.append(tensors)
        return "", shards

    # -- audio log -----------------------------------------------------------------------------

    async def append_audio(self, lease: Lease, seq: int, data: bytes) -> None:
        """Log audio chunk ``seq`` (0, 1, 2, ...); ``AudioOrderError`` unless seq > the last logged one."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"audio seq must be an int >= 0, got {seq!r}")
        k = self.keys(lease.session_id)
        try:
            with _redis_errors("append_audio", lease.session_id):
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
        with _redis_errors("read_audio", session_id):
            while True:
                entries = await self.client.xrange(k.audio, min=start, max="+", count=AUDIO_PAGE)
                for entry_id, fields in entries:
                    out.append((_entry_seq(entry_id), fields[AUDIO_FIELD]))
                if len(entries) < AUDIO_PAGE:
                    return out
                start = f"{out[-1][0] + 2}-0"  # the id after the last seq read

    async def truncate_audio(self, lease: Lease, from_seq: int) -> int:
        """Drop logged chunks with seq >= ``from_seq`` so they can be logged again; returns how many."""
        k = self.keys(lease.session_id)
        with _redis_errors("truncate_audio", lease.session_id):
            return int(await self._truncate_audio(keys=self._script_keys(k), args=[lease.token, f"{from_seq + 1}-0"]))

    async def last_audio_seq(self, session_id: str) -> int | None:
        """The highest seq ever logged (even if a commit trimmed it since); None if none was."""
        k = self.keys(session_id)
        with _redis_errors("last_audio_seq", session_id):
            if not await self.client.exists(k.audio):
                return None
            info = await self.client.xinfo_stream(k.audio)
        last = _entry_seq(info["last-generated-id"])
        return None if last < 0 else last

    # -- parts ---------------------------------------------------------------------------------

    async def _write_parts(self, parts: list[tuple[str, memoryview]]) -> None:
        """SET every part with the session TTL, pipelined in rounds of about PIPELINE_BYTES."""
        pipe, in_flight = self.client.pipeline(transaction=False), 0
        for key, view in parts:
            pipe.set(key, view, px=self._session_ttl_ms)
            in_flight += len(view)
            if in_flight >= PIPELINE_BYTES:
                await pipe.execute()
                pipe, in_flight = self.client.pipeline(transaction=False), 0
        if len(pipe):
            await pipe.execute()

    async def _read_parts(self, keys: list[str]) -> list[bytes | None]:
        """GET every key (one per request, so keys may live on different cluster shards)."""
        per_round = max(1, PIPELINE_BYTES // self.settings.part_bytes)
        out: list[bytes | None] = []
        for start in range(0, len(keys), per_round):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[start : start + per_round]:
                pipe.get(key)
            out += await pipe.execute()
        return out

    async def _delete_parts(self, keys: list[str]) -> None:
        if keys:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:  # not pipe.unlink: a ClusterPipeline runs multi-key commands at once, unqueued
                pipe.execute_command("UNLINK", key)
            await pipe.execute()

    async def _touch_parts(self, keys: list[str]) -> None:
        if keys:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.pexpire(key, self._session_ttl_ms)
            await pipe.execute()

    async def _discard(self, session_id: str, keys: list[str]) -> None:
        try:
            with _redis_errors("write_checkpoint cleanup", session_id):
                await self._delete_parts(keys)
        except StoreError as exc:
            log.warning("session %s: refused checkpoint's parts not deleted (they expire): %s", session_id, exc)

    def _manifest_parts(self, session_id: str, manifests: list[bytes]) -> list[str]:
        """Part keys listed by ``manifests`` (unreadable ones are skipped: their parts expire)."""
        prefix = self.keys(session_id).part_pattern()[:-1]
        keys = []
        for raw in manifests:
            try:
                keys += Manifest.part_keys(json.loads(raw))
            except (ValueError, SchemaError):
                log.warning("session %s: skipping an unreadable manifest", session_id)
        return [key for key in keys if isinstance(key, str) and key.startswith(prefix)]


def _entry_seq(entry_id: bytes | str) -> int:
    """Audio seq of a stream entry id ``<seq + 1>-0``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0]) - 1
