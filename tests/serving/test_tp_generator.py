"""``liveact serve generator --tp 2`` with real processes: rank 0 serving gRPC plus a worker rank on
gloo, a real redis-server, the audio encoder and decoder as separate processes.

Shown here: the TP=2 pod's video equals TP=1's within the fp32 tolerance of the sharded sum; its
checkpoints hold one shard per rank (half the heads each); kill -9 of rank 0 then an EXACT resume on
another TP=2 pod is bitwise, and on a TP=1 pod (re-sharded) within tolerance; a killed worker rank
turns the pod NOT_SERVING within seconds and ends it, and the session resumes elsewhere; a stopped
(hung) rank is caught by the operation timeout; a session idle for longer than that timeout is not;
nothing is left in /dev/shm.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from generator_helpers import (
    END,
    KILL_AFTER_VERSIONS,
    TONE,
    assert_versions_share_parts,
    audio,
    config,
    frames_of,
    raw_animate,
    session_sync,
    speech_clip,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from servers import service_process

from liveact.client.animate import AnimateResult
from liveact.config import get_preset
from liveact.parallel.shm import shm_buffers
from liveact.state.settings import StoreSettings
from liveact.state.store import SessionStore
from liveact.v1 import generator_pb2
from services.generator.server import EXIT_RANK_FAILED

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

SECONDS = 8  # 160 frames in 6 chunks
FRAMES = SECONDS * 20
TP_TIMEOUT_S = 4.0  # --tp-timeout-s of the pods here: a hang is declared after this
# TP=2 sums the row-parallel products in another order than TP=1 (latents differ by ~2e-6); after the
# VAE and rounding to uint8 a few pixels move by one level
PIXEL_TOLERANCE = 2
NOT_SERVING_WITHIN_S = 3.0  # a killed rank -> NOT_SERVING (checked every --tp-check-s 0.5 s)


@pytest.fixture(scope="module", autouse=True)
def no_shm_left():
    before = shm_buffers()
    yield
    assert shm_buffers() - before == set(), "tensor-parallel pods left /dev/shm all-reduce segments behind"


def generator(peers, redis, tp: int, *extra: str):
    enc, dec = peers
    return service_process(
        "generator", "--audio-encoder", enc, "--decoder", dec, "--redis-url", redis.url,
        "--checkpoint-every-chunks", "1", "--tp", str(tp), "--tp-threads", "1",
        "--tp-timeout-s", str(TP_TIMEOUT_S), *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_clip(SECONDS)


raw = raw_animate


@pytest.fixture(scope="module")
def runs(peers, redis, speech, image):
    """The same session, uninterrupted, on a TP=1 and a TP=2 pod; and the TP=2 run's checkpoint."""
    with generator(peers, redis, 1) as (gen1, _):
        tp1 = asyncio.run(raw(gen1, image, speech))
    with generator(peers, redis, 2) as (gen2, _):
        tp2 = asyncio.run(raw(gen2, image, speech))
    return tp1, tp2


def worker_pids(pid: int) -> list[int]:
    """The generator's child processes (its worker ranks)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:  # ppid
                out.append(int(entry.name))
    return out


def max_pixel_diff(got, want) -> int:
    assert [i for i, _ in got] == [i for i, _ in want]
    return max(int(np.abs(a.astype(int) - b.astype(int)).max()) for (_, a), (_, b) in zip(got, want, strict=True))


class HealthWatch:
    """Polls a server's overall health in a thread; records when it first stops being SERVING."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.changed_at: float | None = None
        self.status: str = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not self._stop.is_set():
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
                except grpc.RpcError:
                    name = "UNREACHABLE"
                if name != "SERVING" and self.changed_at is None:
                    self.changed_at, self.status = time.monotonic(), name
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_tp2_pod_matches_tp1_and_checkpoints_one_shard_per_rank(runs, redis):
    tp1, tp2 = runs
    assert tp1.end.frames == tp2.end.frames == FRAMES
    diff = max_pixel_diff(frames_of(tp2.chunks), frames_of(tp1.chunks))
    print(f"TP=2 vs TP=1: max pixel difference {diff}")
    assert diff <= PIXEL_TOLERANCE

    async def shards(sid):
        store = SessionStore(StoreSettings(url=redis.url))
        try:
            return (await store.read_checkpoint(sid)).shards
        finally:
            await store.close()

    one, two = asyncio.run(shards(tp1.header.session_id)), asyncio.run(shards(tp2.header.session_id))
    assert len(one) == 1 and len(two) == 2
    heads = get_preset("tiny").model.num_heads
    caches = [n for n in one[0] if n.startswith("dit.memory.") and n.endswith(".k")]
    assert caches
    for name in caches:  # (B, tokens, heads, head_dim): each rank holds half the heads
        assert one[0][name].shape[2] == heads
        assert two[0][name].shape[2] == two[1][name].shape[2] == heads // 2
    assert "audio.rows" in two[0] and "audio.rows" not in two[1]  # stream state once, on rank 0's shard


