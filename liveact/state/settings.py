"""``StoreSettings``: where the session-state Redis is and how session state is laid out in it.

A frozen dataclass of plain values; the generator fills it from its flags / ``LIVEACT_*``
environment. ``validate()`` lists every problem at once (each says what to fix) and ``connect()``
builds the ``redis.asyncio`` client: credentials, TLS and socket timeouts; with ``cluster`` a
``RedisCluster`` that discovers the shards from the URL's node and follows slot moves (the key
layout in ``keys.py`` keeps each session's scripted keys in one slot and spreads checkpoint parts).

The client does no retries of its own: a failed call raises at once (as ``StoreUnavailable`` from
``SessionStore``) and the caller retries whole operations with ``liveact.state.backoff``, so no
script or checkpoint commit is ever re-sent blindly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
import redis.cluster
import redis.retry
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from liveact.state.redis_memory import fill_size

__all__ = ["KEY_PREFIX_PATTERN", "MAX_PART_BYTES", "MIN_KEEP_VERSIONS", "MIN_PART_BYTES", "StoreSettings"]

KIB = 1024
MIB = 1024 * KIB
MIN_PART_BYTES = KIB
MAX_PART_BYTES = 256 * MIB  # far below Redis's 512 MB value cap (proto-max-bulk-len)
DEFAULT_PART_BYTES = 64 * MIB
MIN_TTL_S = 0.001  # Redis expiries are whole milliseconds
MIN_KEEP_VERSIONS = 2  # the newest may be corrupt; the one before it is the fallback
KEY_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # no '{' '}' (hash tags) and no ':' (separator)
CLIENT_NAME_PATTERN = re.compile(r"[!-~]{1,128}")  # Redis refuses spaces, newlines and non-ASCII in names
URL_SCHEMES = ("redis", "rediss", "unix")
TLS_SCHEME = "rediss"
RESP_PROTOCOL = 2  # RESP2: what every Redis (and Redis-compatible service) speaks, whatever redis-py's default


@dataclass(frozen=True)
class StoreSettings:
    url: str = "redis://127.0.0.1:6379/0"
    password: str | None = None
    username: str | None = None  # Redis ACL user; None = the default user
    tls: bool = False  # also implied by a rediss:// url
    cluster: bool = False  # Redis Cluster: the url names any one node, the client finds the others
    tls_ca_file: str | None = None  # CA bundle that signed the server's certificate
    tls_cert_file: str | None = None  # client certificate (mutual TLS), with tls_key_file
    tls_key_file: str | None = None
    key_prefix: str = "liveact"  # every key starts with it: several deployments can share one Redis
    part_bytes: int = DEFAULT_PART_BYTES  # largest Redis value a checkpoint blob is split into
    session_ttl_s: float = 3600.0  # an idle session's keys expire after this (refreshed on every write)
    lease_ttl_s: float = 30.0  # an owner that stops renewing loses the lease after this
    keep_versions: int = MIN_KEEP_VERSIONS  # committed checkpoint versions kept per session
    op_timeout_s: float = 5.0  # connect / socket timeout of one Redis call
    client_name: str = ""  # CLIENT SETNAME of every connection (CLIENT LIST shows which process wrote what)

    @property
    def cut_bytes(self) -> int:
        """The longest checkpoint part: ``part_bytes`` less what would push it past its allocator size class
        (a part of exactly 64 MiB costs Redis 80 MiB; ``liveact.state.redis_memory.fill_size``)."""
        return fill_size(self.part_bytes)

    @property
    def use_tls(self) -> bool:
        return self.tls or urlsplit(self.url).scheme == TLS_SCHEME

    def validate(self) -> list[str]:
        """Every problem with these settings, each naming the field and what to fix; [] if none."""
        problems = []
        scheme = urlsplit(self.url).scheme
        if scheme not in URL_SCHEMES:
            problems.append(f"url {self.url!r} must start with redis://, rediss:// or unix://")
        if self.tls and scheme == "unix":
            problems.append("tls cannot be used with a unix:// url: use rediss://host:port")
        if self.cluster and scheme == "unix":
            problems.append("cluster needs a redis:// or rediss:// url of one cluster node, not unix://")
        if self.cluster and urlsplit(self.url).path.strip("/") not in ("", "0"):
            problems.append(f"url {self.url!r}: Redis Cluster has only database 0; drop the /N from the url")
        if not self.use_tls and (self.tls_ca_file or self.tls_cert_file or self.tls_key_file):
            problems.append("tls_ca_file / tls_cert_file / tls_key_file are set but tls is off: set tls=True")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            problems.append("tls_cert_file and tls_key_file must be given together (mutual TLS)")
        for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                problems.append(f"{name} {path!r} is not a readable file")
        if self.username is not None and self.password is None:
            problems.append("username is set without a password: set password too")
        if not KEY_PREFIX_PATTERN.fullmatch(self.key_prefix):
            problems.append(f"key_prefix {self.key_prefix!r} must match {KEY_PREFIX_PATTERN.pattern}")
        if not MIN_PART_BYTES <= self.part_bytes <= MAX_PART_BYTES:
            problems.append(f"part_bytes {self.part_bytes} must be in {MIN_PART_BYTES}..{MAX_PART_BYTES}")
        if min(self.session_ttl_s, self.lease_ttl_s) < MIN_TTL_S or self.op_timeout_s <= 0:
            problems.append(
                f"session_ttl_s and lease_ttl_s must be >= {MIN_TTL_S} (Redis TTLs are in ms), op_timeout_s > 0"
            )
        if self.lease_ttl_s > self.session_ttl_s:
            problems.append(f"lease_ttl_s {self.lease_ttl_s} must not exceed session_ttl_s {self.session_ttl_s}")
        if self.client_name and not CLIENT_NAME_PATTERN.fullmatch(self.client_name):
            problems.append(f"client_name {self.client_name!r} must match {CLIENT_NAME_PATTERN.pattern}")
        if self.keep_versions < MIN_KEEP_VERSIONS:
            problems.append(f"keep_versions {self.keep_versions} must be >= {MIN_KEEP_VERSIONS} (fallback version)")
        return problems

    def connect(self) -> aioredis.Redis | RedisCluster:
        """A ``redis.asyncio.Redis`` (or ``RedisCluster``) for these settings; ``ValueError`` lists problems.

        Values are bytes (``decode_responses=False``): checkpoint parts and audio are binary.
        """
        url, kwargs = self._client_args()
        kwargs["retry"] = Retry(NoBackoff(), 0)  # no retries inside redis-py: the callers back off
        if self.cluster:  # MOVED / ASK redirects are followed (the command did not run); errors are not retried
            return RedisCluster.from_url(url, **kwargs)
        return aioredis.from_url(url, **kwargs)

    def connect_blocking(self) -> redis.Redis | redis.cluster.RedisCluster:
        """The same connection as ``connect``, blocking: for a worker thread (``liveact.state.bulk``)."""
        url, kwargs = self._client_args()
        kwargs["retry"] = redis.retry.Retry(NoBackoff(), 0)
        if self.cluster:
            return redis.cluster.RedisCluster.from_url(url, **kwargs)
        return redis.Redis.from_url(url, **kwargs)

    def _client_args(self) -> tuple[str, dict[str, object]]:
        """(url, keyword arguments) of a redis-py client for these settings; ``ValueError`` lists problems."""
        problems = self.validate()
        if problems:
            raise ValueError("; ".join(problems))
        url = self.url
        kwargs: dict[str, object] = {
            "password": self.password,
            "username": self.username,
            "socket_timeout": self.op_timeout_s,
            "socket_connect_timeout": self.op_timeout_s,
            "socket_keepalive": True,
            "decode_responses": False,
            "protocol": RESP_PROTOCOL,
        }
        if self.client_name:
            kwargs["client_name"] = self.client_name
        if self.use_tls:
            url = urlunsplit(urlsplit(url)._replace(scheme=TLS_SCHEME))
            kwargs.update(
                ssl_ca_certs=self.tls_ca_file,
                ssl_certfile=self.tls_cert_file,
                ssl_keyfile=self.tls_key_file,
            )
        return url, kwargs
