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


GB = 1_000_000_000
CHUNK_S = 1.6  # 32 frames at 20 fps


def test_the_write_budget_spaces_checkpoints_and_the_maximum_interval_bows_to_it():
    """liveact-18b at 416x720 TP=1 writes 17.26 GB per checkpoint: at 500 MB/s per rank the next is due no sooner
    than 34.5 s after, however many chunks passed; a maximum interval the budget allows triggers on its own."""
    policy = CheckpointPolicy(every_chunks=4, budget_mbps=500.0, max_interval_s=60.0)
    size = 17_262_852_424
    assert policy.min_interval_s(size) == pytest.approx(34.53, abs=0.01)
    assert not policy.due(100, 34.0, size) and policy.due(22, 34.6, size)  # the budget, then the count
    assert policy.due(0, 60.0, size)  # no chunk count needed once the maximum interval has passed
    assert policy.due(4, 0.0, 0)  # before the first checkpoint nothing was written: the count alone
    assert not policy.budget_limited(size) and policy.interval_s(CHUNK_S, size) == pytest.approx(34.53, abs=0.01)
    tight = CheckpointPolicy(every_chunks=4, budget_mbps=100.0, max_interval_s=60.0)  # 172.6 s > 60 s
    assert tight.budget_limited(size) and not tight.due(500, 100.0, size) and tight.due(1, 172.7, size)
    assert tight.interval_s(CHUNK_S, size) == pytest.approx(172.63, abs=0.01)
    tiny = CheckpointPolicy(every_chunks=4, budget_mbps=500.0)  # a tiny checkpoint: the budget never binds
    assert tiny.interval_s(CHUNK_S, 1_400_000) == pytest.approx(4 * CHUNK_S) and tiny.due(4, 0.01, 1_400_000)
    assert CheckpointPolicy(every_chunks=1).interval_s(CHUNK_S, size) == pytest.approx(CHUNK_S)  # no budget


@pytest.mark.integration
def test_the_writer_reports_bytes_replay_and_skipped_checkpoints(server):
    """Two ranks of 2 MB and 1 MB: the budget (1 MB/s) spaces the next checkpoint 2 s after, a due checkpoint
    while one is in flight is counted once per busy stretch, and each commit reports its figures."""
    import time

    import torch

    from liveact.parallel.ranks import DitSnapshot
    from liveact.sampling.capture import Captured
    from liveact.state.schema import AudioPosition
    from services.generator.checkpoint import CheckpointWriter, PendingCheckpoint

    async def main():
        store = SessionStore(StoreSettings(url=server.url))
        await store.create_session("writer-budget", SECRET, session_info())
        lease = await store.acquire("writer-budget", "gen-a")
        keeper = LeaseKeeper(store, lease, SECRET, session_info())
        audio_log = AudioLog(keeper, Backoff(base_s=0.01, cap_s=0.01))
        reports, skips = [], []
        policy = CheckpointPolicy(every_chunks=1, budget_mbps=1.0)
        writer = CheckpointWriter(
            keeper, audio_log, policy, Backoff(), 0, reports.append, CHUNK_S, lambda: skips.append(1)
        )
        loop = asyncio.get_running_loop()

        def pending(chunk: int) -> PendingCheckpoint:
            done = loop.create_future()
            done.set_result(b"")
            rank0, rank1 = {"memory.x": torch.zeros(500_000)}, {"memory.x": torch.zeros(250_000)}  # 2 MB, 1 MB

            async def rank1_writes():  # what a worker rank does in its own process (liveact.parallel.part_writer)
                return [await store.write_rank("writer-budget", rank1)]

            dit = DitSnapshot(Captured(rank0, None, 0.004), ranks=2, stall_s=0.005, collect=rank1_writes)
            return PendingCheckpoint(
                id=chunk, chunk_index=chunk, next_frame=0, dit=dit, rows_first=0, rows=[], audio=AudioPosition(),
                audio_total=0, frame_offset=0, row_offset=0, encoder_state=done, decoder_state=done,
                collecting_rows=False,
            )  # fmt: skip

        async def written(version, p, report):
            pass

        async def fenced(exc):
            raise AssertionError(exc)

        assert writer.due(1)
        writer.start(pending(1), written, fenced)
        assert not writer.due(2) and not writer.due(3)  # in flight: one skip for the stretch
        await writer.settled()
        assert (writer.skipped, len(skips)) == (1, 1)
        (report,) = reports
        assert (report.bytes_per_rank, report.bytes_total, report.skipped) == (2_000_000, 3_000_000, 1)
        assert report.stall_s == 0.005  # the longest rank's capture
        assert (report.written_per_rank, report.written_total) == (2_000_000, 3_000_000)  # the first: all sent
        assert report.replay_s == pytest.approx(2.0, abs=0.01)  # the budget, longer than one chunk (1.6 s)
        assert not writer.due(5)  # the budget: 2 MB at 1 MB/s
        writer.last_time = time.monotonic() - 2.01
        assert writer.due(5)
        writer.start(pending(5), written, fenced)  # the same tensors again: Redis holds every part
        await writer.settled()
        again = reports[-1]
        assert (again.bytes_per_rank, again.written_per_rank, again.written_total) == (2_000_000, 0, 0)
        assert again.replay_s == pytest.approx(CHUNK_S) and writer.due(6)  # nothing sent: the budget does not bind
        await store.close()

    asyncio.run(main())


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
