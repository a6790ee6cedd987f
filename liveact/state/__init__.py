"""Session state: what a session stores (``schema``), tensors as bytes (``codec``), and the store.

Importing this package loads no Redis client: the state of a sampler or a stream
(``sampler_state``, ``tensors``) is plain tensors, used by the audio, VAE and parallel code too.
The Redis side is imported where it is used: ``liveact.state.store.SessionStore`` (one per
process) and ``liveact.state.settings.StoreSettings`` (where Redis is). ``Backoff`` paces retries
while Redis is down.
"""

from liveact.state.backoff import Backoff
from liveact.state.codec import CodecError, pack, unpack
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
from liveact.state.keys import SessionKeys, check_session_id
from liveact.state.schema import FORMAT_VERSION, CheckpointMeta, SessionInfo

__all__ = [
    "FORMAT_VERSION",
    "AudioOrderError",
    "Backoff",
    "BadSecret",
    "CheckpointCorrupt",
    "CheckpointMeta",
    "CheckpointMissing",
    "CodecError",
    "FencedError",
    "SessionExists",
    "SessionInfo",
    "SessionKeys",
    "SessionNotFound",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "UnsupportedFormat",
    "check_session_id",
    "pack",
    "unpack",
]
