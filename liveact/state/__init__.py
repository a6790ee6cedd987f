"""Session state in Redis: records, owner leases with fencing, checkpoints and audio logs.

Importable without gRPC. ``SessionStore`` is the entry point (one per process); ``StoreSettings``
says where Redis is; ``codec`` turns tensors into bytes (safetensors only, never pickle);
``Backoff`` paces retries while Redis is down.
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
    StoreUnavailable,
    UnsupportedFormat,
)
from liveact.state.keys import SessionKeys, check_session_id
from liveact.state.settings import StoreSettings
from liveact.state.store import AUDIO_SEQ_KEY, CHECKPOINT_FORMAT, Checkpoint, Lease, SessionStore

__all__ = [
    "AUDIO_SEQ_KEY",
    "CHECKPOINT_FORMAT",
    "AudioOrderError",
    "Backoff",
    "BadSecret",
    "Checkpoint",
    "CheckpointCorrupt",
    "CheckpointMissing",
    "CodecError",
    "FencedError",
    "Lease",
    "SessionExists",
    "SessionKeys",
    "SessionNotFound",
    "SessionStore",
    "StoreError",
    "StoreSettings",
    "StoreUnavailable",
    "UnsupportedFormat",
    "check_session_id",
    "pack",
    "unpack",
]
