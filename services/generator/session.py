"""One ``Animate`` stream: client audio -> audio encoder -> DiT -> decoder -> client, overlapped.

Four tasks joined by bounded queues, so a slow peer or client throttles the others instead of
growing memory: (1) read client messages and forward PCM to the encoder stream; (2) collect the
encoder's feature rows into ``ChunkWindows``; (3) denoise chunk n as soon as its audio window is
final and hand its latents to the decoder stream; (4) turn decoded frames into ``FrameChunk``s.
While the DiT works on chunk n, the encoder is already extracting rows for n+1 and the decoder is
decoding n-1. Any failure ends the session with one gRPC status; the client's other sessions and
the server are unaffected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from liveact.audio.rows import ChunkWindows
from liveact.pipeline import Engine, chunks_needed, prepare_sampler
from liveact.sampling.chunking import plan_chunk
from liveact.v1 import audio_encoder_pb2, decoder_pb2, generator_pb2
from services.common.tensors import from_proto, to_proto
from services.generator.validate import SessionError, SessionParams

log = logging.getLogger(__name__)

ROWS_KEPT = 256  # feature rows held per session: a few windows (53 rows each), never the whole stream
_END = object()


@dataclass
class Peers:
    encoder: object  # AudioEncoderStub
    decoder: object  # DecoderStub


class GeneratorSession:
    def __init__(self, engine: Engine, params: SessionParams, peers: Peers, audio_queue: int, chunk_queue: int):
        self.engine, self.params, self.peers = engine, params, peers
        self.session_id = params.session_id
        self.sampler = prepare_sampler(engine, params.image, params.prompt, params.seed)
        m = engine.config.model
        self.windows = ChunkWindows(ROWS_KEPT, m.audio_layers, m.audio_channels)
        self.rows_changed = asyncio.Condition()
        self.to_encoder: asyncio.Queue = asyncio.Queue(audio_queue)
        self.to_decoder: asyncio.Queue = asyncio.Queue(chunk_queue)
        self.out: asyncio.Queue = asyncio.Queue(chunk_queue)
        self.frames_sent = 0

    # -- the stream -------------------------------------------------------------------------------
    async def run(self, requests: AsyncIterator[generator_pb2.AnimateRequest]) -> AsyncIterator[object]:
        """Yields response messages; raises SessionError to end the stream with a status."""
        tasks = [
            asyncio.create_task(self._read_client(requests), name="read_client"),
            asyncio.create_task(self._encode(), name="encode"),
            asyncio.create_task(self._generate(), name="generate"),
            asyncio.create_task(self._decode(), name="decode"),
        ]
        for t in tasks:
            t.add_done_callback(self._report_failure)
        try:
            while True:
                item = await self.out.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _report_failure(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if not isinstance(exc, SessionError):
            log.error("session task failed", exc_info=exc, extra={"session": self.session_id, "task": task.get_name()})
            exc = SessionError(grpc.StatusCode.INTERNAL, f"{task.get_name()} failed: {exc}")
        self._fail(exc)

    def _fail(self, exc: SessionError) -> None:
        while True:  # make room: the error must reach the stream even if the client stopped reading
            try:
                self.out.put_nowait(exc)
                return
            except asyncio.QueueFull:
                self.out.get_nowait()

    # -- 1. client audio ----------------------------------------------------------------------------
    async def _read_client(self, requests: AsyncIterator[generator_pb2.AnimateRequest]) -> None:
        expected_seq = 0
        async for req in requests:
            kind = req.WhichOneof("kind")
            if kind == "config":
                raise SessionError(grpc.StatusCode.FAILED_PRECONDITION, "a session takes one SessionConfig, first")
            if kind == "end_of_audio":
                break
            if kind != "audio":
                raise SessionError(grpc.StatusCode.INVALID_ARGUMENT, "send AudioChunk or EndOfAudio messages")
            chunk = req.audio
            if chunk.seq != expected_seq:
                raise SessionError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"AudioChunk.seq {chunk.seq} out of order: expected {expected_seq} (number chunks 0, 1, 2, ...)",
                )
            expected_seq += 1
            if len(chunk.data) % self.params.frame_bytes:
                raise SessionError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"AudioChunk {chunk.seq} has {len(chunk.data)} bytes, not a multiple of {self.params.frame_bytes} "
                    f"({self.params.audio_format_name}): send whole samples",
                )
            if chunk.data:
                await self.to_encoder.put(chunk.data)
        else:
            raise SessionError(grpc.StatusCode.CANCELLED, "the client closed the stream without EndOfAudio")
        await self.to_encoder.put(_END)

    # -- 2. audio encoder ---------------------------------------------------------------------------
    async def _encoder_requests(self) -> AsyncIterator[audio_encoder_pb2.EncodeRequest]:
        m = self.engine.config.model
        yield audio_encoder_pb2.EncodeRequest(
            config=audio_encoder_pb2.EncodeConfig(
                fps=self.params.fps, audio_format=self.params.audio_format, layers=m.audio_layers,
                channels=m.audio_channels,
            )
        )  # fmt: skip
        while (data := await self.to_encoder.get()) is not _END:
            yield audio_encoder_pb2.EncodeRequest(pcm=data)
        yield audio_encoder_pb2.EncodeRequest(end_of_audio=True)

    async def _encode(self) -> None:
        call = self.peers.encoder.Encode(self._encoder_requests())
        try:
            async for resp in call:
                rows = resp.rows
                async with self.rows_changed:
                    if rows.rows.shape and rows.rows.shape[0]:
                        self.windows.append(from_proto(rows.rows))
                    if rows.final:
                        self.windows.finish(int(rows.total_frames))
                    self.rows_changed.notify_all()
        except grpc.aio.AioRpcError as exc:
            raise _peer_error("audio encoder", exc) from None

    # -- 3. DiT -------------------------------------------------------------------------------------
    async def _generate(self) -> None:
        cfg = self.engine.config
        k = 0
        while True:
            async with self.rows_changed:
                await self.rows_changed.wait_for(lambda k=k: self._chunk_ready(k) or self._all_done(k))
            if self._all_done(k):
                break
            window = self.windows.window(cfg, k)
            latent = (await asyncio.to_thread(self.sampler.next_chunk, window)).latent
            start, end = plan_chunk(cfg, k).video_frames
            total = self.windows.total_frames
            keep = end - start if total is None else min(end, total) - start
            await self.to_decoder.put(
                decoder_pb2.LatentChunk(chunk_index=k, first_frame=start, latents=to_proto(latent), keep_frames=keep)
            )
            k += 1
        await self.to_decoder.put(_END)

    def _chunk_ready(self, k: int) -> bool:
        return self.windows.ready(self.engine.config, k)

    def _all_done(self, k: int) -> bool:
        total = self.windows.total_frames
        return total is not None and k >= chunks_needed(self.engine.config, total)

    # -- 4. decoder -> client -------------------------------------------------------------------------
    async def _decoder_requests(self) -> AsyncIterator[decoder_pb2.DecodeRequest]:
        p = self.params
        yield decoder_pb2.DecodeRequest(
            config=decoder_pb2.DecodeConfig(
                vae_preset=self.engine.config.vae, width=p.width, height=p.height, fps=p.fps,
                output_format=p.output_format, jpeg_quality=p.jpeg_quality,
            )
        )  # fmt: skip
        while (chunk := await self.to_decoder.get()) is not _END:
            yield decoder_pb2.DecodeRequest(chunk=chunk)
        yield decoder_pb2.DecodeRequest(end=True)

    async def _decode(self) -> None:
        call = self.peers.decoder.Decode(self._decoder_requests())
        seq = 0
        try:
            async for resp in call:
                d = resp.frames
                await self.out.put(
                    generator_pb2.AnimateResponse(
                        frames=generator_pb2.FrameChunk(
                            seq=seq, chunk_index=d.chunk_index, first_frame=d.first_frame, frame_count=d.frame_count,
                            pts_us=round(d.first_frame * 1_000_000 / self.params.fps), frames=d.frames, fmp4=d.fmp4,
                        )
                    )
                )  # fmt: skip
                seq += 1
                self.frames_sent += d.frame_count
        except grpc.aio.AioRpcError as exc:
            raise _peer_error("decoder", exc) from None
        await self.out.put(
            generator_pb2.AnimateResponse(end=generator_pb2.SessionEnd(frames=self.frames_sent, reason="end_of_audio"))
        )
        await self.out.put(_END)


def _peer_error(peer: str, exc: grpc.aio.AioRpcError) -> SessionError:
    code = exc.code()
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return SessionError(code, f"{peer}: {exc.details()}")
    return SessionError(grpc.StatusCode.UNAVAILABLE, f"{peer} unavailable ({code.name}: {exc.details()}): retry")
