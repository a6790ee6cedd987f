"""SessionStore against a real redis-server of its own (tests/redis_server.py): records, fencing,
checkpoints (parts, GC, corruption fallback, half-written commits), audio log, TTLs, auth, outages."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis
import torch
from helpers import checkpoint_meta, session_info
from redis_server import RedisServer, make_tls_files, require_redis_server

from liveact.state import (
    AudioOrderError,
    BadSecret,
    CheckpointCorrupt,
    CheckpointMissing,
    FencedError,
    SessionExists,
    SessionNotFound,
    StoreUnavailable,
    UnsupportedFormat,
)
from liveact.state import store as store_module
from liveact.state.schema import layout_group
from liveact.state.settings import StoreSettings
from liveact.state.store import SessionStore

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

KIB = 1024
SMALL_PART = 4 * KIB
OP_TIMEOUT_S = 2.0
SECRET = "s3cr3t-resume-token-5f1e0c2a9b"
SID = "sess-1"


@pytest.fixture
def server(redis: RedisServer) -> RedisServer:
    """conftest's private redis-server for this module, emptied for each test (``redis`` here is the fixture)."""
    sync(redis).flushall()
    return redis


def sync(server: RedisServer, password: str | None = None) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, password=password or server.password)


def run(coro):
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def open_store(server: RedisServer, **kw) -> AsyncIterator[SessionStore]:
    kw.setdefault("op_timeout_s", OP_TIMEOUT_S)
    store = SessionStore(StoreSettings(url=server.url, **kw))
    try:
        yield store
    finally:
        await store.close()


