"""Stream a reference image and speech to a generator; collect timestamped frames.

``animate`` sends the SessionConfig, then the PCM in ``chunk_ms`` pieces (at real-time pace with
``realtime=True``, else as fast as the server takes them), then EndOfAudio, while a concurrent
reader receives the header, frame chunks and the end. Time to first frame is measured from the
first audio byte sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np

from liveact.v1 import common_pb2, generator_pb2, generator_pb2_grpc

MAX_MESSAGE_BYTES = 32 * 1024 * 1024


@dataclass
class AnimateResult:
    header: generator_pb2.SessionHeader | None = None
    chunks: list[generator_pb2.FrameChunk] = field(default_factory=list)
    end: generator_pb2.SessionEnd | None = None
    checkpoints: list[generator_pb2.CheckpointNotice] = field(default_factory=list)
    first_frame_s: float | None = None  # seconds from the first audio sent to the first frame received
    seconds: float = 0.0

    @property
    def frame_count(self) -> int:
        return sum(c.frame_count for c in self.chunks)

    def raw_frames(self) -> np.ndarray:
        """RAW_RGB output -> (T, H, W, 3) uint8."""
        h, w = self.header.height, self.header.width
        return np.stack([np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for c in self.chunks for f in c.frames])


def to_s16(pcm: np.ndarray) -> np.ndarray:
    """Float PCM in [-1, 1] -> s16 (round to nearest; x/32768 round-trips exactly, as servers decode)."""
    return np.clip(np.round(np.asarray(pcm, dtype=np.float64) * 32768.0), -32768, 32767).astype("<i2")


def pcm_chunks(pcm: np.ndarray, sample_rate: int, chunk_ms: float) -> Iterator[bytes]:
    """Mono float32 PCM -> s16le byte pieces of ``chunk_ms`` each."""
    step = max(1, round(sample_rate * chunk_ms / 1000))
    s16 = to_s16(pcm)
    for i in range(0, len(s16), step):
        yield s16[i : i + step].tobytes()


async def animate(
    target: str,
    image: bytes,
    pcm: np.ndarray,
    sample_rate: int = 16000,
    fps: float = 20.0,
    seed: int = 0,
    output_format: int = common_pb2.JPEG,
    width: int = 0,
    height: int = 0,
    prompt: str = "",
    chunk_ms: float = 100.0,
    realtime: bool = False,
    on_chunk: Callable[[generator_pb2.FrameChunk], None] | None = None,
    timeout_s: float | None = None,
    resume: generator_pb2.ResumeRequest | None = None,
    result: AnimateResult | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> AnimateResult:
    """One Animate stream. ``resume``: continue an earlier session (its id, secret and the first
    frame not received). EXACT: the audio is sent from ``SessionHeader.next_audio_seq`` on, so pass
    the same ``pcm`` and ``chunk_ms`` as the first stream; frames already received are not sent.
    LIVE: ``pcm`` is the audio from ``resume.audio_pts_us`` on, numbered from ``next_audio_seq``.
    ``result``: filled as messages arrive (pass one to keep what came before an error). ``metadata``: gRPC
    metadata for the call, e.g. ``[("traceparent", ...)]``: the server links each chunk's trace to that span."""
    result = AnimateResult() if result is None else result
    t_first_audio: list[float] = []
    # Audio waits for the SessionHeader: a refused session then surfaces as the server's status
    # (grpc aio otherwise may report INTERNAL when the server ends a stream the client still writes).
    header_seen = asyncio.Event()
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    audio_format = common_pb2.AudioFormat(
        encoding=common_pb2.AudioFormat.PCM_S16LE, sample_rate=sample_rate, channels=1
    )
    config = generator_pb2.SessionConfig(
        reference_image=image, prompt=prompt, fps=fps, width=width, height=height, seed=seed,
        output_format=output_format, audio_format=audio_format, resume=resume,
    )  # fmt: skip

    async def requests() -> AsyncIterator[generator_pb2.AnimateRequest]:
        yield generator_pb2.AnimateRequest(config=config)
        await header_seen.wait()
        start = time.perf_counter()
        sent_s = 0.0
        next_seq = result.header.next_audio_seq if result.header is not None else 0
        live = resume is not None and resume.mode == generator_pb2.ResumeRequest.LIVE
        pts0 = resume.audio_pts_us / 1e6 if live else 0.0
        for i, data in enumerate(pcm_chunks(pcm, sample_rate, chunk_ms)):
            seq = next_seq + i if live else i  # LIVE: pcm is the audio from audio_pts_us on
            if seq < next_seq:  # stored by the server before a resume: paced as if sent just now
                sent_s += len(data) / 2 / sample_rate
                start -= len(data) / 2 / sample_rate
                continue
            if realtime and (ahead := sent_s - (time.perf_counter() - start)) > 0:
                await asyncio.sleep(ahead)
            if not t_first_audio:
                t_first_audio.append(time.perf_counter())
            yield generator_pb2.AnimateRequest(
                audio=generator_pb2.AudioChunk(seq=seq, pts_us=round((pts0 + sent_s) * 1e6), data=data)
            )
            sent_s += len(data) / 2 / sample_rate
        yield generator_pb2.AnimateRequest(end_of_audio=generator_pb2.EndOfAudio())

    t0 = time.perf_counter()
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        async for resp in stub.Animate(requests(), timeout=timeout_s, metadata=tuple(metadata)):
            kind = resp.WhichOneof("kind")
            if kind == "header":
                result.header = resp.header
                header_seen.set()
            elif kind == "frames":
                if result.first_frame_s is None and t_first_audio:
                    result.first_frame_s = time.perf_counter() - t_first_audio[0]
                result.chunks.append(resp.frames)
                if on_chunk is not None:
                    on_chunk(resp.frames)
            elif kind == "checkpoint":
                result.checkpoints.append(resp.checkpoint)
            elif kind == "end":
                result.end = resp.end
    result.seconds = time.perf_counter() - t0
    return result


RESUMABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED)
RESUME_DELAY_S = 0.5  # before reconnecting after a lost stream (a replacement generator may be starting)


async def animate_resumable(
    target: str | list[str], image: bytes, pcm: np.ndarray, max_resumes: int = 3, **kwargs
) -> AnimateResult:
    """``animate`` that follows a session across generators: one result for the whole session.

    It resumes (EXACT, from the first frame not received) when the server hands the session off
    (``SessionEnd.resume``, a draining replica) or when the stream breaks (UNAVAILABLE / INTERNAL /
    CANCELLED, e.g. a crashed generator) after a checkpoint was announced; at most ``max_resumes``
    times. Frames arrive in order without gaps or repeats; ``result.end`` is the final SessionEnd.
    ``target``: one address (a load-balanced Service) or several, tried in turn by the resumes.
    """
    targets = [target] if isinstance(target, str) else list(target)
    total = AnimateResult()
    resume: generator_pb2.ResumeRequest | None = None
    t0 = time.perf_counter()
    for attempt in range(max_resumes + 1):
        part = AnimateResult()
        try:
            await animate(targets[attempt % len(targets)], image, pcm, resume=resume, result=part, **kwargs)
        except grpc.aio.AioRpcError as exc:
            resumable = exc.code() in RESUMABLE_CODES and (part.checkpoints or total.checkpoints)
            if not resumable or attempt == max_resumes:
                raise
            _merge(total, part)
            resume = generator_pb2.ResumeRequest(
                session_id=total.header.session_id, resume_secret=total.header.resume_secret,
                next_frame=_next_frame(total), mode=generator_pb2.ResumeRequest.EXACT,
            )  # fmt: skip
            await asyncio.sleep(RESUME_DELAY_S)
            continue
        _merge(total, part)
        if part.end is None or not part.end.HasField("resume") or attempt == max_resumes:
            break
        resume = part.end.resume
        resume.next_frame = _next_frame(total)
    total.seconds = time.perf_counter() - t0
    return total


def _merge(total: AnimateResult, part: AnimateResult) -> None:
    if total.header is None:
        total.header = part.header
    if total.first_frame_s is None:
        total.first_frame_s = part.first_frame_s
    total.chunks += part.chunks
    total.checkpoints += part.checkpoints
    total.end = part.end


def _next_frame(result: AnimateResult) -> int:
    if not result.chunks:
        return result.header.first_frame if result.header is not None else 0
    last = result.chunks[-1]
    return last.first_frame + last.frame_count
