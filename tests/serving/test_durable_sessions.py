"""Durable sessions with real processes: a real redis-server, two generators, kill -9, exact resume."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import numpy as np
import pytest
from generator_helpers import (
    EXAMPLES,
    KILL_AFTER_VERSIONS,
    RATE,
    assert_versions_share_parts,
    frames_of,
    prometheus,
    raw_animate,
    scrape,
    speech_clip,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis_server import RedisClusterServers, RedisServer
from servers import service_process

from liveact.client import animate_resumable
from liveact.client.animate import AnimateResult
from liveact.config import get_preset
from liveact.launch import free_port
from liveact.sampling.chunking import plan_chunk, video_frames_per_chunk
from liveact.state.settings import StoreSettings
from liveact.state.store import SessionStore
from liveact.v1 import common_pb2, generator_pb2

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

SECONDS = 8  # 160 frames: chunks of 21, 32, 32, 32, 32, 32 frames
LONG_SECONDS = 12  # 240 frames in 8 chunks: a kill after the third version is mid-session
EVERY = 1  # checkpoint after every chunk
SESSION_BOUND_FACTOR = 6  # a real-time session of SECONDS ends well within 6x that, or it hangs


def generator(peers, redis, *extra):
    enc, dec = peers
    return service_process(
        "generator", "--audio-encoder", enc, "--decoder", dec, "--redis-url", redis.url,
        "--checkpoint-every-chunks", str(EVERY), *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_clip(SECONDS)


raw = raw_animate


async def stored_tensor(redis, session_id: str, name: str):
    store = SessionStore(StoreSettings(url=redis.url))
    try:
        return (await store.read_checkpoint(session_id)).shards[0][name]
    finally:
        await store.close()


@pytest.fixture(scope="module")
def long_speech() -> np.ndarray:
    return speech_clip(LONG_SECONDS)


@pytest.mark.parametrize("decode_mode", ["stream", "context"])
def test_kill_9_then_exact_resume_on_another_generator_is_bitwise(peers, redis, long_speech, image, decode_mode):
    mode, speech = ("--decode-mode", decode_mode), long_speech
    with generator(peers, redis, *mode) as (gen_a, _):
        reference = asyncio.run(raw(gen_a, image, speech))
    assert reference.end.frames == LONG_SECONDS * 20
    assert reference.checkpoints and reference.checkpoints[0].version == 1  # notices come in-band
    assert reference.checkpoints[0].session_id == reference.header.session_id
    # each notice says what an EXACT resume may replay and what the capture stalled; the end counts them all
    steady_chunk_s = video_frames_per_chunk(get_preset("tiny"), 1) / 20  # EVERY chunk: the replay bound
    assert all(c.replay_seconds == pytest.approx(EVERY * steady_chunk_s) for c in reference.checkpoints)
    assert all(c.stall_ms > 0 for c in reference.checkpoints)
    assert reference.end.checkpoints_written == len(reference.checkpoints)
    assert reference.end.checkpoints_skipped >= reference.checkpoints[-1].checkpoints_skipped
    expected = frames_of(reference.chunks)

    with generator(peers, redis, *mode) as (gen_a, proc_a), generator(peers, redis) as (gen_b, _):
        first = AnimateResult()  # gen_b runs the default mode: a resumed session keeps its own

        def on_chunk(chunk):
            if len(first.checkpoints) >= KILL_AFTER_VERSIONS:  # mid-session, after 3 versions and a GC
                os.kill(proc_a.pid, signal.SIGKILL)

        with pytest.raises(grpc.aio.AioRpcError) as err:  # at real-time pace: a checkpoint every chunk
            asyncio.run(raw(gen_a, image, speech, on_chunk=on_chunk, result=first, realtime=True))
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL), err.value
        assert proc_a.wait(timeout=10) == -signal.SIGKILL
        got = frames_of(first.chunks)
        assert 0 < len(got) < len(expected)
        assert_versions_share_parts(redis.url, first.header.session_id)

        resume = generator_pb2.ResumeRequest(
            session_id=first.header.session_id, resume_secret=first.header.resume_secret, next_frame=len(got),
            mode=generator_pb2.ResumeRequest.EXACT,
        )  # fmt: skip
        second = asyncio.run(raw(gen_b, image, speech, resume=resume))

    assert second.header.first_frame == len(got)
    assert second.header.session_id == first.header.session_id
    decoder_state = asyncio.run(stored_tensor(redis, first.header.session_id, "decoder.state"))
    # the session's own decode mode, kept across the resume (not gen_b's default): 3 latents vs the VAE cache
    small = 0 < decoder_state.numel() < 64 * 1024
    assert small == (decode_mode == "context"), decoder_state.numel()
    assert second.chunks[0].first_frame == len(got)  # no frame repeated
    got += frames_of(second.chunks)
    assert [i for i, _ in got] == list(range(LONG_SECONDS * 20))  # none missing, none twice
    for (i, frame), (_, want) in zip(got, expected, strict=True):
        assert np.array_equal(frame, want), f"frame {i} differs from the uninterrupted run"


def test_a_second_owner_fences_the_first(peers, redis, speech, image):
    """Resume a live session elsewhere: the old owner's next write is refused and its stream ABORTED."""
    with generator(peers, redis) as (gen_a, proc_a), generator(peers, redis) as (gen_b, _):

        async def both():
            first = AnimateResult()
            old = asyncio.ensure_future(raw(gen_a, image, speech, realtime=True, result=first))
            while not (first.checkpoints and first.chunks):
                await asyncio.sleep(0.02)
            resume = generator_pb2.ResumeRequest(
                session_id=first.header.session_id, resume_secret=first.header.resume_secret,
                next_frame=first.checkpoints[0].next_frame,
            )  # fmt: skip
            new = asyncio.ensure_future(raw(gen_b, image, speech, resume=resume))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await old
            return err.value, await new

        err, second = asyncio.run(both())
        assert proc_a.poll() is None  # the fenced session ended; generator A itself keeps serving
    assert err.code() == grpc.StatusCode.ABORTED, err
    assert "took this session over" in err.details()
    assert second.end is not None and second.end.frames == SECONDS * 20 - second.header.first_frame


