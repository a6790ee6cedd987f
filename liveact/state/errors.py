"""Errors of the session-state store, one class per thing a caller reacts to differently.

Each maps to one gRPC status in the generator (the mapping lives there, not here):

* ``FencedError``           - a newer owner holds the session's lease (ABORTED: stop writing, let go).
* ``SessionNotFound``       - no such session, or it expired (NOT_FOUND).
* ``SessionExists``         - ``create_session`` for an id already taken (ALREADY_EXISTS).
* ``BadSecret``             - the resume secret does not match (PERMISSION_DENIED).
* ``CheckpointMissing``     - the session has no checkpoint yet (FAILED_PRECONDITION).
* ``CheckpointCorrupt``     - no stored version passed its checks (DATA_LOSS).
* ``UnsupportedFormat``     - the newest checkpoint was written in another format (FAILED_PRECONDITION).
* ``AudioOrderError``       - an audio chunk's seq is not after the last stored one (INVALID_ARGUMENT).
* ``StoreUnavailable``      - Redis cannot be reached, timed out or refused the credentials: retry
  with backoff (UNAVAILABLE); generation goes on meanwhile.
* ``StoreFull``             - a ``StoreUnavailable``: Redis refused a write because it is at ``maxmemory``
  (policy ``noeviction``); retried the same way, until memory is freed or ``maxmemory`` raised.
"""

from __future__ import annotations

__all__ = [
    "AudioOrderError",
    "BadSecret",
    "CheckpointCorrupt",
    "CheckpointMissing",
    "FencedError",
    "SessionExists",
    "SessionNotFound",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "UnsupportedFormat",
]


class StoreError(Exception):
    """Base of every error raised by ``liveact.state``."""


class FencedError(StoreError):
    """The lease's fencing token is no longer the session's current one: another owner took over."""


class SessionNotFound(StoreError):
    """The session has no record (never created, deleted, or expired after ``session_ttl_s`` idle)."""


class SessionExists(StoreError):
    """A session record with this id already exists."""


class BadSecret(StoreError):
    """The resume secret does not match the one the session was created with."""


class CheckpointMissing(StoreError):
    """The session has no committed checkpoint."""


class CheckpointCorrupt(StoreError):
    """Every stored checkpoint version failed verification; the message lists each and why."""


class UnsupportedFormat(StoreError):
    """A checkpoint manifest names a format this code does not read."""


class AudioOrderError(StoreError, ValueError):
    """An audio chunk's seq is not greater than the last stored seq (duplicate or out of order)."""


class StoreUnavailable(StoreError):
    """Redis could not be reached or did not answer in time (or refused the credentials)."""


class StoreFull(StoreUnavailable):
    """Redis is at ``maxmemory`` and refuses writes (``OOM command not allowed``; no key is evicted)."""
