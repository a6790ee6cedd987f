"""SessionStore on a real 3-master Redis Cluster (tests/redis_server.py ``RedisClusterServers``): the
scripted session keys stay in one slot, checkpoint parts spread over the shards, fencing and the audio
log work through slot routing, and the settings refuse what a cluster cannot do."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
from helpers import checkpoint_meta, session_info
from redis_server import RedisClusterServers, RedisServer, free_port, require_redis_server
from test_state_store import SECRET, assert_same, tensors

from liveact.state import FencedError, SessionNotFound, StoreUnavailable
from liveact.state.keys import SessionKeys
from liveact.state.settings import StoreSettings
from liveact.state.store import SessionStore

KIB = 1024
SMALL_PART = 2 * KIB
SESSIONS = 6


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    require_redis_server()
    servers = RedisClusterServers()
    try:
        yield servers
    finally:
        servers.close()


def node_keys(node: RedisServer) -> set[str]:
    """The keys one shard holds (SCAN on a cluster node sees only its own slots)."""
    return {k.decode() for k in redis.Redis(port=node.port).scan_iter(count=1000)}


def store_for(cluster: RedisClusterServers, **kw) -> SessionStore:
    return SessionStore(StoreSettings(url=cluster.url, cluster=True, op_timeout_s=2.0, **kw))


@pytest.mark.integration
def test_sessions_round_trip_with_parts_spread_over_the_shards(cluster):
    big = [tensors(seed, numel=6 * KIB) for seed in range(SESSIONS)]  # ~18 KiB each: ~9 parts of 2 KiB

    async def main():
        store = store_for(cluster, part_bytes=SMALL_PART)
        try:
            for i in range(SESSIONS):
                sid = f"c-{i}"
                await store.create_session(sid, SECRET, session_info(seed=i))
                lease = await store.acquire(sid, "gen-a")
                await store.write_checkpoint(lease, checkpoint_meta(i), [big[i]])
                await store.append_audio(lease, 0, b"pcm-0")
                await store.append_audio(lease, 1, b"pcm-1")
            for i in range(SESSIONS):
                sid = f"c-{i}"
                assert await store.check_secret(sid, SECRET) == session_info(seed=i)
                ckpt = await store.read_checkpoint(sid)
                assert ckpt.meta.chunk_index == i
                assert_same(ckpt.shards[0], big[i])
                assert await store.read_audio(sid) == [(0, b"pcm-0"), (1, b"pcm-1")]
        finally:
            await store.close()

    asyncio.run(main())
    per_node = [node_keys(n) for n in cluster.nodes]
    parts = [{k for k in keys if ":part:" in k} for keys in per_node]
    assert all(parts), f"checkpoint parts did not spread over every shard: {[len(p) for p in parts]}"
    for i in range(SESSIONS):  # each session's small keys sit together on exactly one shard
        tagged = set(SessionKeys("liveact", f"c-{i}").tagged())
        holders = [n for n, keys in enumerate(per_node) if tagged & keys]
        assert len(holders) == 1 and tagged <= per_node[holders[0]]


@pytest.mark.integration
def test_fencing_and_delete_work_through_the_cluster(cluster):
    async def main():
        store = store_for(cluster, part_bytes=SMALL_PART)
        try:
            await store.create_session("f-1", SECRET, session_info())
            old = await store.acquire("f-1", "gen-a")
            new = await store.acquire("f-1", "gen-b")
            assert new.token > old.token
            with pytest.raises(FencedError):
                await store.write_checkpoint(old, checkpoint_meta(1), [tensors(1, numel=4 * KIB)])
            await store.write_checkpoint(new, checkpoint_meta(2), [tensors(2, numel=4 * KIB)])
            await store.delete_session("f-1")
            with pytest.raises(SessionNotFound):
                await store.check_secret("f-1", SECRET)
        finally:
            await store.close()

    asyncio.run(main())
    leftovers = [k for node in cluster.nodes for k in node_keys(node) if "f-1" in k]
    assert leftovers == []


def test_an_unreachable_cluster_is_store_unavailable():
    async def main():
        store = SessionStore(StoreSettings(url=f"redis://127.0.0.1:{free_port()}", cluster=True, op_timeout_s=0.5))
        try:
            with pytest.raises(StoreUnavailable):
                await store.ping()
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "unix:///run/redis.sock"}, "cluster needs a redis:// or rediss:// url"),
        ({"url": "redis://r:6379/2"}, "Redis Cluster has only database 0"),
    ],
)
def test_settings_refuse_what_a_cluster_cannot_do(change, message):
    problems = StoreSettings(cluster=True, **change).validate()
    assert any(message in p for p in problems), problems
    assert StoreSettings(url="redis://r:6379/0", cluster=True).validate() == []
