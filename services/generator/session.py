"""One ``Animate`` stream: client audio -> audio encoder -> DiT -> decoder -> client, overlapped.

Four tasks joined by bounded queues, so a slow peer or client throttles the others instead of
growing memory: (1) read client messages and forward PCM to the encoder stream; (2) collect the
encoder's feature rows into ``ChunkWindows``; (3) denoise chunk n as soon as its audio window is
final and hand its latents to the decoder stream; (4) turn decoded frames into ``FrameChunk``s.
While the DiT works on chunk n, the encoder is already extracting rows for n+1 and the decoder is
decoding n-1. Any failure ends the session with one gRPC status; the client's other sessions and
the server are unaffected.

Back-pressure, end to end. gRPC's HTTP/2 windows grow with the connection's bandwidth-delay
product and a finished send does not mean the peer has read it, so flow control alone does not
stop a peer from working far ahead; the session bounds what is in flight itself:

- client -> encoder: ``to_encoder`` holds at most ``audio_queue`` PCM pieces of at most
  ``PCM_PIECE_BYTES`` (a bigger AudioChunk is split), and PCM goes to the encoder only while it is
  at most ``ROWS_KEPT`` feature rows ahead of the first row a chunk still to be generated needs.
  When the queue is full the client's stream is not read and HTTP/2 flow control stops the client.
- encoder -> DiT: rows enter the ring (``ROWS_KEPT`` rows) only while that overwrites no row a
  chunk still to be generated needs; otherwise the encoder's responses are not read.
- DiT -> decoder -> client: chunk k is generated only once chunk ``k - chunk_queue`` has been handed
  to gRPC for the client, so at most ``chunk_queue`` chunks are between the DiT and the client
  (``to_decoder``, the decoder, ``out``): a slow reader slows its own session, nothing piles up.

Client protocol errors: an AudioChunk out of order, empty, not whole samples, or (PCM_F32LE) not
finite is INVALID_ARGUMENT (checked here rather than left to the encoder, whose refusal mid-stream
can reach gRPC's asyncio client as INTERNAL while the generator is still writing to it); a request
stream that ends without EndOfAudio is FAILED_PRECONDITION. A client that cancels has its session,
and its encoder and decoder streams, cancelled with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np

from liveact.audio.rows import ChunkWindows
from liveact.pipeline import Engine, chunks_needed, prepare_sampler
from liveact.sampling.audio_window import window_index
from liveact.sampling.chunking import plan_chunk
from liveact.v1 import audio_encoder_pb2, decoder_pb2, generator_pb2
from services.common.errors import RequestError
from services.common.tensors import from_proto, to_proto
from services.generator.validate import SessionParams

log = logging.getLogger(__name__)

ROWS_KEPT = 256  # feature rows held per session: a few windows (53 rows each), never the whole stream
PCM_PIECE_BYTES = 64 * 1024  # client audio goes to the encoder in pieces of at most this many bytes
_END = object()
_NO_END_YET = 2**62  # "no end known yet" for window_index: indices clamp only at frame 0


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
        self._windows_rows: dict[int, tuple[int, int]] = {}
        first, last = self._rows_needed_by(0)
        if last - first + 1 >= ROWS_KEPT:
            raise ValueError(f"ROWS_KEPT={ROWS_KEPT} cannot hold one audio window (rows {first}..{last})")
        self.chunk_queue = chunk_queue
        # progress, guarded by ``progress``: the chunk whose window _generate takes next, the chunks
        # handed to gRPC for the client, and the PCM sample frames sent to the encoder
        self.progress = asyncio.Condition()
        self.next_chunk = 0
        self.delivered = 0
        self.pcm_frames_sent = 0
        self.to_encoder: asyncio.Queue = asyncio.Queue(audio_queue)
        self.to_decoder: asyncio.Queue = asyncio.Queue(chunk_queue)
        self.out: asyncio.Queue = asyncio.Queue(chunk_queue)
        self.frames_sent = 0

    # -- the stream -------------------------------------------------------------------------------
    async def run(self, requests: AsyncIterator[generator_pb2.AnimateRequest]) -> AsyncIterator[object]:
        """Yields response messages; raises RequestError to end the stream with a status."""
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
                yield item  # returns once gRPC has taken the message for the client
                if item.WhichOneof("kind") == "frames":
                    async with self.progress:
                        self.delivered = max(self.delivered, item.frames.chunk_index + 1)
                        self.progress.notify_all()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def abort(self, exc: RequestError) -> None:
        """End the session with ``exc``'s status (from outside: e.g. the server's drain deadline)."""
        self._fail(exc)

    def _report_failure(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if not isinstance(exc, RequestError):
            log.error("session task failed", exc_info=exc, extra={"session": self.session_id, "task": task.get_name()})
            exc = RequestError(grpc.StatusCode.INTERNAL, f"{task.get_name()} failed: {exc}")
        self._fail(exc)

    def _fail(self, exc: RequestError) -> None:
        while True:  # make room: the error must reach the stream even if the client stopped reading
            try:
                self.out.put_nowait(exc)
                return
            except asyncio.QueueFull:
                self.out.get_nowait()

    # -- 1. client audio ----------------------------------------------------------------------------
    async def _read_client(self, requests: AsyncIterator[generator_pb2.AnimateRequest]) -> None:
        expected_seq = 0
        frame_bytes = self.params.frame_bytes
        piece = PCM_PIECE_BYTES - PCM_PIECE_BYTES % frame_bytes
        async for req in requests:
            kind = req.WhichOneof("kind")
            if kind == "config":
                raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, "a session takes one SessionConfig, first")
            if kind == "end_of_audio":
                break
            if kind != "audio":
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "send AudioChunk or EndOfAudio messages")
            chunk = req.audio
            if chunk.seq != expected_seq:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"AudioChunk.seq {chunk.seq} out of order: expected {expected_seq} (number chunks 0, 1, 2, ...)",
                )
            expected_seq += 1
            if not chunk.data:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"AudioChunk {chunk.seq} is empty: put at least one whole sample ({frame_bytes} bytes, "
                    f"{self.params.audio_format_name}) in each AudioChunk, and send EndOfAudio to finish",
                )
            if len(chunk.data) % frame_bytes:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"AudioChunk {chunk.seq} has {len(chunk.data)} bytes, not a multiple of {frame_bytes} "
                    f"({self.params.audio_format_name}): send whole samples",
                )
            if self.params.sample_format == "f32le" and not np.isfinite(np.frombuffer(chunk.data, "<f4")).all():
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"AudioChunk {chunk.seq} holds NaN or infinite samples: send finite float samples in [-1, 1]",
                )
            for offset in range(0, len(chunk.data), piece):  # bounded pieces, whatever the message size
                await self.to_encoder.put(chunk.data[offset : offset + piece])
        else:
            # A client that cancels also ends the request iterator; its cancellation reaches the
            # handler at its next await, so a real cancel is not reported as a protocol error.
            await asyncio.sleep(0)
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the request stream ended after {expected_seq} AudioChunk(s) without EndOfAudio: send EndOfAudio "
                "after the last AudioChunk to finish the session, and keep reading until SessionEnd",
            )
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
            async with self.progress:  # keep the encoder at most ROWS_KEPT rows ahead of the DiT
                await self.progress.wait_for(lambda: self._pcm_rows_ahead() < ROWS_KEPT)
                self.pcm_frames_sent += len(data) // self.params.frame_bytes
            yield audio_encoder_pb2.EncodeRequest(pcm=data)
        yield audio_encoder_pb2.EncodeRequest(end_of_audio=True)

    async def _encode(self) -> None:
        call = self.peers.encoder.Encode(self._encoder_requests())
        try:
            async for resp in call:
                rows = resp.rows
                block = from_proto(rows.rows) if rows.rows.shape and rows.rows.shape[0] else None
                done = 0
                while block is not None and done < block.shape[0]:
                    async with self.progress:  # never overwrite a row that a chunk still to be generated needs
                        await self.progress.wait_for(lambda: self._ring_room() > 0)
                        n = min(self._ring_room(), block.shape[0] - done)
                        self.windows.append(block[done : done + n])
                        done += n
                        self.progress.notify_all()
                if rows.final:
                    async with self.progress:
                        self.windows.finish(int(rows.total_frames))
                        self.progress.notify_all()
        except grpc.aio.AioRpcError as exc:
            raise _peer_error("audio encoder", exc) from None
        finally:
            call.cancel()  # a no-op once the call has ended; otherwise frees the encoder's stream at once

    def _rows_needed_by(self, k: int) -> tuple[int, int]:
        """The first and last feature row (absolute video frame) of chunk k's audio window."""
        if k not in self._windows_rows:
            index = window_index(self.engine.config, k, _NO_END_YET)
            self._windows_rows = {k: (int(index.min()), int(index.max()))}  # asked for one chunk at a time
        return self._windows_rows[k]

    def _ring_room(self) -> int:
        """Rows that can be appended without dropping one that chunk ``next_chunk`` or later needs."""
        ring = self.windows.ring
        return ring.capacity - (ring.end - self._rows_needed_by(self.next_chunk)[0])

    def _pcm_rows_ahead(self) -> float:
        """Feature rows the PCM sent to the encoder makes, past the first row still needed."""
        rows = self.pcm_frames_sent * self.params.fps / self.params.sample_rate
        return rows - self._rows_needed_by(self.next_chunk)[0]

    # -- 3. DiT -------------------------------------------------------------------------------------
    async def _generate(self) -> None:
        cfg = self.engine.config
        k = 0
        while True:
            async with self.progress:
                await self.progress.wait_for(
                    lambda k=k: (self._chunk_ready(k) and k < self.delivered + self.chunk_queue) or self._all_done(k)
                )
                if self._all_done(k):
                    break
                window = self.windows.window(cfg, k)  # a copy: rows only chunk k needed may now be overwritten
                self.next_chunk = k + 1
                self.progress.notify_all()
            latent = (await asyncio.to_thread(self.sampler.next_chunk, window)).latent
            log.debug("chunk generated", extra={"session": self.session_id, "chunk": k})
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
        finally:
            call.cancel()  # a no-op once the call has ended; otherwise frees the decoder's stream at once
        await self.out.put(
            generator_pb2.AnimateResponse(end=generator_pb2.SessionEnd(frames=self.frames_sent, reason="end_of_audio"))
        )
        await self.out.put(_END)


def _peer_error(peer: str, exc: grpc.aio.AioRpcError) -> RequestError:
    code = exc.code()
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return RequestError(code, f"{peer}: {exc.details()}")
    return RequestError(grpc.StatusCode.UNAVAILABLE, f"{peer} unavailable ({code.name}: {exc.details()}): retry")