def kill_mid_session(target: str, pid: int, image, speech) -> AnimateResult:
    """Stream at real-time pace until 3 checkpoint versions arrived, then SIGKILL ``pid``; the partial result."""
    first = AnimateResult()

    def on_chunk(chunk):
        if len(first.checkpoints) >= KILL_AFTER_VERSIONS:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(raw(target, image, speech, on_chunk=on_chunk, result=first, realtime=True))
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL), err.value
    return first


def resume_on(target: str, first: AnimateResult, image, speech) -> list:
    got = frames_of(first.chunks)
    resume = generator_pb2.ResumeRequest(
        session_id=first.header.session_id, resume_secret=first.header.resume_secret, next_frame=len(got),
        mode=generator_pb2.ResumeRequest.EXACT,
    )  # fmt: skip
    second = asyncio.run(raw(target, image, speech, resume=resume))
    assert second.header.first_frame == len(got)
    got += frames_of(second.chunks)
    assert [i for i, _ in got] == list(range(FRAMES))  # none missing, none twice
    return got


def test_kill_9_rank_0_then_exact_resume_on_tp2_is_bitwise_and_on_tp1_within_tolerance(
    runs, peers, redis, speech, image
):
    _, tp2 = runs
    expected = frames_of(tp2.chunks)
    with generator(peers, redis, 2) as (gen_a, proc_a), generator(peers, redis, 2) as (gen_b, _):
        workers = worker_pids(proc_a.pid)
        assert len(workers) == 1
        first = kill_mid_session(gen_a, proc_a.pid, image, speech)
        assert proc_a.wait(timeout=10) == -signal.SIGKILL
        assert_versions_share_parts(redis.url, first.header.session_id)
        got = resume_on(gen_b, first, image, speech)
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)  # the orphaned worker rank dies with rank 0 (PR_SET_PDEATHSIG)
        assert not any(Path(f"/proc/{w}").exists() for w in workers)
    assert max_pixel_diff(got, expected) == 0  # TP=2 -> TP=2: bit for bit

    with generator(peers, redis, 2) as (gen_a, proc_a), generator(peers, redis, 1) as (gen_c, _):
        first = kill_mid_session(gen_a, proc_a.pid, image, speech)
        got = resume_on(gen_c, first, image, speech)  # TP=2 checkpoint re-sharded to TP=1
    diff = max_pixel_diff(got, expected)
    print(f"TP=2 checkpoint resumed at TP=1: max pixel difference {diff}")
    assert diff <= PIXEL_TOLERANCE


def test_killed_worker_rank_turns_the_pod_not_serving_and_the_session_resumes_elsewhere(
    runs, peers, redis, speech, image
):
    _, tp2 = runs
    with generator(peers, redis, 2) as (gen_a, proc_a), generator(peers, redis, 2) as (gen_b, _):
        (worker,) = worker_pids(proc_a.pid)
        watch = HealthWatch(gen_a)
        killed_at: list[float] = []
        first = AnimateResult()

        def on_chunk(chunk):
            if first.checkpoints and len(first.chunks) >= 3 and not killed_at:
                os.kill(worker, signal.SIGKILL)
                killed_at.append(time.monotonic())

        with pytest.raises(grpc.aio.AioRpcError) as err:
            asyncio.run(raw(gen_a, image, speech, realtime=True, on_chunk=on_chunk, result=first))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
        assert "tensor-parallel rank" in err.value.details() and "resume" in err.value.details()
        assert proc_a.wait(timeout=10) == EXIT_RANK_FAILED
        watch.stop()
        assert watch.changed_at is not None
        took = watch.changed_at - killed_at[0]
        print(f"worker rank killed -> health {watch.status} after {took:.2f} s")
        assert watch.status == "NOT_SERVING" and took < NOT_SERVING_WITHIN_S
        got = resume_on(gen_b, first, image, speech)
    assert max_pixel_diff(got, frames_of(tp2.chunks)) == 0


