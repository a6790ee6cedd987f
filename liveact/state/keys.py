"""The Redis key layout of one session, designed for Redis Cluster as well as a single Redis.

With prefix ``P`` and session id ``S`` the session's small keys share the hash tag ``{P:S}``, so
they live in one cluster slot and one Lua script may read and write them atomically (the lease
check, the commit of a checkpoint, the audio append):

    {P:S}:record    string  JSON {secret_sha256, info, created}: the resume secret's digest, never the secret
    {P:S}:lease     hash    {owner, token}: the current owner; expires after lease_ttl_s unless renewed
    {P:S}:fence     string  counter; INCR on every acquire gives the next fencing token
    {P:S}:version   string  counter; INCR on every checkpoint write gives its version
    {P:S}:history   list    manifests (JSON) of committed checkpoints, newest first, at most keep_versions
    {P:S}:audio     stream  PCM received since the last checkpoint; entry id "<seq + 1>-0", field "d"

Checkpoint tensors are stored as parts of their raw bytes, addressed by content, that carry no
hash tag, so their slots spread over the cluster's shards (a real-model checkpoint is gigabytes):

    P:part:S:<sha256>    string  at most part_bytes; the key names its content

so a part that two versions (or two ranks) hold alike is stored once. A part is written before the
commit that makes it reachable (through a manifest in the history) and every part carries the
session TTL, so a writer that dies between the two leaves only orphans that expire. Session ids and
the prefix are restricted to ``[A-Za-z0-9_-]`` (plus ``.`` in the
prefix), so no id can inject a brace (a hash tag) or a ``:`` (a separator).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SESSION_ID_PATTERN", "SessionKeys", "check_session_id"]

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        raise ValueError(f"session id {session_id!r} must match {SESSION_ID_PATTERN.pattern}")
    return session_id


@dataclass(frozen=True)
class SessionKeys:
    """Every key name of one session (computed, nothing stored)."""

    prefix: str
    session_id: str

    def __post_init__(self) -> None:
        check_session_id(self.session_id)

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:{self.session_id}}}"

    @property
    def record(self) -> str:
        return f"{self.tag}:record"

    @property
    def lease(self) -> str:
        return f"{self.tag}:lease"

    @property
    def fence(self) -> str:
        return f"{self.tag}:fence"

    @property
    def version(self) -> str:
        return f"{self.tag}:version"

    @property
    def history(self) -> str:
        return f"{self.tag}:history"

    @property
    def audio(self) -> str:
        return f"{self.tag}:audio"

    def tagged(self) -> list[str]:
        """The session's small keys that live as long as the session (all but the lease), one slot."""
        return [self.record, self.fence, self.version, self.history, self.audio]

    def part(self, sha256: str) -> str:
        """The key of the session's part with this content digest (``schema.PartDigest``)."""
        return f"{self.prefix}:part:{self.session_id}:{sha256}"

    def part_pattern(self) -> str:
        """SCAN pattern matching every part of this session (for tests and audits; ids hold no glob chars)."""
        return f"{self.prefix}:part:{self.session_id}:*"
