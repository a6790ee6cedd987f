"""The generator under abuse: bad input, too many sessions, slow readers, disconnects, SIGTERM.

One cluster for the module (real processes on loopback): audio encoder and decoder with as many
stream slots as the generator has session slots (4), so a stream slot the generator failed to free
on a peer shows up as a refused session. The generator takes messages of at most 1 MiB and keeps at
most 2 chunks in flight per session (``--chunk-queue 2``).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from generator_helpers import (
    END,
    FACE,
    RATE,
    TONE,
    after_header,
    audio,
    config,
    cpu_s,
    rss_mb,
    server_info,
    session_sync,
    stream,
    tone,
    wait_idle,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from servers import service_process

from liveact.client import animate
from liveact.client.animate import pcm_chunks
from liveact.v1 import common_pb2, generator_pb2, generator_pb2_grpc

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

MAX_SESSIONS = 4
CHUNK_QUEUE = 2
FPS = 20
FRAME_BYTES = 64 * 64 * 3  # one RAW_RGB frame of the tiny preset
AudioFormat = common_pb2.AudioFormat


@pytest.fixture(scope="module")
def cluster():
    """(generator address, generator process, encoder address, decoder address, decoder process)."""
    slots = ("--max-streams", str(MAX_SESSIONS))
    with service_process("audio_encoder", *slots) as (enc, _), service_process("decoder", *slots) as (dec, dec_proc):
        with service_process(
            "generator", "--audio-encoder", enc, "--decoder", dec, "--max-sessions", str(MAX_SESSIONS),
            "--max-message-mb", "1", "--chunk-queue", str(CHUNK_QUEUE),
        ) as (gen, proc):  # fmt: skip
            yield gen, proc, enc, dec, dec_proc


def run(coro):
    return asyncio.run(coro)


async def healthy(gen: str, seconds: float = 1.0, **kw):
    """A well-behaved session; returns its AnimateResult after checking it got every frame."""
    result = await animate(gen, FACE, tone(seconds), RATE, **kw)
    assert result.end is not None and result.end.frames == result.frame_count == round(seconds * FPS)
    return result


def requests(pcm: np.ndarray, pace_s: float = 0.0, **config_kw) -> Iterator[generator_pb2.AnimateRequest]:
    """A session's requests: the audio in 100 ms pieces, one every ``pace_s`` (0: as fast as taken)."""
    yield config(**config_kw)
    start = time.monotonic()
    for seq, data in enumerate(pcm_chunks(pcm, RATE, 100)):
        if pace_s:
            time.sleep(max(0.0, start + seq * pace_s - time.monotonic()))
        yield audio(seq, data)
    yield END


def retrying(gen: str, seconds: float, deadline_s: float = 15.0) -> tuple[int, int]:
    """A careful session that retries on UNAVAILABLE, as clients are told to: (frames, retries)."""
    deadline, retries = time.monotonic() + deadline_s, 0
    while True:
        admitted = threading.Event()
        try:
            frames, end = session_sync(gen, after_header(admitted, requests(tone(seconds))), admitted=admitted)
            assert end is not None and end.frames == frames
            return frames, retries
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            retries += 1
            time.sleep(0.2)


# -- 1. bad input -------------------------------------------------------------------------------------


BIG = 2 * 1024 * 1024  # bytes of audio in one message: over the generator's --max-message-mb 1
NAN = np.where(np.arange(RATE) == 4000, np.nan, 0.1).astype("<f4").tobytes()  # 1 s of f32le, one NaN