def tensors(seed: int, numel: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "kv": torch.randn(numel, generator=g).to(torch.bfloat16),
        "kv_fp8": torch.randn(2, numel, generator=g).to(torch.float8_e4m3fn),
        "scales": torch.rand(4, generator=g),
        "chunk": torch.tensor([seed], dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
    }


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Same names, dtypes, shapes and bytes."""
    assert sorted(a) == sorted(b)
    for name in a:
        assert (a[name].dtype, a[name].shape) == (b[name].dtype, b[name].shape), name
        assert torch.equal(a[name].reshape(-1).view(torch.uint8), b[name].reshape(-1).view(torch.uint8)), name


def all_keys(r: redis.Redis) -> list[str]:
    return sorted(k.decode() for k in r.scan_iter(count=1000))


def part_keys(r: redis.Redis, sid: str = SID) -> list[str]:
    return sorted(k.decode() for k in r.scan_iter(match=f"liveact:part:{sid}:*", count=1000))


def manifest_parts(r: redis.Redis, index: int, sid: str = SID) -> dict[str, list[str]]:
    """History entry ``index``'s part keys by stream, named by its first tensor (rank 0 and on), from its JSON.
    Tensors of their own storage (all of ``tensors``') are streams of their own."""
    manifest = json.loads(r.lindex(f"{{liveact:{sid}}}:history", index))
    out: dict[str, list[str]] = {}
    for rank in manifest["shards"]:
        for st in rank:
            name = st["tensors"][0]["name"]
            out.setdefault(name, []).extend(f"liveact:part:{sid}:{p['sha256']}" for p in st["parts"])
    return out


def referenced(r: redis.Redis, sid: str = SID) -> set[str]:
    """Every part key the session's kept manifests reference."""
    n = r.llen(f"{{liveact:{sid}}}:history")
    return {key for i in range(n) for keys in manifest_parts(r, i, sid).values() for key in keys}


async def new_session(store: SessionStore, sid: str = SID, owner: str = "gen-a"):
    await store.create_session(sid, SECRET, session_info(fps=25.0))
    return await store.acquire(sid, owner)


# -- checkpoints -------------------------------------------------------------------------------


def test_write_then_read_returns_identical_tensors_and_meta(server):
    async def main():
        async with open_store(server) as store:
            lease = await new_session(store)
            with pytest.raises(CheckpointMissing):
                await store.read_checkpoint(SID)
            meta = checkpoint_meta(12)
            version = (await store.write_checkpoint(lease, meta, [tensors(1)])).version
            ckpt = await store.read_checkpoint(SID)
            assert (ckpt.version, ckpt.meta, ckpt.token, ckpt.failed) == (version, meta, lease.token, [])
            assert len(ckpt.shards) == 1
            assert_same(ckpt.shards[0], tensors(1))
            v2 = (await store.write_checkpoint(lease, checkpoint_meta(13), [tensors(2)])).version
            assert v2 > version
            ckpt = await store.read_checkpoint(SID)
            assert ckpt.version == v2 and ckpt.meta == checkpoint_meta(13)
            assert_same(ckpt.shards[0], tensors(2))

    run(main())


def test_multipart_checkpoint_round_trips_and_no_value_exceeds_part_bytes(server):
    async def main():
        async with open_store(server, part_bytes=SMALL_PART) as store:
            lease = await new_session(store)
            big = tensors(3, numel=20 * KIB)  # ~60 KiB packed
            await store.write_checkpoint(lease, checkpoint_meta(1), [big])
            ckpt = await store.read_checkpoint(SID)
            assert_same(ckpt.shards[0], big)

    run(main())
    r = sync(server)
    parts = part_keys(r)
    assert len(parts) > 10
    for key in all_keys(r):
        if r.type(key) == b"string":
            assert r.strlen(key) <= SMALL_PART, key


def test_two_ranks_round_trip(server):
    async def main():
        async with open_store(server, part_bytes=SMALL_PART) as store:
            lease = await new_session(store)
            shards = [tensors(10, numel=3 * KIB), tensors(11, numel=5)]
            await store.write_checkpoint(lease, checkpoint_meta(tp=2), shards)
            ckpt = await store.read_checkpoint(SID)
            assert len(ckpt.shards) == 2
            assert_same(ckpt.shards[0], shards[0])
            assert_same(ckpt.shards[1], shards[1])

    run(main())
    r = sync(server)
    for key in part_keys(r):  # liveact:part:S:<sha256 of the value>
        assert hashlib.sha256(r.get(key)).hexdigest() == key.rsplit(":", 1)[1]
    assert len(manifest_parts(r, 0)["kv"]) == 2 * len(tensors(10, numel=3 * KIB)["kv"].view(torch.uint8)) // SMALL_PART


def shared_and_changing(n: int) -> dict[str, torch.Tensor]:
    """A checkpoint like a session's: ``sink`` and ``cond`` fixed after version 0, the rest changing."""
    fixed = tensors(1000, numel=3 * KIB)
    return {**tensors(n, numel=3 * KIB), "sink": fixed["kv"], "cond": fixed["scales"]}


def test_later_versions_send_only_what_changed_and_gc_keeps_shared_parts(server):
    async def main():
        async with open_store(server, part_bytes=SMALL_PART, keep_versions=2) as store:
            lease = await new_session(store)
            writes = [
                await store.write_checkpoint(lease, checkpoint_meta(n), [shared_and_changing(n)]) for n in range(5)
            ]
            ckpt = await store.read_checkpoint(SID)
            assert ckpt.version == writes[-1].version and ckpt.meta == checkpoint_meta(4)
            assert_same(ckpt.shards[0], shared_and_changing(4))
            return writes

    writes = run(main())
    fixed = sum(shared_and_changing(0)[n].nbytes for n in ("sink", "cond", "mask", "empty"))  # alike in every version
    first, *later = [w.ranks[0] for w in writes]
    assert first.bytes_written == first.bytes == sum(t.nbytes for t in shared_and_changing(0).values())
    for w in later:  # the fixed tensors are refreshed, not sent again
        assert (w.bytes, w.bytes_written) == (first.bytes, first.bytes - fixed)
    r = sync(server)
    history = [json.loads(m)["version"] for m in r.lrange("{liveact:sess-1}:history", 0, -1)]
    assert history == [w.version for w in writes][:-3:-1]  # newest first, two kept
    newest, previous = manifest_parts(r, 0), manifest_parts(r, 1)
    assert newest["sink"] == previous["sink"] and newest["kv"] != previous["kv"]
    assert set(part_keys(r)) == referenced(r)  # dropped versions' own parts collected, shared ones kept
    assert all(0 < r.pttl(k) <= 3600 * 1000 for k in part_keys(r))


def test_a_shared_part_missing_fails_every_version_naming_the_tensor(server):
    async def main():
        async with open_store(server, part_bytes=SMALL_PART) as store:
            lease = await new_session(store)
            for n in range(2):
                await store.write_checkpoint(lease, checkpoint_meta(n), [shared_and_changing(n)])

    run(main())
    r = sync(server)
    r.delete(manifest_parts(r, 0)["sink"][1])
    with pytest.raises(CheckpointCorrupt) as err:
        run(_read(server))
    assert str(err.value).count("part 1 of tensor 'sink' is missing") == 2, str(err.value)


def rank_state(rank: int, version: int) -> dict[str, torch.Tensor]:
    """A rank's sampler state as a session's: the conditioning alike on every rank and version, the sink slots
    the rank's own and fixed, the rest new in every version (``layout_group`` tells them apart by name)."""
    g = torch.Generator().manual_seed(100 * rank + version)
    fixed = torch.Generator().manual_seed(rank)
    cond = torch.Generator().manual_seed(7)
    return {
        "cond.context": torch.randn(9 * KIB, generator=cond), "cond.y": torch.randn(3, 5, generator=cond),
        **{f"memory.step0.layer{i}.sink.k": torch.randn(KIB + i, generator=fixed).to(torch.bfloat16) for i in range(4)},
        **{f"memory.step0.layer{i}.k": torch.randn(3 * KIB + i, generator=g).to(torch.bfloat16) for i in range(4)},
        "memory.chunks_written": torch.tensor(version), "noise.state": torch.randint(0, 255, (816,), dtype=torch.uint8,
                                                                                     generator=g),
    }  # fmt: skip


def test_a_captured_rank_is_three_streams_and_unchanged_ones_are_shared_between_versions_and_ranks(server):
    """What the generator writes (StateCapture's buffers, one per layout group): 3 streams per rank, each cut into
    parts of part_bytes; from the second version on only the changing stream is sent; the conditioning's parts are
    the same on both ranks; every tensor reads back exactly."""
    from liveact.sampling.capture import StateCapture
    from liveact.state.schema import with_dit_prefix

    captures = [StateCapture(), StateCapture()]

    async def main():
        async with open_store(server, part_bytes=SMALL_PART, keep_versions=2) as store:
            lease = await new_session(store)
            writes = []
            for version in range(3):
                shards = [with_dit_prefix(c.capture_views(rank_state(r, version)).tensors)
                          for r, c in enumerate(captures)]  # fmt: skip
                writes.append(await store.write_checkpoint(lease, checkpoint_meta(version, tp=2), shards))
            ckpt = await store.read_checkpoint(SID)
            for r in range(2):
                assert_same(ckpt.shards[r], with_dit_prefix(rank_state(r, 2)))
            return writes

    writes = run(main())
    first, *later = writes
    groups = {"cond": 2, "sink": 4, "state": 6}  # tensors per layout group
    for rank in first.ranks:
        assert {layout_group(st.tensors[0].name.removeprefix("dit.")): len(st.tensors) for st in rank.table} == groups
        assert rank.parts == sum(len(st.parts) for st in rank.table) < 3 + rank.bytes // (SMALL_PART - 10) + 1
    sizes = {layout_group(st.tensors[0].name.removeprefix("dit.")): st.nbytes for st in first.ranks[0].table}
    assert first.ranks[0].bytes_written == first.ranks[0].bytes
    assert first.ranks[1].bytes_written == first.ranks[1].bytes - sizes["cond"]  # rank 0 sent the conditioning
    for w in later:
        assert [r.bytes_written for r in w.ranks] == [sizes["state"]] * 2
    r = sync(server)
    newest = json.loads(r.lindex(f"{{liveact:{SID}}}:history", 0))
    cond_parts = [[p["sha256"] for p in rank[0]["parts"]] for rank in newest["shards"]]  # cond.* sorts first
    assert cond_parts[0] == cond_parts[1]
    assert set(part_keys(r)) == referenced(r)


def test_renewals_refresh_the_parts_once_per_quarter_ttl_and_none_expires(server):
    """A session renewed every 0.1 s with no checkpoint for 3 TTLs: the small keys are refreshed at every
    renewal, the parts (hundreds of keys at real size) once per session_ttl_s / 4, and none of them expires."""
    ttl_s, renew_s = 1.2, 0.1

    async def main():
        async with open_store(server, session_ttl_s=ttl_s, lease_ttl_s=0.5, part_bytes=SMALL_PART) as store:
            lease = await new_session(store)
            await store.write_checkpoint(lease, checkpoint_meta(1), [shared_and_changing(1)])
            parts = len(part_keys(sync(server)))
            await store.renew(lease)  # the first renewal touches the parts
            sync(server).config_resetstat()
            await store.renew(lease)  # the next one does not: what a renewal costs without them
            small = _pexpires(sync(server))
            sync(server).config_resetstat()
            renewals = 0
            end = time.monotonic() + 3 * ttl_s
            while time.monotonic() < end:
                await store.renew(lease)
                renewals += 1
                await asyncio.sleep(renew_s)
            assert_same((await store.read_checkpoint(SID)).shards[0], shared_and_changing(1))
            return parts, renewals, small

    parts, renewals, small = run(main())
    touches = _pexpires(sync(server)) - renewals * small
    assert renewals >= 20 and parts >= 5 and small >= 1
    assert touches % parts == 0 and 3 * 4 - 1 <= touches // parts <= 3 * 4 + 1, (touches, parts, renewals, small)


def _pexpires(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_pexpire", {}).get("calls", 0))


# -- fencing -----------------------------------------------------------------------------------


def test_a_superseded_owner_is_fenced_everywhere(server):
    async def main():
        async with open_store(server, part_bytes=SMALL_PART) as store:
            a = await new_session(store, owner="gen-a")
            await store.write_checkpoint(a, checkpoint_meta(1), [tensors(1)])
            await store.append_audio(a, 0, b"a0")
            b = await store.acquire(SID, "gen-b")
            assert b.token > a.token
            before = part_keys(sync(server))
            with pytest.raises(FencedError):
                await store.write_checkpoint(a, checkpoint_meta(2), [tensors(2)])
            assert part_keys(sync(server)) == before  # refused before any part was written
            with pytest.raises(FencedError):
                await store.append_audio(a, 1, b"a1")
            with pytest.raises(FencedError):
                await store.renew(a)
            assert await store.release(a) is False  # not a's lease any more
            assert (await store.read_checkpoint(SID)).meta == checkpoint_meta(1)
            await store.append_audio(b, 1, b"b1")
            await store.renew(b)
            await store.write_checkpoint(b, checkpoint_meta(3), [tensors(3)])
            assert (await store.read_checkpoint(SID)).meta == checkpoint_meta(3)
            assert await store.read_audio(SID) == [(0, b"a0"), (1, b"b1")]

    run(main())


def test_takeover_during_a_write_refuses_the_commit_and_removes_its_parts(server):
    async def main():
        async with open_store(server, part_bytes=SMALL_PART) as store:
            a = await new_session(store, owner="gen-a")
            await store.write_checkpoint(a, checkpoint_meta(1), [tensors(1, numel=3 * KIB)])
            real_write = store.parts.write
            taken: list = []

            async def write_then_lose_the_lease(parts):
                await real_write(parts)
                assert len(part_keys(sync(server))) > len(parts)  # a's new parts are there
                taken.append(await store.acquire(SID, "gen-b"))

            store.parts.write = write_then_lose_the_lease
            with pytest.raises(FencedError):
                await store.write_checkpoint(a, checkpoint_meta(2), [tensors(2, numel=3 * KIB)])
            store.parts.write = real_write
            assert taken
            ckpt = await store.read_checkpoint(SID)
            assert ckpt.meta == checkpoint_meta(1) and ckpt.version == 1

    run(main())
    assert set(part_keys(sync(server))) == referenced(sync(server))  # the refused version's own parts are gone


def test_renew_restores_an_expired_lease_only_if_nobody_took_over(server):
    async def main():
        async with open_store(server, lease_ttl_s=0.2) as store:
            a = await new_session(store)
            await asyncio.sleep(0.35)
            with pytest.raises(FencedError, match="expired"):
                await store.append_audio(a, 0, b"x")  # writes need a live lease
            await store.renew(a)  # nobody acquired since: restored with the same token
            await store.append_audio(a, 0, b"x")
            assert await store.release(a) is True
            with pytest.raises(FencedError):
                await store.write_checkpoint(a, checkpoint_meta(), [tensors(1)])
            b = await store.acquire(SID, "gen-b")
            await asyncio.sleep(0.35)
            with pytest.raises(FencedError):
                await store.renew(a)  # b acquired after a: a's token is dead for good
            await store.renew(b)

    run(main())


# -- corruption and half-written checkpoints ---------------------------------------------------


def _two_versions(server: RedisServer) -> tuple[int, int]:
    async def main():
        async with open_store(server, part_bytes=SMALL_PART) as store:
            lease = await new_session(store)
            v1 = await store.write_checkpoint(lease, checkpoint_meta(1), [tensors(1, numel=3 * KIB)])
            v2 = await store.write_checkpoint(lease, checkpoint_meta(2), [tensors(2, numel=3 * KIB)])
            return v1.version, v2.version

    return run(main())


async def _read(server: RedisServer):
    async with open_store(server, part_bytes=SMALL_PART) as store:
        return await store.read_checkpoint(SID)


def test_a_corrupt_newest_part_falls_back_to_the_previous_version(server, caplog):
    v1, v2 = _two_versions(server)
    r = sync(server)
    victim = manifest_parts(r, 0)["kv"][1]
    r.set(victim, b"\xff" * r.strlen(victim), keepttl=True)  # same size: only the digest tells
    with caplog.at_level(logging.WARNING, logger="liveact.state.store"):
        ckpt = run(_read(server))
    assert ckpt.version == v1 and ckpt.meta == checkpoint_meta(1)
    assert_same(ckpt.shards[0], tensors(1, numel=3 * KIB))
    assert any(f"version {v2}" in f and "sha256" in f for f in ckpt.failed), ckpt.failed
    assert any("newer failed" in rec.getMessage() for rec in caplog.records)

    r.set(manifest_parts(r, 1)["kv"][0], b"garbage")
    with pytest.raises(CheckpointCorrupt) as err:
        run(_read(server))
    assert f"version {v1}" in str(err.value) and f"version {v2}" in str(err.value)


def test_a_missing_part_falls_back(server):
    v1, _ = _two_versions(server)
    r = sync(server)
    r.delete(manifest_parts(r, 0)["kv_fp8"][-1])
    ckpt = run(_read(server))
    assert ckpt.version == v1 and "missing" in ckpt.failed[0]


def test_a_manifest_of_another_format_is_a_clear_error(server):
    _two_versions(server)
    r = sync(server)
    manifest = json.loads(r.lindex("{liveact:sess-1}:history", 0))
    manifest["format"] = 99
    r.lset("{liveact:sess-1}:history", 0, json.dumps(manifest))
    with pytest.raises(UnsupportedFormat, match="format 99"):
        run(_read(server))


def test_a_writer_that_never_committed_is_invisible_and_its_parts_expire(server):
    async def main():
        async with open_store(server, part_bytes=SMALL_PART) as store:
            lease = await new_session(store)
            v1 = (await store.write_checkpoint(lease, checkpoint_meta(1), [tensors(1, numel=3 * KIB)])).version

            async def crash(*args, **kwargs):  # the writer dies after its parts, before the commit
                raise redis.exceptions.ConnectionError("connection lost")

            store._commit = crash
            with pytest.raises(StoreUnavailable):
                await store.write_checkpoint(lease, checkpoint_meta(2), [tensors(2, numel=3 * KIB)])
            return v1

    v1 = run(main())
    r = sync(server)
    orphans = set(part_keys(r)) - referenced(r)
    assert orphans  # written, never referenced
    assert all(0 < r.pttl(k) <= 3600 * 1000 for k in orphans)
    ckpt = run(_read(server))
    assert ckpt.version == v1 and ckpt.meta == checkpoint_meta(1) and ckpt.failed == []


# -- audio log ---------------------------------------------------------------------------------


def test_audio_log_appends_trims_at_commit_and_refuses_old_seqs(server, monkeypatch):
    monkeypatch.setattr(store_module, "AUDIO_PAGE", 3)  # exercise paging

    async def main():
        async with open_store(server) as store:
            lease = await new_session(store)
            assert await store.last_audio_seq(SID) is None
            for seq in range(10):
                await store.append_audio(lease, seq, bytes([seq]) * 4)
            assert await store.read_audio(SID) == [(s, bytes([s]) * 4) for s in range(10)]
            await store.write_checkpoint(lease, checkpoint_meta(3, audio_seq=6), [tensors(1)])
            assert [s for s, _ in await store.read_audio(SID)] == [6, 7, 8, 9]
            assert await store.read_audio(SID, from_seq=7) == [(s, bytes([s]) * 4) for s in (7, 8, 9)]
            assert await store.read_audio(SID, from_seq=10) == []
            for bad in (9, 3, 0):
                with pytest.raises(AudioOrderError, match="not after the last logged seq"):
                    await store.append_audio(lease, bad, b"dup")
            assert await store.last_audio_seq(SID) == 9
            await store.write_checkpoint(lease, checkpoint_meta(audio_seq=10), [tensors(2)])
            assert await store.read_audio(SID) == []
            assert await store.last_audio_seq(SID) == 9  # remembered after the trim
            await store.append_audio(lease, 10, b"next")
            assert await store.read_audio(SID) == [(10, b"next")]
            with pytest.raises(ValueError):
                await store.append_audio(lease, -1, b"")

    run(main())


# -- TTLs --------------------------------------------------------------------------------------


def test_an_idle_session_expires(server):
    async def main():
        async with open_store(server, session_ttl_s=1.0, lease_ttl_s=0.5, part_bytes=SMALL_PART) as store:
            lease = await new_session(store)
            await store.append_audio(lease, 0, b"pcm")
            await store.write_checkpoint(lease, checkpoint_meta(audio_seq=0), [tensors(1, numel=3 * KIB)])

    run(main())
    r = sync(server)
    assert len(all_keys(r)) > 5
    deadline = time.monotonic() + 3.0
    while all_keys(r) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all_keys(r) == []


def test_renew_and_append_refresh_ttls(server):
    ttl_ms = 2000

    async def main():
        async with open_store(server, session_ttl_s=ttl_ms / 1000, lease_ttl_s=1.0, part_bytes=SMALL_PART) as store:
            lease = await new_session(store)
            await store.append_audio(lease, 0, b"pcm")
            await store.write_checkpoint(lease, checkpoint_meta(), [tensors(1, numel=3 * KIB)])
            r = sync(server)
            session_keys = [k for k in all_keys(r) if not k.endswith(":lease")]
            await asyncio.sleep(0.7)
            assert all(r.pttl(k) < ttl_ms - 500 for k in session_keys)
            await store.renew(lease)
            assert all(r.pttl(k) > ttl_ms - 300 for k in session_keys), {k: r.pttl(k) for k in session_keys}
            assert 0 < r.pttl("{liveact:sess-1}:lease") <= 1000
            await asyncio.sleep(0.7)
            await store.append_audio(lease, 1, b"pcm")
            tagged = [k for k in session_keys if k.startswith("{")]
            assert all(r.pttl(k) > ttl_ms - 300 for k in tagged)

    run(main())


# -- secret, ids, deletion ---------------------------------------------------------------------


def test_resume_secret_is_checked_and_never_stored(server):
    async def main():
        async with open_store(server) as store:
            lease = await new_session(store)
            await store.append_audio(lease, 0, b"pcm")
            await store.write_checkpoint(lease, checkpoint_meta(0), [tensors(1)])
            assert await store.check_secret(SID, SECRET) == session_info(fps=25.0)
            with pytest.raises(BadSecret):
                await store.check_secret(SID, SECRET + "x")
            with pytest.raises(BadSecret):
                await store.check_secret(SID, "")
            with pytest.raises(SessionNotFound):
                await store.check_secret("nobody", SECRET)
            with pytest.raises(SessionNotFound):
                await store.acquire("nobody", "gen-a")
            with pytest.raises(SessionExists):
                await store.create_session(SID, "other", session_info())
            with pytest.raises(ValueError):
                await store.create_session("x", "", session_info())

    run(main())
    r = sync(server)
    values = b""
    for key in all_keys(r):
        kind = r.type(key)
        if kind == b"string":
            values += r.get(key)
        elif kind == b"hash":
            values += b"".join(k + v for k, v in r.hgetall(key).items())
        elif kind == b"list":
            values += b"".join(r.lrange(key, 0, -1))
        elif kind == b"stream":
            values += b"".join(b"".join(f) for _, e in r.xrange(key) for f in e.items())
    assert values and SECRET.encode() not in values


@pytest.mark.parametrize("bad", ["", "a b", "a{b}", "a:b", "x" * 129, "é"])
def test_bad_session_ids_are_refused(server, bad):
    async def main():
        async with open_store(server) as store:
            with pytest.raises(ValueError, match="session id"):
                await store.create_session(bad, SECRET, session_info())

    run(main())


def test_delete_session_removes_every_key(server):
    async def main():
        async with open_store(server, part_bytes=SMALL_PART) as store:
            lease = await new_session(store)
            await store.create_session("other", SECRET, session_info())
            await store.append_audio(lease, 0, b"pcm")
            for n in range(2):
                await store.write_checkpoint(lease, checkpoint_meta(n), [tensors(n, numel=3 * KIB)])
            await store.delete_session(SID)
            with pytest.raises(SessionNotFound):
                await store.check_secret(SID, SECRET)
            with pytest.raises(CheckpointMissing):
                await store.read_checkpoint(SID)

    run(main())
    assert all_keys(sync(server)) == ["{liveact:other}:record"]


def test_sessions_checkpoint_concurrently_through_one_store(server):
    async def one(store: SessionStore, sid: str, seed: int):
        lease = await new_session(store, sid)
        for n in range(3):
            await store.write_checkpoint(lease, checkpoint_meta(n), [tensors(seed + n, numel=KIB)])
        return await store.read_checkpoint(sid)

    async def main():
        async with open_store(server, part_bytes=SMALL_PART) as store:
            got = await asyncio.gather(*(one(store, f"s{i}", 10 * i) for i in range(4)))
            for i, ckpt in enumerate(got):
                assert ckpt.meta == checkpoint_meta(2)
                assert_same(ckpt.shards[0], tensors(10 * i + 2, numel=KIB))

    run(main())


# -- authentication and outages ----------------------------------------------------------------


def test_password_protected_redis():
    require_redis_server()
    server = RedisServer(password="right-pw")
    try:

        async def main():
            for password in ("wrong-pw", None):
                async with open_store(server, password=password) as store:
                    with pytest.raises(StoreUnavailable, match="credentials"):
                        await store.create_session(SID, SECRET, session_info())
            async with open_store(server, password="right-pw") as store:
                lease = await new_session(store)
                await store.write_checkpoint(lease, checkpoint_meta(7), [tensors(1)])
                assert (await store.read_checkpoint(SID)).meta == checkpoint_meta(7)

        run(main())
    finally:
        server.close()


def test_redis_down_raises_store_unavailable_promptly_and_recovers():
    require_redis_server()
    server = RedisServer()
    try:

        async def main():
            async with open_store(server) as store:
                lease = await new_session(store)
                await store.write_checkpoint(lease, checkpoint_meta(1), [tensors(1)])
                server.kill()
                for call in (
                    store.write_checkpoint(lease, checkpoint_meta(2), [tensors(2)]),
                    store.read_checkpoint(SID),
                    store.append_audio(lease, 0, b"x"),
                    store.renew(lease),
                    store.ping(),
                ):
                    start = time.monotonic()
                    with pytest.raises(StoreUnavailable, match="unavailable"):
                        await call
                    assert time.monotonic() - start < OP_TIMEOUT_S
                server.restart()  # same port, empty
                await store.ping()
                with pytest.raises(SessionNotFound):
                    await store.acquire(SID, "gen-a")
                lease = await new_session(store)
                await store.write_checkpoint(lease, checkpoint_meta(3), [tensors(3)])
                assert (await store.read_checkpoint(SID)).meta == checkpoint_meta(3)

        run(main())
    finally:
        server.close()


def test_tls_with_a_client_certificate(tmp_path):
    require_redis_server()
    files = make_tls_files(tmp_path)
    server = RedisServer(tls=files)
    try:

        async def main():
            mutual = {"tls_ca_file": files.ca, "tls_cert_file": files.client_cert, "tls_key_file": files.client_key}
            async with open_store(server, tls=True, **mutual) as store:
                lease = await new_session(store)
                await store.write_checkpoint(lease, checkpoint_meta(8), [tensors(1)])
                assert (await store.read_checkpoint(SID)).meta == checkpoint_meta(8)
            for refused in ({}, {"tls": True, "tls_ca_file": files.ca}):  # plain text; TLS without a client cert
                async with open_store(server, **refused) as store:
                    with pytest.raises(StoreUnavailable):
                        await store.ping()

        run(main())
    finally:
        server.close()


def test_reinstate_after_redis_lost_the_session_keeps_tokens_monotonic(server):
    async def main():
        async with open_store(server, part_bytes=SMALL_PART) as store:
            a = await new_session(store, owner="gen-a")
            b = await store.acquire(SID, "gen-b")
            sync(server).flushall()  # a restart without persistence
            with pytest.raises(FencedError):
                await store.write_checkpoint(b, checkpoint_meta(3), [tensors(1)])
            await store.reinstate(a, SECRET, session_info(seed=1))  # the stale owner comes first: allowed (fence empty)
            await store.reinstate(b, SECRET, session_info(seed=1))  # the newer token wins
            with pytest.raises(FencedError):
                await store.reinstate(a, SECRET, session_info(seed=1))  # now older than the fence
            with pytest.raises(FencedError):
                await store.append_audio(a, 0, b"a0")
            await store.append_audio(b, 0, b"b0")
            again = await store.write_checkpoint(b, checkpoint_meta(3), [tensors(2)])
            assert again.version == 1  # versions start again
            assert (await store.read_checkpoint(SID)).meta == checkpoint_meta(3)
            assert await store.check_secret(SID, SECRET) == session_info(seed=1)

    run(main())


def test_truncate_audio_drops_the_tail_so_it_can_be_logged_again(server):
    async def main():
        async with open_store(server) as store:
            lease = await new_session(store)
            for seq in (0, 1, 2, 4, 5):  # 3 never made it
                await store.append_audio(lease, seq, b"x%d" % seq)
            assert await store.truncate_audio(lease, 3) == 2
            assert [s for s, _ in await store.read_audio(SID)] == [0, 1, 2]
            await store.append_audio(lease, 3, b"again")
            with pytest.raises(AudioOrderError):
                await store.append_audio(lease, 3, b"twice")
            assert await store.read_audio(SID, 3) == [(3, b"again")]
            other = await store.acquire(SID, "gen-b")
            with pytest.raises(FencedError):
                await store.truncate_audio(lease, 0)
            assert await store.truncate_audio(other, 0) == 4

    run(main())


def test_parts_cost_redis_what_the_memory_model_says_and_no_part_lands_a_size_class_up(server):
    """MEMORY USAGE of every part equals liveact.state.redis_memory's figure; 4 MiB parts are cut 10 bytes short (Redis'
    string header), so each costs 4 MiB (+ its key), not the 5 MiB class a value of exactly 4 MiB lands in; the tail
    of a tensor is cut into parts that fill their classes too."""
    from liveact.state.redis_memory import TAIL_BYTES, part_memory, size_class, tensor_memory

    mib = 1024 * KIB
    shards = [{"a": torch.zeros(3 * mib, dtype=torch.uint8) + 1, "b": torch.ones(1000, 7), "c": torch.tensor([3])}]

    async def main():
        async with open_store(server, part_bytes=4 * mib) as store:
            lease = await new_session(store)
            await store.write_checkpoint(lease, checkpoint_meta(1), shards)
            noise = torch.Generator().manual_seed(0)
            big = {"d": torch.randint(0, 256, (10 * mib,), dtype=torch.uint8, generator=noise)}
            await store.write_checkpoint(lease, checkpoint_meta(2), [big])
            return store.settings.cut_bytes

    cut = run(main())
    r = sync(server)
    assert cut == 4 * mib - 10
    usage = {k: r.memory_usage(k, samples=0) for k in part_keys(r)}
    sizes = {k: r.strlen(k) for k in usage}
    chars = len(part_keys(r)[0])
    assert all(usage[k] == part_memory(sizes[k], chars) for k in usage), [
        (sizes[k], usage[k], part_memory(sizes[k], chars)) for k in usage if usage[k] != part_memory(sizes[k], chars)
    ]
    assert sorted(sizes.values()).count(cut) == 2 and max(usage.values()) == part_memory(cut, chars) < 4 * mib + KIB
    assert size_class(4 * mib + 10) == 5 * mib  # what an uncut 4 MiB part would have cost
    large = [n for n in sizes.values() if n >= TAIL_BYTES]  # 3 MiB - 10, 2 x (4 MiB - 10), 2 MiB - 10
    assert sorted(large) == [2 * mib - 10, 3 * mib - 10, cut, cut]
    assert all(size_class(n + 10) == n + 10 for n in large)  # each fills its class: no slack
    tensors = [*shards[0].values(), torch.zeros(10 * mib, dtype=torch.uint8)]
    assert sum(usage.values()) == sum(tensor_memory(t.nbytes, cut, chars) for t in tensors)
