"""A session's durable parts against a real redis-server: when checkpoints are due (CheckpointPolicy), lease
renewal (LeaseKeeper), audio-log gaps and bounds (AudioLog)."""

from __future__ import annotations

import asyncio

import pytest
import redis
from helpers import session_info
from redis_server import RedisServer

from liveact.state.backoff import Backoff
from liveact.state.settings import StoreSettings
from liveact.state.store import SessionStore
from services.generator.audio_log import AudioLog
from services.generator.checkpoint import CheckpointPolicy
from services.generator.lease import LeaseKeeper

SID, SECRET = "writer-1", "secret-token"
LEASE_TTL_S = 0.3


@pytest.fixture(scope="module")
def server(redis: RedisServer) -> RedisServer:
    """conftest's private redis-server (``redis`` here is the fixture, not the client library)."""
    return redis


def test_policy_by_count_and_by_time():
    assert CheckpointPolicy(every_chunks=4).due(4, 0.0) and not CheckpointPolicy(every_chunks=4).due(3, 99.0)
    assert CheckpointPolicy(every_chunks=0, every_s=2.0).due(1, 2.0)
    assert not CheckpointPolicy(every_chunks=0, every_s=2.0).due(100, 1.9)


@pytest.mark.integration
def test_the_lease_is_renewed_while_the_session_runs(server):
    async def main():
        store = SessionStore(StoreSettings(url=server.url, lease_ttl_s=LEASE_TTL_S))
        await store.create_session(SID, SECRET, session_info())
        lease = await store.acquire(SID, "gen-a")
        keeper = LeaseKeeper(store, lease, SECRET, session_info())
        fenced = []

        async def on_fenced(exc):
            fenced.append(exc)

        task = asyncio.create_task(keeper.keep(on_fenced))
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


@pytest.mark.integration
def test_checkpoints_wait_until_the_audio_log_is_past_a_gap(server):
    async def main():
        store = SessionStore(StoreSettings(url=server.url))
        await store.create_session("writer-2", SECRET, session_info())
        lease = await store.acquire("writer-2", "gen-a")
        audio_log = AudioLog(LeaseKeeper(store, lease, SECRET, session_info()), Backoff(base_s=0.01, cap_s=0.01))
        assert audio_log.exact_from(0) and audio_log.is_open()
        audio_log.missed(5, "Redis unavailable")  # chunk 5 failed
        assert not audio_log.exact_from(3) and not audio_log.exact_from(9)
        await asyncio.sleep(0.02)
        assert audio_log.is_open()  # the backoff passed: try again
        audio_log.logged(7)  # 6 was skipped while backing off; 7 made it
        assert not audio_log.exact_from(6) and audio_log.exact_from(7) and audio_log.exact_from(8)
        await store.close()

    asyncio.run(main())


@pytest.mark.integration
def test_the_audio_log_is_bounded_when_checkpoints_do_not_commit(server):
    """Redis takes appends but no checkpoint commits: the log never holds more than the limit."""
    piece, limit = b"\x01" * 300, 1000

    async def main():
        store = SessionStore(StoreSettings(url=server.url))
        await store.create_session("writer-3", SECRET, session_info())
        lease = await store.acquire("writer-3", "gen-a")
        audio_log = AudioLog(LeaseKeeper(store, lease, SECRET, session_info()), Backoff(), max_bytes=limit)
        held = []
        for seq in range(38):  # a drop after every 4th piece (1200 > 1000 bytes): the last after seq 35
            await audio_log.append(seq, piece)
            held.append(sum(len(d) for _, d in await store.read_audio("writer-3")))
        assert max(held) <= limit + len(piece)  # bounded whatever the session length
        assert audio_log.log_from == 36 and audio_log.exact_from(36) and not audio_log.exact_from(35)  # goes on
        assert [s for s, _ in await store.read_audio("writer-3")] == [36, 37]  # contiguous since the last drop
        await store.close()

    asyncio.run(main())