@pytest.mark.parametrize(
    "messages,code,words",
    [
        (
            [config(audio_format=AudioFormat(encoding=7)), audio(0, TONE), END],
            grpc.StatusCode.INVALID_ARGUMENT,
            ["audio_format.encoding 7 is unknown", "PCM_S16LE"],
        ),
        (
            [config(audio_format=AudioFormat(sample_rate=4000)), audio(0, TONE), END],
            grpc.StatusCode.INVALID_ARGUMENT,
            ["sample_rate 4000 Hz", "8000..192000", "send 16000 Hz"],
        ),
        (
            [config(audio_format=AudioFormat(sample_rate=384000)), audio(0, TONE), END],
            grpc.StatusCode.INVALID_ARGUMENT,
            ["sample_rate 384000 Hz", "8000..192000"],
        ),
        (
            [config(fps=5), audio(0, TONE), END],
            grpc.StatusCode.INVALID_ARGUMENT,
            ["fps 5", "use an fps between"],
        ),
        (
            [config(audio_format=AudioFormat(encoding=AudioFormat.PCM_F32LE)), audio(0, NAN), END],
            grpc.StatusCode.INVALID_ARGUMENT,
            ["AudioChunk 0 holds NaN or infinite samples", "send finite float samples"],
        ),
        (
            [config(), audio(0, TONE), audio(1, b""), END],
            grpc.StatusCode.INVALID_ARGUMENT,
            ["AudioChunk 1 is empty", "at least one whole sample"],
        ),
        (
            [config(), audio(0, bytes(BIG)), END],
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            ["larger than max", str(1024 * 1024)],
        ),
        (
            [config(), audio(0, TONE), audio(1, TONE[:3200])],  # half-closes mid-chunk, no EndOfAudio
            grpc.StatusCode.FAILED_PRECONDITION,
            ["after 2 AudioChunk(s) without EndOfAudio", "send EndOfAudio"],
        ),
    ],
    ids=[
        "unknown-encoding",
        "rate-too-low",
        "rate-too-high",
        "fps-encoder-refuses",
        "nan-samples",
        "empty-chunk",
        "oversized",
        "no-end-of-audio",
    ],
)
def test_bad_input_gets_its_status_while_a_healthy_session_completes(cluster, messages, code, words):
    gen, proc, *_ = cluster

    async def both():
        ok = asyncio.create_task(healthy(gen, 1.0))
        bad = await stream(gen, messages, options=[("grpc.max_send_message_length", 2 * BIG)])
        await ok  # 20 frames and a SessionEnd
        return bad, await wait_idle(gen)

    (got, details), info = run(both())
    assert got == code, details
    for w in words:
        assert w in details, details
    assert info.active_sessions == 0
    assert proc.poll() is None


# -- 2. admission -------------------------------------------------------------------------------------


def test_admission_serves_max_sessions_and_refuses_the_rest(cluster):
    gen, proc, *_ = cluster

    def careful_session() -> tuple[int, generator_pb2.SessionEnd | None] | grpc.RpcError:
        admitted = threading.Event()
        try:
            return session_sync(gen, after_header(admitted, requests(tone(2.0))), admitted=admitted)
        except grpc.RpcError as exc:
            return exc

    async def burst():
        await wait_idle(gen)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(2 * MAX_SESSIONS) as pool:  # all 2 * MAX_SESSIONS at once
            results = await asyncio.gather(*(loop.run_in_executor(pool, careful_session) for _ in range(8)))
        return results, await wait_idle(gen), await healthy(gen, 1.0)

    results, info, after = run(burst())
    served = [r for r in results if not isinstance(r, grpc.RpcError)]
    refused = [r for r in results if isinstance(r, grpc.RpcError)]
    assert len(served) == MAX_SESSIONS, results
    assert len(refused) == MAX_SESSIONS, results
    for exc in refused:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        assert f"all {MAX_SESSIONS} session slots are busy" in exc.details()
    assert all(frames == 40 and end is not None and end.frames == 40 for frames, end in served)
    assert info.active_sessions == 0 and info.max_sessions == MAX_SESSIONS
    assert after.frame_count == 20
    assert proc.poll() is None


# -- 3. slow reader -----------------------------------------------------------------------------------