def test_resume_refusals(peers, redis, speech, image):
    with generator(peers, redis) as (gen, _):
        done = asyncio.run(raw(gen, image, speech[: RATE * 3]))
        sid, secret = done.header.session_id, done.header.resume_secret
        first = done.checkpoints[0].next_frame

        def attempt(**kw):
            request = generator_pb2.ResumeRequest(**{"session_id": sid, "resume_secret": secret, **kw})
            with pytest.raises(grpc.aio.AioRpcError) as err:
                asyncio.run(raw(gen, image, speech, resume=request))
            return err.value.code(), err.value.details()

        assert attempt(session_id="nosuchsession")[0] == grpc.StatusCode.NOT_FOUND
        assert attempt(resume_secret="wrong")[0] == grpc.StatusCode.PERMISSION_DENIED
        code, details = attempt(next_frame=10_000)
        assert code == grpc.StatusCode.OUT_OF_RANGE and f"frames {first}..60" in details
        code, details = attempt(next_frame=first - 1)
        assert code == grpc.StatusCode.OUT_OF_RANGE

        # a resume of the finished session from its checkpoint sends exactly the frames after it
        again = asyncio.run(
            raw(gen, image, speech[: RATE * 3], resume=generator_pb2.ResumeRequest(
                session_id=sid, resume_secret=secret, next_frame=first + 5))
        )  # fmt: skip
        want = frames_of(done.chunks)[first + 5 :]
        got = frames_of(again.chunks)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, want, strict=True))