def test_a_hung_rank_is_caught_by_the_timeout_but_an_idle_session_is_not(peers, redis, speech, image):
    with generator(peers, redis, 2) as (gen, proc):
        (worker,) = worker_pids(proc.pid)

        def paused():
            """2 s of audio, a pause of 2 timeouts (nothing to compute: no collective runs), 2 s more."""
            yield config(seed=3)
            for seq in range(4):
                if seq == 2:
                    time.sleep(2 * TP_TIMEOUT_S)
                yield audio(seq, TONE)
            yield END

        frames, end = session_sync(gen, paused())
        assert frames == end.frames == 80
        time.sleep(2 * TP_TIMEOUT_S)  # an idle pod: only pings cross the links
        assert proc.poll() is None
        frames, end = session_sync(gen, [config(), audio(0, TONE), END])
        assert frames == 20

        watch = HealthWatch(gen)
        os.kill(worker, signal.SIGSTOP)  # a hung rank: alive, but answers nothing
        stopped_at = time.monotonic()
        try:
            assert proc.wait(timeout=4 * TP_TIMEOUT_S) == EXIT_RANK_FAILED
        finally:
            try:
                os.kill(worker, signal.SIGKILL)
            except ProcessLookupError:
                pass
        watch.stop()
        took = watch.changed_at - stopped_at
        print(f"worker rank stopped -> health {watch.status} after {took:.2f} s (timeout {TP_TIMEOUT_S} s)")
        assert took < 2 * TP_TIMEOUT_S


class PartWrites:
    """MONITOR on the session Redis: which client connection SET which checkpoint part (by key)."""

    def __init__(self, url: str) -> None:
        import redis as redis_client

        self.url = url
        self.by_key: dict[str, set[str]] = {}
        self._redis = redis_client.Redis.from_url(url, socket_timeout=None)  # MONITOR idles between writes
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        with self._redis.monitor() as m:
            self._ready.set()
            while not self._stop.is_set():
                cmd = m.next_command()
                words = cmd["command"].split(" ", 2)
                if words[0] == "SET" and words[1].startswith("liveact:part:"):
                    self.by_key.setdefault(words[1], set()).add(f"{cmd['client_address']}:{cmd['client_port']}")

    def stop(self) -> None:
        self._stop.set()
        self._redis.ping()  # wakes the monitor up
        self._thread.join(10)

    def names(self) -> dict[str, str]:
        """addr:port -> client name, of the connections open now."""
        return {c["addr"]: c["name"] for c in self._redis.client_list()}


def test_each_tp_rank_writes_its_own_parts_through_its_own_connection(peers, redis, speech, image):
    """rank 1's heads of the caches are SET by rank 1's connection ("...-rank1"), rank 0's by rank 0's; the
    manifest rank 0 committed lists both ranks' tensors, and nothing crossed the control link."""
    import json

    import redis as redis_client

    watch = PartWrites(redis.url)
    with generator(peers, redis, 2) as (gen, _):
        result = asyncio.run(raw(gen, image, speech))
        names = watch.names()
    watch.stop()
    assert result.checkpoints
    sid = result.header.session_id
    r = redis_client.Redis.from_url(redis.url)
    manifest = json.loads(r.lindex(f"{{liveact:{sid}}}:history", 0))
    assert len(manifest["shards"]) == 2

    def digests(rank: int) -> set[str]:
        return {p["sha256"] for st in manifest["shards"][rank] if any(".memory." in t["name"] for t in st["tensors"])
                for p in st["parts"]}  # fmt: skip

    own = {0: digests(0) - digests(1), 1: digests(1) - digests(0)}  # each rank's heads only
    assert own[0] and own[1]
    for rank, parts in own.items():
        writers = {names.get(addr, "?") for d in parts for addr in watch.by_key.get(f"liveact:part:{sid}:{d}", set())}
        assert writers and all(name.endswith(f"-rank{rank}") for name in writers), (rank, writers)
    assert {n for n in names.values() if n.endswith("-rank1")}, names  # the worker kept its own connection
