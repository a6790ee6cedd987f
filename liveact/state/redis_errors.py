"""redis-py's exceptions -> ``liveact.state.errors``: what a caller of the store reacts to.

Unreachable, timed out, refused credentials, a read-only replica, a cluster without slots:
``StoreUnavailable`` (retry with backoff); a write refused at ``maxmemory``: ``StoreFull`` (the same).
A Lua script's refusal (its error code, ``scripts.py``): the matching ``StoreError`` subclass.
Anything else Redis says: ``StoreError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.exceptions as rexc

from liveact.state import scripts
from liveact.state.errors import (
    AudioOrderError,
    FencedError,
    SessionNotFound,
    StoreError,
    StoreFull,
    StoreUnavailable,
)

__all__ = ["redis_errors"]

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
_REFUSALS: dict[str, type[StoreError]] = {
    scripts.FENCED: FencedError,
    scripts.NOSESSION: SessionNotFound,
    scripts.AUDIOSEQ: AudioOrderError,
    scripts.STALE: StoreError,
}


@contextlib.contextmanager
def redis_errors(what: str, session_id: str = "") -> Iterator[None]:
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
    except rexc.OutOfMemoryError as exc:  # "OOM command not allowed ...", also inside a pipeline
        raise StoreFull(
            f"{what}: Redis is full (maxmemory reached; noeviction keeps every key): raise maxmemory or "
            "lower the sessions per Redis (liveact plan's redis column)"
        ) from exc
    except rexc.ResponseError as exc:
        message = str(exc)
        code = message.split(" ", 1)[0]
        if code in _REFUSALS:
            raise _REFUSALS[code](f"{what}: {message}") from exc
        raise StoreError(f"{what}: Redis error: {message}") from exc
    except rexc.RedisError as exc:
        raise StoreError(f"{what}: Redis error ({type(exc).__name__}: {exc})") from exc