def test_damaged_checkpoints_are_data_loss(peers, redis, speech, image):
    import redis as redis_client

    with generator(peers, redis) as (gen, _):
        done = asyncio.run(raw(gen, image, speech[: RATE * 3]))
        sid = done.header.session_id
        r = redis_client.Redis.from_url(redis.url)
        parts = [k for k in r.scan_iter(match=f"liveact:part:{sid}:*")]
        assert parts
        for key in parts:
            r.setrange(key, 100, b"\x00garbage\x00")
        request = generator_pb2.ResumeRequest(
            session_id=sid, resume_secret=done.header.resume_secret, next_frame=done.checkpoints[0].next_frame
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            asyncio.run(raw(gen, image, speech, resume=request))
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert "no intact checkpoint" in err.value.details()


def health(target: str, name: str) -> int:
    with grpc.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service=name)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def wait_health(target: str, name: str, status: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while health(target, name) != status:
        assert time.monotonic() < deadline, f"{name} did not become {status} in {timeout_s} s"
        time.sleep(0.05)


def test_redis_killed_and_restarted_mid_session(peers, speech, image):
    """The session never stops, health says degraded, checkpoints come back with Redis, one resumes exactly."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    store_health = "liveact.v1.Generator.checkpoints"
    with RedisServer() as own_redis, generator(peers, own_redis, "--store-check-s", "0.1") as (gen, proc):
        wait_health(gen, store_health, serving)

        async def session():
            result = AnimateResult()
            task = asyncio.ensure_future(raw(gen, image, speech, realtime=True, result=result))
            while not result.checkpoints:
                await asyncio.sleep(0.02)
            own_redis.kill()
            outage_at = len(result.checkpoints)
            await asyncio.to_thread(wait_health, gen, store_health, not_serving)
            overall = await asyncio.to_thread(health, gen, "")
            await asyncio.sleep(0.5)
            own_redis.restart()  # empty: the session's record, lease and log are gone
            await asyncio.to_thread(wait_health, gen, store_health, serving)
            # bounded: once (1 run in about 5) the session never ended after Redis came back; fail, never hang CI
            await asyncio.wait_for(task, SECONDS * SESSION_BOUND_FACTOR)
            return result, outage_at, overall

        result, outage_at, overall = asyncio.run(session())
        assert overall == serving  # degraded, not down: the generator still takes sessions
        assert proc.poll() is None
        assert result.end is not None and result.end.frames == SECONDS * 20  # never stopped
        after = result.checkpoints[outage_at:]
        assert after, "no checkpoint after Redis came back"
        assert after[0].version == 1  # a fresh Redis: the session was put back, versions start again
        latest = after[-1]
        resume = generator_pb2.ResumeRequest(
            session_id=latest.session_id, resume_secret=latest.resume_secret, next_frame=latest.next_frame
        )
        again = asyncio.run(raw(gen, image, speech, resume=resume))
    want = frames_of(result.chunks)[latest.next_frame :]
    got = frames_of(again.chunks)
    assert [i for i, _ in got] == [i for i, _ in want]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, want, strict=True))


HEADROOM_BYTES = 1_000_000


def wait_failed(metrics_port: int, timeout_s: float = 10.0) -> None:
    """Until the generator has counted a checkpoint refused by a full Redis."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples, _ = prometheus(scrape(metrics_port))
        full = [v for (name, labels), v in samples.items()
                if name == "liveact_generator_checkpoints_failed_total" and ("reason", "full") in labels]  # fmt: skip
        if full and full[0] >= 1:
            return
        assert time.monotonic() < deadline, "no checkpoint was refused as full"
        time.sleep(0.1)


def test_a_full_redis_refuses_checkpoints_visibly_and_the_session_goes_on(peers, speech, image, tmp_path):
    """maxmemory reached (noeviction): checkpoint writes fail as "full" (log, metric), health degraded, every frame
    still sent; once memory is raised the checkpoints come back by themselves."""
    import redis as redis_client

    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    store_health = "liveact.v1.Generator.checkpoints"
    metrics_port = free_port()
    with (
        RedisServer(extra_args=("--maxmemory-policy", "noeviction")) as own_redis,
        service_process(
            "generator", "--audio-encoder", peers[0], "--decoder", peers[1], "--redis-url", own_redis.url,
            "--checkpoint-every-chunks", "1", "--store-check-s", "0.1", "--metrics-port", str(metrics_port),
            log_file=tmp_path / "generator.log",
        ) as (gen, proc),
    ):  # fmt: skip
        r = redis_client.Redis.from_url(own_redis.url)
        wait_health(gen, store_health, serving)

        async def session():
            result = AnimateResult()
            task = asyncio.ensure_future(raw(gen, image, speech, realtime=True, result=result))
            while not result.checkpoints:
                await asyncio.sleep(0.02)
            # 1 MB of room: audio chunks still fit, the next checkpoint's parts (MBs) fill it and are refused
            r.config_set("maxmemory", r.info("memory")["used_memory"] + HEADROOM_BYTES)
            full_at = len(result.checkpoints)
            await asyncio.to_thread(wait_failed, metrics_port)
            r.config_set("maxmemory", 1)  # nothing fits: the health probe's write is refused too
            await asyncio.to_thread(wait_health, gen, store_health, not_serving)
            r.config_set("maxmemory", 0)
            await asyncio.to_thread(wait_health, gen, store_health, serving)
            await task
            return result, full_at

        result, full_at = asyncio.run(session())
        _, value = prometheus(scrape(metrics_port))
        assert proc.poll() is None
        assert result.end is not None and result.end.frames == SECONDS * 20  # never stopped
        assert value("liveact_generator_checkpoints_failed_total", reason="full") >= 1
        assert result.checkpoints[full_at:], "no checkpoint after memory was raised"
    log = (tmp_path / "generator.log").read_text()
    assert "checkpoint not written: Redis is full" in log and "session store full: degraded" in log


def test_sigterm_hands_sessions_off_and_the_client_resumes_elsewhere(peers, redis, speech, image):
    with generator(peers, redis) as (gen, _):
        reference = asyncio.run(raw(gen, image, speech))
    expected = frames_of(reference.chunks)
    with generator(peers, redis, "--grace-s", "10") as (gen_a, proc_a), generator(peers, redis) as (gen_b, _):

        async def drained():
            first = AnimateResult()
            task = asyncio.ensure_future(raw(gen_a, image, speech, realtime=True, result=first))
            while len(first.chunks) < 2:
                await asyncio.sleep(0.02)
            t_term = time.monotonic()
            proc_a.send_signal(signal.SIGTERM)
            await task
            return first, t_term

        first, t_term = asyncio.run(drained())
        assert proc_a.wait(timeout=15) == 0
        exit_s = time.monotonic() - t_term
        end = first.end
        assert end.reason.startswith("draining") and end.HasField("resume")
        got = frames_of(first.chunks)
        assert end.resume.next_frame == len(got) < SECONDS * 20  # everything generated so far was delivered
        second = asyncio.run(raw(gen_b, image, speech, resume=end.resume))
    assert exit_s < 10  # within the grace period
    got += frames_of(second.chunks)
    assert [i for i, _ in got] == list(range(SECONDS * 20))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, expected, strict=True))


