"""CheckpointWriter against a real redis-server: when checkpoints are due, lease renewal, audio-log gaps."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis_server import RedisServer, require_redis_server

from liveact.state import SessionStore, StoreSettings
from liveact.state.backoff import Backoff
from services.generator.checkpoint import CheckpointPolicy, CheckpointWriter

SID, SECRET = "writer-1", "secret-token"
LEASE_TTL_S = 0.3


@pytest.fixture(scope="module")
def server():
    require_redis_server()
    with RedisServer() as s:
        yield s


def test_policy_by_count_and_by_time():
    assert CheckpointPolicy(every_chunks=4).due(4, 0.0) and not CheckpointPolicy(every_chunks=4).due(3, 99.0)
    assert CheckpointPolicy(every_chunks=0, every_s=2.0).due(1, 2.0)
    assert not CheckpointPolicy(every_chunks=0, every_s=2.0).due(100, 1.9)


def test_the_lease_is_renewed_while_the_session_runs(server):
    async def main():
        store = SessionStore(StoreSettings(url=server.url, lease_ttl_s=LEASE_TTL_S))
        await store.create_session(SID, SECRET, {})
        lease = await store.acquire(SID, "gen-a")
        writer = CheckpointWriter(store, lease, CheckpointPolicy(), Backoff(), SECRET, {})
        fenced = []

        async def on_fenced(exc):
            fenced.append(exc)

        task = asyncio.create_task(writer.keep_lease(on_fenced))
        r = redis.Redis.from_url(server.url)
        key = store.keys(SID).lease
        for _ in range(8):  # 4 lease TTLs
            await asyncio.sleep(LEASE_TTL_S / 2)
            assert int(r.hget(key, "token")) == lease.token
        await store.acquire(SID, "gen-b")  # taken over: the next renewal reports it
        await asyncio.wait_for(task, timeout=LEASE_TTL_S * 2)
        assert len(fenced) == 1
        await store.close()

    asyncio.run(main())


def test_checkpoints_wait_until_the_audio_log_is_past_a_gap(server):
    async def main():
        store = SessionStore(StoreSettings(url=server.url))
        await store.create_session("writer-2", SECRET, {})
        lease = await store.acquire("writer-2", "gen-a")
        writer = CheckpointWriter(store, lease, CheckpointPolicy(), Backoff(base_s=0.01, cap_s=0.01), SECRET, {})
        assert writer.exact_from(0) and writer.log_open()
        writer.audio_not_logged(5, "Redis unavailable")  # chunk 5 failed
        assert not writer.exact_from(3) and not writer.exact_from(9)
        await asyncio.sleep(0.02)
        assert writer.log_open()  # the backoff passed: try again
        writer.audio_logged(7)  # 6 was skipped while backing off; 7 made it
        assert not writer.exact_from(6) and writer.exact_from(7) and writer.exact_from(8)
        await store.close()

    asyncio.run(main())


def test_the_audio_log_is_bounded_when_checkpoints_do_not_commit(server):
    """Redis takes appends but no checkpoint commits: the log never holds more than the limit."""
    piece, limit = b"\x01" * 300, 1000

    async def main():
        store = SessionStore(StoreSettings(url=server.url))
        await store.create_session("writer-3", SECRET, {})
        lease = await store.acquire("writer-3", "gen-a")
        writer = CheckpointWriter(store, lease, CheckpointPolicy(), Backoff(), SECRET, {}, max_log_bytes=limit)
        held = []
        for seq in range(38):  # a drop after every 4th piece (1200 > 1000 bytes): the last after seq 35
            await writer.log_audio(seq, piece)
            held.append(sum(len(d) for _, d in await store.read_audio("writer-3")))
        assert max(held) <= limit + len(piece)  # bounded whatever the session length
        assert writer.log_from == 36 and writer.exact_from(36) and not writer.exact_from(35)  # goes on after a drop
        assert [s for s, _ in await store.read_audio("writer-3")] == [36, 37]  # contiguous since the last drop
        await store.close()

    asyncio.run(main())