SLOW_AUDIO_S = 20.0  # 400 frames, 13 chunks: 4.7 MiB of RAW_RGB in all
SLOW_PHASE_S = 8.0
# The bounded pipeline holds a few chunks of 0.38 MiB (CHUNK_QUEUE ahead of the client, the one being
# sent, copies on the way), 1.5-4 MiB measured with the allocator's slack. Unbounded, the generator
# takes all the decoder makes meanwhile: 8-11 MiB here (measured with --chunk-queue 1000).
RSS_BOUND_MB = 6.0


def test_slow_reader_holds_generator_memory_bounded(cluster):
    """Audio sent as fast as the server takes it; frames read at a tenth of the frame rate for 8 s.

    The client's channel does not grow its HTTP/2 window (no BDP probing), like a reader on a slow
    link: on loopback gRPC would otherwise pull the whole video into the client's own buffers, and
    the reader would not be slow at all. Without back-pressure the generator would keep the frames
    the decoder makes meanwhile (~1 MiB more per second here, up to the whole 4.7 MiB video and its
    copies); and the decoder itself would not stop.
    """
    gen, proc, _, _, dec_proc = cluster
    pcm = tone(SLOW_AUDIO_S)
    samples: list[tuple[float, float, float]] = []  # (t, generator RSS MiB, decoder CPU s)

    async def slow_session():
        await wait_idle(gen)
        options = [("grpc.http2.bdp_probe", 0)]
        async with grpc.aio.insecure_channel(gen, options=options) as ch:
            call = generator_pb2_grpc.GeneratorStub(ch).Animate(requests(pcm, output_format=common_pb2.RAW_RGB))
            chunks, end, t0, sampler = [], None, None, None
            while (msg := await call.read()) is not grpc.aio.EOF:
                kind = msg.WhichOneof("kind")
                if kind == "end":
                    end = msg.end
                if kind != "frames":
                    continue
                chunks.append(msg.frames)
                now = time.monotonic()
                if t0 is None:  # the session is running: measure from here
                    t0 = now
                    sampler = asyncio.create_task(sample(t0))
                slow_left = t0 + SLOW_PHASE_S - now
                if slow_left > 0:  # a tenth of the frame rate
                    await asyncio.sleep(min(msg.frames.frame_count / (FPS / 10), slow_left))
                else:
                    sampler.cancel()
            if sampler is not None:
                sampler.cancel()
            return chunks, end

    async def sample(t0: float):
        while True:
            samples.append((time.monotonic() - t0, rss_mb(proc.pid), cpu_s(dec_proc.pid)))
            await asyncio.sleep(0.1)

    chunks, end = run(slow_session())
    total = round(SLOW_AUDIO_S * FPS)
    assert end is not None and end.frames == total
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [f for c in chunks for f in range(c.first_frame, c.first_frame + c.frame_count)] == list(range(total))
    assert all(len(f) == FRAME_BYTES for c in chunks for f in c.frames)

    base = samples[0][1]
    growth = max(rss for _, rss, _ in samples) - base
    decoder_busy = samples[-1][2] - samples[0][2]
    print(f"generator RSS {base:.1f} MiB at the first frame, +{growth:.2f} MiB at most over {SLOW_PHASE_S} s; "
          f"decoder CPU {decoder_busy:.2f} s; {total * FRAME_BYTES / 2**20:.1f} MiB of video")  # fmt: skip
    assert growth < RSS_BOUND_MB, samples
    # and it is back-pressure, not a slow pipeline: the decoder went idle while the reader dawdled
    idle = [b1 - b0 for (_, _, b0), (_, _, b1) in zip(samples, samples[10:], strict=False)]  # 1 s windows
    assert min(idle) < 0.2, f"the decoder never idled during the slow phase: {idle}"


# -- 4. disconnects -----------------------------------------------------------------------------------