def crash_then_resumable_client(peers, store, speech, image, *extra) -> None:
    """A reference run, then a run whose generator is SIGKILLed after 3 chunks: the resumable client goes on
    at a second generator from the checkpoint in ``store``, every frame equal to the reference."""
    with generator(peers, store, *extra) as (gen, _):
        reference = asyncio.run(raw(gen, image, speech))
    with generator(peers, store, *extra) as (gen_a, proc_a), generator(peers, store, *extra) as (gen_b, _):
        seen = []

        def on_chunk(chunk):
            seen.append(chunk)
            if len(seen) == 3:
                os.kill(proc_a.pid, signal.SIGKILL)

        result = asyncio.run(
            animate_resumable([gen_a, gen_b], image, speech, sample_rate=RATE, output_format=common_pb2.RAW_RGB,
                              seed=3, on_chunk=on_chunk)
        )  # fmt: skip
    assert proc_a.poll() == -signal.SIGKILL
    assert result.checkpoints  # announced by the generators: written to the store
    got, want = frames_of(result.chunks), frames_of(reference.chunks)
    assert [i for i, _ in got] == list(range(SECONDS * 20))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, want, strict=True))


def test_resumable_client_follows_a_crash_to_another_generator(peers, redis, speech, image):
    crash_then_resumable_client(peers, redis, speech, image)


def test_sessions_resume_through_a_redis_cluster(peers, speech, image):
    """The same on a 3-master Redis Cluster (--redis-cluster)."""
    with RedisClusterServers() as cluster:
        crash_then_resumable_client(peers, cluster, speech, image, "--redis-cluster")


