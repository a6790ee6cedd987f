"""The ``liveact.v1.AudioEncoder`` servicer and ``serve()``.

``Encode`` (bidirectional): an ``EncodeConfig`` first, then ``pcm`` pieces of any size (whole sample
frames, at most ``--max-pcm-bytes-per-message``), then ``end_of_audio``. Rows go back as they become
final (``first_frame`` = their absolute index); after ``end_of_audio`` the last rows come with
``final`` and ``total_frames`` and the RPC ends OK.

Errors end the RPC: FAILED_PRECONDITION (a message before the config, a second config, the request
stream closed without ``end_of_audio``), INVALID_ARGUMENT (bad config, a feature layout other than
this server's preset, PCM that is not whole frames or over the per-message limit, non-finite
samples, audio shorter than one frame), RESOURCE_EXHAUSTED (``--max-streams`` streams already
open; gRPC itself for a message over ``--max-message-mb``), UNAVAILABLE (still warming up).

PCM at another sample rate than the encoder's (16 kHz) is resampled here (``resample.py``), so
clients may send 8..192 kHz. Feature extraction runs on a thread pool (``--threads``), never on
the event loop, so other streams and health checks stay responsive; a stream's state is freed when
it ends, fails or is cancelled by the client.

Snapshots (for a generator that checkpoints its sessions): a ``snapshot`` request between ``pcm``
messages is answered, after the rows of all PCM before it, by a ``StreamSnapshot`` whose ``state`` is
the stream's whole state (``EncodeStream.snapshot``: safetensors, never pickle) and whose
``next_frame`` is the first row still to come. A new stream whose ``EncodeConfig.resume_state`` holds
it continues exactly there (rows from ``next_frame`` on, bitwise equal to the original stream's). Its
fps and audio format must equal the snapshot's, and ``resume_state`` must be a whole audio encoder
snapshot: INVALID_ARGUMENT says what differs or is damaged. A state bigger than a message
(``--max-message-mb``) is RESOURCE_EXHAUSTED. After ``end_of_audio`` the RPC ends once the client
half-closes; any request after it (a snapshot: nothing is left to resume) is FAILED_PRECONDITION.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import TypeVar

import grpc

from liveact.audio import AudioError, FeatureBackend, FeatureRows, load_backend
from liveact.v1 import audio_encoder_pb2, audio_encoder_pb2_grpc, common_pb2
from liveact.weight_files import audio_dir
from services.audio_encoder.settings import EncoderSettings
from services.audio_encoder.stream import EncodeStream, StreamFormat, parse_config, silence
from services.common import logs, tensors
from services.common.errors import RequestError, invalid
from services.common.server import run
from services.common.snapshot import SnapshotError
from services.common.stream_metrics import StreamMetrics
from services.common.streams import Slots, read_config
from services.common.telemetry import Telemetry, Tracing

__all__ = ["SERVICE_NAME", "AudioEncoder", "serve"]

log = logging.getLogger("liveact.audio_encoder")

SERVICE_NAME = audio_encoder_pb2.DESCRIPTOR.services_by_name["AudioEncoder"].full_name
_PIECE_SECONDS = 1.0  # a pcm message is encoded (and answered) in pieces of at most this much audio
_MIN_PIECE_SECONDS = 0.05
_WARM_UP_SECONDS = 1.0
_SNAPSHOT_OVERHEAD = 1024  # bytes of a snapshot response besides its state (id, next_frame, framing)

T = TypeVar("T")


class AudioEncoder(audio_encoder_pb2_grpc.AudioEncoderServicer):
    def __init__(self, settings: EncoderSettings, executor: ThreadPoolExecutor, tracing: Tracing) -> None:
        self.settings = settings
        self.tracing = tracing
        self.audio = settings.audio_config
        self.backend: FeatureBackend | None = None
        self.slots = Slots(  # open Encode streams
            settings.max_streams,
            f"this audio encoder is at its limit of {settings.max_streams} concurrent streams: "
            "retry later or use another replica",
        )
        self._executor = executor
        self._ids = itertools.count(1)
        self.metrics = StreamMetrics("audio_encoder", lambda: self.slots.active, work="encode", output="rows")

    async def warm_up(self) -> None:
        """Load the backend, then run one short stream through it so the first client pays nothing extra."""
        t0 = time.perf_counter()
        s = self.settings
        weights = audio_dir(s.weights_dir) if s.weights_dir else None  # the folder itself or the one inside
        backend = await self._off_loop(load_backend, self.audio, weights, s.device)
        fmt = StreamFormat("s16le", self.audio.sample_rate, 1, self.audio.default_fps)
        stream = EncodeStream(backend, self.audio, fmt)
        await self._off_loop(stream.push, silence(fmt, _WARM_UP_SECONDS))
        await self._off_loop(stream.finish)
        self.backend = backend
        log.info(
            "backend ready",
            extra={
                "preset": s.preset,
                "backend": self.audio.backend,
                "layout": [self.audio.layers, self.audio.channels],
                "sample_rate": self.audio.sample_rate,
                "seconds": round(time.perf_counter() - t0, 3),
            },
        )

    async def Encode(
        self, request_iterator: AsyncIterator[audio_encoder_pb2.EncodeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audio_encoder_pb2.EncodeResponse]:
        stream_id = next(self._ids)
        if self.backend is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the audio encoder is still warming up: retry shortly")
        try:
            self.slots.take()
        except RequestError as exc:
            log.warning("stream refused: at capacity", extra={"stream": stream_id, "active": self.slots.active})
            await context.abort(exc.code, exc.message)
        started, outcome = time.monotonic(), "cancelled"
        try:
            async for response in self._encode(request_iterator, stream_id, context.peer()):
                yield response
            outcome = "ok"
        except RequestError as exc:
            outcome = exc.code.name
            log.info("stream refused", extra={"stream": stream_id, "code": exc.code.name, "reason": exc.message})
            await context.abort(exc.code, exc.message)
        except Exception:
            outcome = "internal"
            log.exception("stream failed", extra={"stream": stream_id})
            await context.abort(
                grpc.StatusCode.INTERNAL, f"the audio encoder failed on stream {stream_id}: see its log"
            )
        finally:
            self.slots.release()
            log.info(
                "stream closed",
                extra={
                    "stream": stream_id,
                    "outcome": outcome,
                    "active": self.slots.active,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )

    async def _encode(
        self, requests: AsyncIterator[audio_encoder_pb2.EncodeRequest], stream_id: int, peer: str
    ) -> AsyncIterator[audio_encoder_pb2.EncodeResponse]:
        assert self.backend is not None
        config = (await read_config(requests, "EncodeConfig")).config
        fmt = parse_config(config, self.audio, self.settings.preset)
        stream = EncodeStream(self.backend, self.audio, fmt)
        if config.resume_state:
            await self._resume(stream, config.resume_state)
        resumed_at = stream.next_frame if config.resume_state else None
        log.info("stream opened", extra={"stream": stream_id, "peer": peer, "resumed_at": resumed_at, **asdict(fmt)})
        async for request in requests:
            kind = request.WhichOneof("kind")
            if kind == "pcm":
                stream.check_pcm(len(request.pcm), self.settings.pcm_limit)
                piece = self._piece_bytes(stream.format)
                span = self.tracing.start_from("audio_encoder.encode", request.trace_context)
                for offset in range(0, len(request.pcm), piece):
                    rows = await self._checked(stream.push, request.pcm[offset : offset + piece])
                    if rows.rows.shape[0]:
                        yield _response(rows)
                span.set_attribute("liveact.pcm_bytes", len(request.pcm))
                span.end()
            elif kind == "end_of_audio":
                if not request.end_of_audio:
                    raise RequestError(
                        grpc.StatusCode.INVALID_ARGUMENT, "end_of_audio must be true: set it to end the audio"
                    )
                span = self.tracing.start_from("audio_encoder.finish", request.trace_context)
                rows = await self._checked(stream.finish)
                span.end()
                total = stream.features.total_frames
                audio_s = stream.bytes_received / stream.format.frame_bytes / stream.format.sample_rate
                log.info("stream finished", extra={"stream": stream_id, "frames": total, "audio_s": round(audio_s, 3)})
                yield _response(rows, total_frames=total)
                async for late in requests:  # the RPC ends when the client half-closes
                    raise _after_end(late.WhichOneof("kind"))
                return
            elif kind == "snapshot":
                yield await self._snapshot(stream, request.snapshot, stream_id)
            elif kind == "config":
                raise RequestError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "this stream already has its EncodeConfig: send one per stream (open a new stream to change it)",
                )
            else:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "an EncodeRequest must set one of config, pcm or end_of_audio (or snapshot)",
                )
        # A client that cancels (or disconnects) also ends the request iterator; its cancellation
        # arrives at the next await, so a real cancel is not reported as a protocol error.
        await asyncio.sleep(0)
        raise RequestError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "the request stream ended before end_of_audio: send end_of_audio to get the final rows",
        )

    async def _resume(self, stream: EncodeStream, state: bytes) -> None:
        """Load ``EncodeConfig.resume_state`` into the new ``stream``; what is wrong is INVALID_ARGUMENT."""
        try:
            await self._off_loop(stream.resume, state)
        except SnapshotError as exc:  # not an audio encoder snapshot of this version: garbage, truncated
            raise invalid(str(exc)) from None
        except ValueError as exc:  # a snapshot, but of another format or encoder configuration
            raise invalid(f"EncodeConfig.resume_state does not fit this stream: {exc}") from None

    async def _snapshot(
        self, stream: EncodeStream, request: common_pb2.SnapshotRequest, stream_id: int
    ) -> audio_encoder_pb2.EncodeResponse:
        """The stream's state now: every PCM message before the request was pushed, its rows sent."""
        state = await self._off_loop(stream.snapshot)
        limit = self.settings.max_message_bytes - _SNAPSHOT_OVERHEAD
        if len(state) > limit:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the stream's snapshot state is {len(state)} bytes, more than fits in a message of this encoder "
                f"({limit} bytes): raise --max-message-mb (LIVEACT_MAX_MESSAGE_MB) on the encoders and the client",
            )
        log.info("snapshot taken", extra={"stream": stream_id, "bytes": len(state), "next_frame": stream.next_frame})
        snap = common_pb2.StreamSnapshot(id=request.id, state=state, next_frame=stream.next_frame)
        return audio_encoder_pb2.EncodeResponse(snapshot=snap)

    def _piece_bytes(self, fmt: StreamFormat) -> int:
        """PCM bytes encoded per step: at most ``_PIECE_SECONDS``, and few enough rows to fit a response."""
        row_bytes = self.audio.layers * self.audio.channels * 4  # float32
        rows = self.settings.max_message_bytes // 2 // row_bytes - 2 * self.audio.stream_block_frames
        seconds = min(_PIECE_SECONDS, max(_MIN_PIECE_SECONDS, rows / fmt.fps))
        return max(1, round(seconds * fmt.sample_rate)) * fmt.frame_bytes

    async def _checked(self, fn: Callable[..., FeatureRows], *args: object) -> FeatureRows:
        """``fn`` off the event loop, timed and its rows counted (metrics); an ``AudioError`` (bad samples,
        too little audio) is INVALID_ARGUMENT."""
        t0 = time.monotonic()
        try:
            rows = await self._off_loop(fn, *args)
        except AudioError as exc:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        self.metrics.duration.record(time.monotonic() - t0)
        self.metrics.output.add(rows.rows.shape[0])
        return rows

    async def _off_loop(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _after_end(kind: str | None) -> RequestError:
    if kind == "snapshot":
        reason = "snapshot after end_of_audio: the stream has ended, nothing is left to resume; take snapshots before"
    else:
        reason = f"{kind or 'an empty request'} after end_of_audio: the stream has ended; half-close the requests"
    return RequestError(grpc.StatusCode.FAILED_PRECONDITION, reason)


def _response(rows: FeatureRows, total_frames: int | None = None) -> audio_encoder_pb2.EncodeResponse:
    msg = audio_encoder_pb2.FeatureRows(first_frame=rows.start, rows=tensors.to_proto(rows.rows.float()))
    if total_frames is not None:
        msg.final, msg.total_frames = True, total_frames
    return audio_encoder_pb2.EncodeResponse(rows=msg)


async def _main(settings: EncoderSettings, telemetry: Telemetry) -> None:
    executor = ThreadPoolExecutor(settings.compute_threads, thread_name_prefix="encode")
    servicer = AudioEncoder(settings, executor, telemetry.tracing)
    try:
        await run(
            settings,
            [SERVICE_NAME],
            lambda server: audio_encoder_pb2_grpc.add_AudioEncoderServicer_to_server(servicer, server),
            servicer.warm_up,
        )
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        telemetry.shutdown()


def serve(argv: list[str] | None = None) -> None:
    """Parse settings (flags, then ``LIVEACT_*``), log JSON, and serve until SIGTERM."""
    settings = EncoderSettings.parse(
        argv, description="LiveAct audio encoder: speech PCM -> one feature row per output video frame"
    )
    logs.configure(settings.log_level)
    log.info("starting", extra={"settings": asdict(settings)})
    asyncio.run(_main(settings, Telemetry(settings, "audio_encoder")))