def test_cancelled_sessions_free_their_slot_and_their_peer_streams(cluster):
    """Cancel MAX_SESSIONS sessions at different points; then MAX_SESSIONS new ones must all run.

    The encoder and decoder have exactly MAX_SESSIONS stream slots: one not freed would refuse a
    session of the follow-up burst for good (a retry on UNAVAILABLE only helps while a peer is still
    tearing a cancelled stream down).
    """
    gen, proc, *_ = cluster

    async def cancel_after(stage: str):
        async with grpc.aio.insecure_channel(gen) as ch:
            call = generator_pb2_grpc.GeneratorStub(ch).Animate(requests(tone(6.0), output_format=common_pb2.RAW_RGB))
            assert (await call.read()).WhichOneof("kind") == "header"
            if stage in ("frames", "stalled"):
                while (await call.read()).WhichOneof("kind") != "frames":
                    pass
            if stage == "stalled":  # stop reading until the pipeline backs up, then leave
                await asyncio.sleep(1.5)
            call.cancel()
            return stage

    async def scenario():
        await wait_idle(gen)
        stages = await asyncio.gather(*(cancel_after(s) for s in ("header", "header", "frames", "stalled")))
        info = await wait_idle(gen, timeout_s=5.0)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(MAX_SESSIONS) as pool:
            burst = await asyncio.gather(*(loop.run_in_executor(pool, retrying, gen, 1.0) for _ in stages))
        return info, burst, await wait_idle(gen)

    info, burst, after = run(scenario())
    print(f"follow-up burst: retries {[retries for _, retries in burst]}")
    assert info.active_sessions == 0 and after.active_sessions == 0
    assert [frames for frames, _ in burst] == [20] * MAX_SESSIONS
    assert proc.poll() is None


# -- 5. SIGTERM ---------------------------------------------------------------------------------------

GRACE_S = 4.0  # sessions still running are cut after 3 s (1 s before the deadline)


def test_sigterm_drains_then_exits_within_grace(cluster):
    _, _, enc, dec, _ = cluster
    args = ("--audio-encoder", enc, "--decoder", dec, "--grace-s", str(GRACE_S))
    with service_process("generator", *args) as (gen, proc):

        def paced(seconds: float, admitted: threading.Event):
            try:
                return session_sync(gen, requests(tone(seconds), pace_s=0.1), admitted=admitted)
            except grpc.RpcError as exc:
                return exc

        async def scenario():
            ch = grpc.aio.insecure_channel(gen)
            watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            admitted = [threading.Event(), threading.Event()]
            short = asyncio.create_task(asyncio.to_thread(paced, 1.0, admitted[0]))  # ends within the grace
            long = asyncio.create_task(asyncio.to_thread(paced, 10.0, admitted[1]))  # does not
            while not all(a.is_set() for a in admitted):  # both sessions are running
                await asyncio.sleep(0.02)
            assert (await server_info(gen)).active_sessions == 2

            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            status = (await watch.read()).status
            t_health = time.monotonic() - t0
            watch.cancel()  # a health watcher would otherwise hold the drain until the deadline
            with pytest.raises(grpc.RpcError) as new:
                await asyncio.to_thread(session_sync, gen, requests(tone(1.0)))
            short_result = await short
            cut = await long
            t_cut = time.monotonic() - t0
            await ch.close()
            while proc.poll() is None and time.monotonic() - t0 < 2 * GRACE_S:
                await asyncio.sleep(0.02)
            return status, t_health, new.value, short_result, cut, t_cut, time.monotonic() - t0

        status, t_health, new, short, cut, t_cut, t_exit = run(scenario())
        print(f"SIGTERM: NOT_SERVING after {t_health:.3f} s, long session cut after {t_cut:.2f} s, "
              f"exit {proc.returncode} after {t_exit:.2f} s (grace {GRACE_S} s)")  # fmt: skip
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING and t_health < 0.5
        assert new.code() == grpc.StatusCode.UNAVAILABLE, new
        assert not isinstance(short, grpc.RpcError), short  # finished during the drain
        assert short[0] == 20 and short[1].frames == 20
        assert isinstance(cut, grpc.RpcError), cut
        assert cut.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in cut.details(), cut
        assert t_cut < GRACE_S
        assert proc.returncode == 0 and t_exit < GRACE_S