LIVE_FIRST_FRAMES_PERIODS = 3


def test_live_resume_goes_on_from_the_restored_memory_within_three_chunk_periods(peers, redis, speech, image):
    cfg = get_preset("tiny")
    chunk_s = (plan_chunk(cfg, 1).video_frames[1] - plan_chunk(cfg, 1).video_frames[0]) / 20
    with generator(peers, redis) as (gen_a, proc_a), generator(peers, redis) as (gen_b, _):
        first = AnimateResult()

        def on_chunk(chunk):
            if first.checkpoints and len(first.chunks) >= 2:
                os.kill(proc_a.pid, signal.SIGKILL)

        with pytest.raises(grpc.aio.AioRpcError):
            asyncio.run(raw(gen_a, image, speech, realtime=True, on_chunk=on_chunk, result=first))
        received = frames_of(first.chunks)
        next_frame = len(received)
        live_frame = next_frame + 20  # the live source went on for 1 s meanwhile: those frames are skipped
        checkpoint_chunk = next(
            k for k in range(50) if plan_chunk(cfg, k).video_frames[0] == first.checkpoints[-1].next_frame
        )
        resume = generator_pb2.ResumeRequest(
            session_id=first.header.session_id, resume_secret=first.header.resume_secret, next_frame=next_frame,
            mode=generator_pb2.ResumeRequest.LIVE, audio_pts_us=live_frame * 50_000,
        )  # fmt: skip
        early = generator_pb2.ResumeRequest()
        early.CopyFrom(resume)
        early.audio_pts_us = (next_frame - 1) * 50_000  # live audio before the first frame not received
        with pytest.raises(grpc.aio.AioRpcError) as err:
            asyncio.run(raw(gen_b, image, speech, resume=early))
        assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE and "before next_frame" in err.value.details()
        live_pcm = speech[live_frame * (RATE // 20) :]
        arrivals = []
        t0 = time.monotonic()
        stamp = lambda _chunk: arrivals.append(time.monotonic())  # noqa: E731
        second = asyncio.run(raw(gen_b, image, live_pcm, resume=resume, realtime=True, on_chunk=stamp))
    h = second.header
    assert (h.first_frame, h.skipped_frames) == (live_frame, 20)
    # the first new frames once their chunk's audio has arrived at real-time pace (one chunk period and the window's
    # look-ahead) and one chunk is generated: measured 3.2-3.5 s here (also before issue 23) against 3 periods, 4.8 s;
    # a restart from chunk 0 would also fail the chunk index below
    assert arrivals[0] - t0 < LIVE_FIRST_FRAMES_PERIODS * chunk_s
    c0 = second.chunks[0]
    assert c0.first_frame == live_frame and c0.pts_us == live_frame * 50_000
    assert c0.chunk_index >= checkpoint_chunk > 0  # the restored memory's next chunk, not a restart at chunk 0
    got = [i for i, _ in frames_of(second.chunks)]
    assert got == list(range(live_frame, SECONDS * 20))  # contiguous to the end of the live audio, none twice
    assert second.end.frames == len(got)


def test_liveact_client_reports_checkpoints_skips_and_the_resume_cost(peers, redis, tmp_path, capsys):
    """`liveact client`'s summary: the checkpoints the session announced, those skipped, and what an EXACT resume
    from the newest would replay (one steady chunk, as --checkpoint-every-chunks 1 asks)."""
    import json

    from signals import write_wav

    from liveact.cli.main import main

    seconds = 4
    audio = write_wav(tmp_path / "speech.wav", speech_clip(seconds), RATE)
    face = EXAMPLES / "face.png"
    with generator(peers, redis) as (gen, _):
        out = tmp_path / "o.mp4"
        argv = ["client", "--target", gen, "--image", str(face), "--audio", str(audio), "--out", str(out)]
        assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == seconds * 20 and out.stat().st_size > 0
    assert summary["checkpoints"] >= 1 and summary["checkpoints_skipped"] >= 0
    steady_chunk_s = video_frames_per_chunk(get_preset("tiny"), 1) / 20
    assert summary["resume_replay_s"] == pytest.approx(EVERY * steady_chunk_s, abs=0.01)
