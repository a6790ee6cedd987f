"""Sessions through the three services: timed, warmed up, killed with SIGKILL and resumed; their summaries."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import TypeVar

import grpc
import numpy as np

from bench.checkpoint.common import median, round_or_none, session_timeout
from bench.pipeline import CHUNK_MS, VIDEO_FPS, CpuClock
from liveact.audio.frames import frame_count
from liveact.client import animate
from liveact.client.animate import AnimateResult
from liveact.config import LiveActConfig
from liveact.launch import service_process
from liveact.pipeline import chunks_needed
from liveact.state.settings import StoreSettings
from liveact.state.store import Checkpoint, SessionStore
from liveact.v1 import generator_pb2

WARMUP_SECONDS = 2.0  # per generator: a first (21-frame) and a later chunk, and a checkpoint
KILL_AFTER_CHECKPOINTS = 2  # the killed session has received this many CheckpointNotices
POLL_S = 0.01

T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    frames: int
    seconds: float  # opening the stream to its end
    first_chunk_s: float | None  # opening the stream to the first FrameChunk
    cpu_seconds: float | None
    checkpoints: int  # CheckpointNotices received
    skipped: int  # checkpoints due but not taken (SessionEnd.checkpoints_skipped)
    cpu_by_process: dict[str, float] | None = None  # CPU seconds per process (PROCESSES), None where unreadable

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Inputs:
    """What every session sends besides its audio."""

    image: bytes
    rate: int  # audio sample rate
    fmt: int  # common_pb2 output format
    width: int
    height: int


@dataclass(frozen=True)
class Peers:
    """The processes every session uses besides its generator (their CPU counts)."""

    encoder: int  # pid
    decoder: int
    redis: int


PROCESSES = ("client", "audio_encoder", "decoder", "redis", "generator")  # Run.cpu_by_process's keys


@dataclass(frozen=True)
class Generator:
    name: str
    target: str
    proc: subprocess.Popen


# -- helpers -----------------------------------------------------------------------------------------


async def session(
    gen: Generator,
    inputs: Inputs,
    pcm: np.ndarray,
    *,
    realtime: bool = False,
    result: AnimateResult | None = None,
    resume: generator_pb2.ResumeRequest | None = None,
) -> tuple[AnimateResult, float | None]:
    """One Animate stream; (result, seconds from opening it to the first FrameChunk)."""
    t0 = time.perf_counter()
    first: list[float] = []

    def on_chunk(_: generator_pb2.FrameChunk) -> None:
        if not first:
            first.append(time.perf_counter() - t0)

    result = await animate(
        gen.target, inputs.image, pcm, inputs.rate, fps=VIDEO_FPS, output_format=inputs.fmt, width=inputs.width,
        height=inputs.height, chunk_ms=CHUNK_MS, realtime=realtime, on_chunk=on_chunk,
        timeout_s=session_timeout(pcm, inputs.rate), resume=resume, result=result,
    )  # fmt: skip
    return result, first[0] if first else None


def timed_session(
    gen: Generator, peers: Peers, inputs: Inputs, pcm: np.ndarray, realtime: bool = False
) -> Run:  # fmt: skip
    clock = CpuClock([peers.encoder, peers.decoder, peers.redis, gen.proc.pid])
    c0, s0 = clock.read_each(), time.process_time()
    result, first = asyncio.run(session(gen, inputs, pcm, realtime=realtime))
    c1, s1 = clock.read_each(), time.process_time()
    if result.end is None or result.end.frames != result.frame_count:
        raise RuntimeError(f"the session on {gen.name} ended without a complete SessionEnd: {result.end}")
    each = None
    if c0 is not None and c1 is not None:
        each = dict(zip(PROCESSES, [s1 - s0, *(b - a for a, b in zip(c0, c1, strict=True))], strict=True))
    cpu = None if each is None else sum(each.values())
    return Run(result.frame_count, result.seconds, first, cpu, len(result.checkpoints), result.end.checkpoints_skipped,
               each)  # fmt: skip


async def warm_up(gen: Generator, inputs: Inputs, pcm: np.ndarray) -> None:
    """One short session; on a checkpointing generator also a resume of it (loads the resume path)."""
    done, _ = await session(gen, inputs, pcm)
    if done.checkpoints:
        last = done.checkpoints[-1]
        request = generator_pb2.ResumeRequest(
            session_id=last.session_id, resume_secret=last.resume_secret, next_frame=last.next_frame,
            mode=generator_pb2.ResumeRequest.EXACT,
        )  # fmt: skip
        await session(gen, inputs, pcm, resume=request)


async def kill_and_resume(
    victim: Generator, target: Generator, redis_url: str, inputs: Inputs, pcm: np.ndarray
) -> tuple[dict, Checkpoint]:
    """A real-time session on ``victim``, SIGKILLed after a checkpoint; resumed EXACT on ``target``."""
    first = AnimateResult()
    task = asyncio.ensure_future(session(victim, inputs, pcm, realtime=True, result=first))
    while len(first.checkpoints) < KILL_AFTER_CHECKPOINTS and not task.done():
        await asyncio.sleep(POLL_S)
    if task.done():
        task.result()  # raises the session's error, if it failed
        raise RuntimeError(
            f"the session ended before its {KILL_AFTER_CHECKPOINTS}th checkpoint: use a longer --resume-seconds"
        )
    os.kill(victim.proc.pid, signal.SIGKILL)
    received = first.frame_count
    try:
        await task
    except grpc.aio.AioRpcError:
        pass  # the connection to the killed generator is gone, as expected
    else:
        raise RuntimeError("the killed generator's session ended normally")
    await asyncio.to_thread(victim.proc.wait)
    sid, secret = first.header.session_id, first.header.resume_secret

    store = SessionStore(StoreSettings(url=redis_url))
    try:
        checkpoint = await store.read_checkpoint(sid)
    finally:
        await store.close()
    next_frame = checkpoint.meta.next_frame
    request = generator_pb2.ResumeRequest(
        session_id=sid, resume_secret=secret, next_frame=next_frame, mode=generator_pb2.ResumeRequest.EXACT
    )
    total = frame_count(len(pcm), inputs.rate, VIDEO_FPS)
    if next_frame >= total:
        raise RuntimeError(f"the newest checkpoint starts at frame {next_frame} of {total}: longer --resume-seconds")
    second, first_chunk = await session(target, inputs, pcm, resume=request)
    figures = {
        "scenario": "sigkill_mid_session",
        "how": f"a real-time session's generator got SIGKILL after {KILL_AFTER_CHECKPOINTS} CheckpointNotices; "
        "EXACT ResumeRequest (next_frame = the newest stored checkpoint's) on another generator sharing Redis, "
        "encoder and decoder; the rest of the audio sent as fast as possible",
        "audio_seconds": round(len(pcm) / inputs.rate, 3),
        "frames_received_before_kill": received,
        "checkpoint_version": checkpoint.version,
        "next_frame": next_frame,
        "next_audio_seq": second.header.next_audio_seq if second.header is not None else None,
        "time_to_first_chunk_s": round_or_none(first_chunk, 3),
        "time_to_session_end_s": round(second.seconds, 3),
        "frames_after_resume": second.frame_count,
        "frames_complete": second.end is not None and next_frame + second.frame_count == total,
    }
    return figures, checkpoint


# -- checkpoint store timing -------------------------------------------------------------------------


def summarise(config: LiveActConfig, runs: list[Run], every_chunks: int | None) -> dict:
    fps = median([r.fps for r in runs])
    cpu = median([r.cpu_seconds / r.frames if r.cpu_seconds is not None and r.frames else None for r in runs])
    by_process = {
        p: round_or_none(median([1000.0 * r.cpu_by_process[p] / r.frames if r.cpu_by_process and r.frames else None
                                 for r in runs]), 2)
        for p in PROCESSES
    }  # fmt: skip
    return {
        "every_chunks": every_chunks,  # None: no Redis, no checkpoints
        "frames": runs[0].frames,
        "fps": round_or_none(fps, 2),
        "seconds": round(statistics.median(r.seconds for r in runs), 3),
        "time_to_first_chunk_s": round_or_none(median([r.first_chunk_s for r in runs]), 3),
        "cpu_ms_per_frame": round_or_none(None if cpu is None else 1000.0 * cpu, 2),
        "cpu_ms_per_frame_by_process": by_process,  # each a median on its own: they need not add up
        "chunks_per_session": chunks_needed(config, runs[0].frames),
        "checkpoints_per_session": median([r.checkpoints for r in runs]),
        "checkpoints_skipped_per_session": median([r.skipped for r in runs]),  # due but not taken: counted
        "runs": [
            {
                "fps": round(r.fps, 2),
                "seconds": round(r.seconds, 3),
                "cpu_seconds": round_or_none(r.cpu_seconds, 3),
                "cpu_seconds_by_process": None
                if r.cpu_by_process is None
                else {p: round(v, 3) for p, v in r.cpu_by_process.items()},
                "checkpoints": r.checkpoints,
                "checkpoints_skipped": r.skipped,
            }
            for r in runs
        ],
    }


def slowdown(on: dict, off: dict) -> dict:
    pct = None if not off["fps"] or on["fps"] is None else round(100.0 * (1.0 - on["fps"] / off["fps"]), 2)
    cpu = None
    if off["cpu_ms_per_frame"] and on["cpu_ms_per_frame"] is not None:
        cpu = round(100.0 * (on["cpu_ms_per_frame"] / off["cpu_ms_per_frame"] - 1.0), 2)
    return {"slowdown_percent": pct, "cpu_overhead_percent": cpu}


# -- the run -----------------------------------------------------------------------------------------


def enter_concurrently(stack: ExitStack, managers: Sequence[AbstractContextManager[T]]) -> list[T]:
    """Enter ``managers`` at once (services load their models in parallel); their exits go on ``stack``.

    If any fails, the ones that started are left on ``stack`` (stopped when it unwinds) and the
    first error is raised.
    """
    with ThreadPoolExecutor(max_workers=len(managers)) as pool:
        futures = [pool.submit(m.__enter__) for m in managers]
        wait(futures)
    values: list[T] = []
    for manager, future in zip(managers, futures, strict=True):
        if future.exception() is None:
            stack.push(manager)
            values.append(future.result())
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    return values


def generator_process(preset: str, enc: str, dec: str, *extra: str) -> AbstractContextManager:
    return service_process(
        "generator", "--preset", preset, "--max-sessions", "1", "--audio-encoder", enc, "--decoder", dec, *extra
    )
