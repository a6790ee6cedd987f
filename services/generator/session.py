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

Checkpoints (``--redis-url``; ``checkpoint.py``): every AudioChunk is written to the session's
Redis audio log before it goes on; after a due chunk the DiT state is copied in the DiT thread,
snapshot markers travel in order through the encoder and decoder streams, and ``CheckpointWriter``
writes the result in the background. A resumed session (``resume.py``) starts from a ``Restored``:
the DiT state, ring rows and stream states of the checkpoint, and the stored audio to replay first.

The DiT itself is a ``SessionDiT`` (``liveact.parallel.ranks``): a sampler in this process, or one
on every tensor-parallel rank of a ``--tp N`` generator, stepped together; a lost rank ends the
session with UNAVAILABLE (the client resumes it on another replica from its last checkpoint).

Client protocol errors: an AudioChunk out of order, empty, not whole samples, or (PCM_F32LE) not
finite is INVALID_ARGUMENT (checked here rather than left to the encoder, whose refusal mid-stream
can reach gRPC's asyncio client as INTERNAL while the generator is still writing to it); a request
stream that ends without EndOfAudio is FAILED_PRECONDITION. A client that cancels has its session,
and its encoder and decoder streams, cancelled with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np

from liveact.audio.rows import ChunkWindows
from liveact.parallel.ranks import RankFailure, SessionDiT
from liveact.pipeline import Engine, chunks_needed
from liveact.sampling.audio_window import window_index
from liveact.sampling.chunking import chunk_needing_row, plan_chunk
from liveact.state.store import FencedError
from liveact.v1 import audio_encoder_pb2, common_pb2, decoder_pb2, generator_pb2
from services.common.errors import RequestError
from services.common.tensors import from_proto, to_proto
from services.generator.checkpoint import AudioPosition, CheckpointWriter, PendingCheckpoint
from services.generator.metrics import GeneratorMetrics
from services.generator.resume import Restored
from services.generator.tracing import ChunkTraces
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


@dataclass(frozen=True)
class PcmPiece:
    """Client PCM on its way to the encoder, and the audio position right after it."""

    data: bytes
    after: AudioPosition


@dataclass(frozen=True)
class Marker:
    """A snapshot request travelling in order with the PCM or latents of a stream."""

    id: int


class GeneratorSession:
    def __init__(
        self,
        engine: Engine,
        params: SessionParams,
        dit: SessionDiT,
        peers: Peers,
        audio_queue: int,
        chunk_queue: int,
        traces: ChunkTraces,
        metrics: GeneratorMetrics,
        checkpoints: CheckpointWriter | None = None,
        restored: Restored | None = None,
    ):
        self.engine, self.params, self.dit, self.peers = engine, params, dit, peers
        self.traces, self.metrics = traces, metrics  # one trace per chunk (tracing.py); pod metrics (metrics.py)
        self.started = time.monotonic()
        self.ready_at: dict[int, float] = {}  # chunk -> when its window was taken (<= chunk_queue + 1 entries)
        self.session_id = params.session_id
        m = engine.config.model
        self.windows = ChunkWindows(ROWS_KEPT, m.audio_layers, m.audio_channels)
        self._windows_rows: dict[int, tuple[int, int]] = {}
        self.chunk_queue = chunk_queue
        self.checkpoints = checkpoints
        self.restored = restored
        self.pending: PendingCheckpoint | None = None
        # progress, guarded by ``progress``: the chunk whose window _generate takes next, the chunks
        # handed to gRPC for the client, and the PCM sample frames sent to the encoder
        self.progress = asyncio.Condition()
        if restored is None:
            self.next_chunk = 0
            self.audio_position = AudioPosition()
        else:
            self.next_chunk = restored.chunk_index
            self.audio_position = restored.audio_position
            self.windows.ring.restart_at(restored.rows_first)  # the ring continues at the stored rows
            if restored.rows.dim() == 3 and restored.rows.shape[0]:
                self.windows.append(restored.rows)
            if restored.audio_total is not None:
                self.windows.finish(restored.audio_total)
        first, last = self._rows_needed_by(self.next_chunk)
        if last - first + 1 >= ROWS_KEPT:
            raise ValueError(f"ROWS_KEPT={ROWS_KEPT} cannot hold one audio window (rows {first}..{last})")
        # client frame = model frame + frame_offset; model row = encoder row + row_offset (LIVE resumes)
        self.frame_offset = restored.frame_offset if restored is not None else 0
        self.row_offset = restored.row_offset if restored is not None else 0
        self.first_chunk = self.next_chunk
        self.delivered = self.next_chunk
        self.pcm_frames_sent = self.audio_position.frames
        self.audio_queue = audio_queue
        self.audio_slots = asyncio.Semaphore(audio_queue)  # client PCM pieces queued for the encoder
        self.to_encoder: asyncio.Queue = asyncio.Queue()  # PcmPiece (<= audio_queue, see audio_slots) | Marker | _END
        self.to_decoder: asyncio.Queue = asyncio.Queue(chunk_queue)
        self.out: asyncio.Queue = asyncio.Queue(chunk_queue)
        self.frames_sent = 0
        self.frames_out = 0  # frames handed to gRPC for the client
        self.encoder_ended = False  # EndOfAudio queued for the encoder: no more checkpoints
        self.handing_off = False  # draining: checkpoint now, then end with a ResumeRequest
        self.end_reason = "end_of_audio"
        self.hand_off_to: generator_pb2.ResumeRequest | None = None
        self.next_frame_out = restored.first_output_frame if restored is not None else 0  # after the last one sent

    # -- the stream -------------------------------------------------------------------------------
    async def run(self, requests: AsyncIterator[generator_pb2.AnimateRequest]) -> AsyncIterator[object]:
        """Yields response messages; raises RequestError to end the stream with a status."""
        failure: str | None = "ended before its frames"
        tasks = [
            asyncio.create_task(self._read_client(requests), name="read_client"),
            asyncio.create_task(self._encode(), name="encode"),
            asyncio.create_task(self._generate(), name="generate"),
            asyncio.create_task(self._decode(), name="decode"),
        ]
        if self.checkpoints is not None:
            tasks.append(asyncio.create_task(self.checkpoints.keep_lease(self._fenced), name="lease"))
        for t in tasks:
            t.add_done_callback(self._report_failure)
        try:
            while True:
                item = await self.out.get()
                if item is _END:
                    failure = None
                    break
                if isinstance(item, BaseException):
                    failure = str(item)
                    raise item
                yield item  # returns once gRPC has taken the message for the client
                if item.WhichOneof("kind") == "frames":
                    self._sent(item.frames)
                    await self._delivered(item.frames.chunk_index)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.traces.close(failure)
            if self.checkpoints is not None:
                await self.checkpoints.close()

    def queue_depths(self) -> dict[str, int]:
        """Items waiting in this session's queues (``liveact_generator_queue_depth``)."""
        return {"audio": self.to_encoder.qsize(), "decoder": self.to_decoder.qsize(), "client": self.out.qsize()}

    def _sent(self, frames: generator_pb2.FrameChunk) -> None:
        """A FrameChunk was handed to gRPC: metrics, and the end of the chunk's trace."""
        now = time.monotonic()
        if self.frames_out == 0:
            self.metrics.first_frame.record(now - self.started)
        self.frames_out += frames.frame_count
        self.metrics.sent(frames.frame_count)
        if (ready := self.ready_at.pop(frames.chunk_index, None)) is not None:
            self.metrics.chunk_latency.record(now - ready)
        self.traces.delivered(frames.chunk_index, frames.first_frame, frames.frame_count)

    def hand_off(self) -> None:
        """Draining: stop after the chunk in progress, checkpoint, and end telling the client to resume."""
        self.handing_off = True
        asyncio.get_running_loop().create_task(self._wake(), name="hand_off")

    async def _wake(self) -> None:
        async with self.progress:
            self.progress.notify_all()

    def abort(self, exc: RequestError) -> None:
        """End the session with ``exc``'s status (from outside: e.g. the server's drain deadline)."""
        self._fail(exc)

    def _report_failure(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, RankFailure):
            exc = lost_rank(exc)
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
    async def _queue_pcm(self, seq: int, data: bytes, offset: int = 0) -> None:
        """AudioChunk ``seq``'s bytes from ``offset`` on -> bounded pieces for the encoder."""
        frame_bytes = self.params.frame_bytes
        piece = PCM_PIECE_BYTES - PCM_PIECE_BYTES % frame_bytes
        for start in range(offset, len(data), piece):  # bounded pieces, whatever the message size
            stop = min(start + piece, len(data))
            await self.audio_slots.acquire()
            # position and queue change together: a Marker queued meanwhile sees both before this piece
            frames = self.audio_position.frames + (stop - start) // frame_bytes
            whole = stop == len(data)
            self.audio_position = AudioPosition(seq + 1, 0, frames) if whole else AudioPosition(seq, stop, frames)
            self.to_encoder.put_nowait(PcmPiece(data[start:stop], self.audio_position))

    async def _log_audio(self, seq: int, data: bytes) -> None:
        """Store the AudioChunk for an exact resume before it goes anywhere (``CheckpointWriter.log_audio``)."""
        if self.checkpoints is None:
            return
        try:
            await self.checkpoints.log_audio(seq, data)
        except FencedError:
            raise _fenced() from None

    async def _read_client(self, requests: AsyncIterator[generator_pb2.AnimateRequest]) -> None:
        r = self.restored
        if r is not None:  # exact resume: the stored audio since the checkpoint first
            for seq, data in r.replay:
                await self._queue_pcm(seq, data, r.audio_position.offset if seq == r.audio_position.seq else 0)
        expected_seq = self.restored.next_audio_seq if self.restored is not None else 0
        frame_bytes = self.params.frame_bytes
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
                    f"AudioChunk.seq {chunk.seq} out of order: expected {expected_seq} (number chunks 0, 1, 2, ...; "
                    "after a resume, continue at SessionHeader.next_audio_seq)",
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
            if r is not None and r.audio_total is not None:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"this session's audio ended before AudioChunk {chunk.seq}: send only EndOfAudio after resuming",
                )
            await self._log_audio(chunk.seq, chunk.data)
            # after a resume with nothing to replay, the encoder state may already hold part of it
            partial = r is not None and not r.replay and chunk.seq == r.audio_position.seq
            skip = r.audio_position.offset if partial else 0
            await self._queue_pcm(chunk.seq, chunk.data, skip)
        else:
            # A client that cancels also ends the request iterator; its cancellation reaches the
            # handler at its next await, so a real cancel is not reported as a protocol error.
            await asyncio.sleep(0)
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the request stream ended after {expected_seq} AudioChunk(s) without EndOfAudio: send EndOfAudio "
                "after the last AudioChunk to finish the session, and keep reading until SessionEnd",
            )
        self.encoder_ended = True
        if r is None or r.audio_total is None:
            self.to_encoder.put_nowait(_END)

    # -- 2. audio encoder ---------------------------------------------------------------------------
    async def _encoder_requests(self) -> AsyncIterator[audio_encoder_pb2.EncodeRequest]:
        m = self.engine.config.model
        yield audio_encoder_pb2.EncodeRequest(
            config=audio_encoder_pb2.EncodeConfig(
                fps=self.params.fps, audio_format=self.params.audio_format, layers=m.audio_layers,
                channels=m.audio_channels,
                resume_state=self.restored.encoder_state if self.restored is not None else b"",
            )
        )  # fmt: skip
        while (item := await self.to_encoder.get()) is not _END:
            if isinstance(item, Marker):
                yield audio_encoder_pb2.EncodeRequest(snapshot=common_pb2.SnapshotRequest(id=item.id))
                continue
            self.audio_slots.release()
            async with self.progress:  # keep the encoder at most ROWS_KEPT rows ahead of the DiT
                await self.progress.wait_for(lambda: self._pcm_rows_ahead() < ROWS_KEPT)
                self.pcm_frames_sent = item.after.frames
            yield audio_encoder_pb2.EncodeRequest(pcm=item.data, trace_context=self._pcm_trace())
        yield audio_encoder_pb2.EncodeRequest(end_of_audio=True, trace_context=self._pcm_trace())  # the last rows

    async def _encode(self) -> None:
        if self.restored is not None and self.restored.audio_total is not None:
            return  # resumed after the audio ended: every row came with the checkpoint
        call = self.peers.encoder.Encode(self._encoder_requests())
        try:
            async for resp in call:
                if resp.HasField("snapshot"):
                    self._snapshot_arrived(resp.snapshot, "encoder")
                    continue
                rows = resp.rows
                block = from_proto(rows.rows) if rows.rows.shape and rows.rows.shape[0] else None
                done = 0
                while block is not None and done < block.shape[0]:
                    async with self.progress:  # never overwrite a row that a chunk still to be generated needs
                        await self.progress.wait_for(lambda: self._ring_room() > 0)
                        n = min(self._ring_room(), block.shape[0] - done)
                        part = block[done : done + n]
                        self.windows.append(part)
                        if self.pending is not None and self.pending.collecting_rows:
                            self.pending.rows.append(part.clone())
                        done += n
                        self.progress.notify_all()
                if rows.final:
                    async with self.progress:
                        self.windows.finish(int(rows.total_frames) + self.row_offset)
                        self.progress.notify_all()
        except grpc.aio.AioRpcError as exc:
            raise _peer_error("audio encoder", exc) from None
        finally:
            call.cancel()  # a no-op once the call has ended; otherwise frees the encoder's stream at once

    def _snapshot_arrived(self, snap: common_pb2.StreamSnapshot, peer: str) -> None:
        p = self.pending
        if p is None or snap.id != p.id:
            log.warning("stale snapshot ignored", extra={"session": self.session_id, "peer": peer, "id": snap.id})
            return
        if peer == "encoder":
            if snap.next_frame + self.row_offset != self.windows.ring.end:
                raise RuntimeError(f"encoder snapshot at row {snap.next_frame}; {self.windows.ring.end} rows arrived")
            p.collecting_rows = False
            p.encoder_state.set_result(snap.state)
        else:
            p.decoder_state.set_result(snap.state)

    def _rows_needed_by(self, k: int) -> tuple[int, int]:
        """The first and last feature row (absolute video frame) of chunk k's audio window."""
        if k not in self._windows_rows:
            index = window_index(self.engine.config, k, _NO_END_YET)
            self._windows_rows = {k: (int(index.min()), int(index.max()))}  # asked for one chunk at a time
        return self._windows_rows[k]

    def _pcm_trace(self) -> dict[str, str]:
        """The trace of the chunk that the PCM sent so far completes (its last row is that chunk's)."""
        if not self.traces.enabled:
            return {}
        last_row = max(int(self._pcm_rows()) - 1, 0)
        return self.traces.carrier(max(chunk_needing_row(self.engine.config, last_row), self.next_chunk))

    def _ring_room(self) -> int:
        """Rows that can be appended without dropping one that chunk ``next_chunk`` or later needs."""
        ring = self.windows.ring
        return ring.capacity - (ring.end - self._rows_needed_by(self.next_chunk)[0])

    def _pcm_rows(self) -> float:
        """Feature rows (model numbering) the PCM sent to the encoder makes."""
        return self.pcm_frames_sent * self.params.fps / self.params.sample_rate + self.row_offset

    def _pcm_rows_ahead(self) -> float:
        """Feature rows the PCM sent to the encoder makes, past the first row still needed."""
        return self._pcm_rows() - self._rows_needed_by(self.next_chunk)[0]

    # -- 3. DiT -------------------------------------------------------------------------------------
    async def _generate(self) -> None:
        cfg = self.engine.config
        k = self.next_chunk
        while True:
            async with self.progress:
                await self.progress.wait_for(
                    lambda k=k: (
                        (self._chunk_ready(k) and k < self.delivered + self.chunk_queue)
                        or self._all_done(k)
                        or self.handing_off
                    )
                )
                if self._all_done(k) or self.handing_off:
                    break
                window = self.windows.window(cfg, k)  # a copy: rows only chunk k needed may now be overwritten
                self.next_chunk = k + 1
                self.progress.notify_all()
            self.ready_at[k] = time.monotonic()
            snapshot = self._checkpoint_due(k + 1)
            denoise = self.traces.child(k, "generator.denoise")
            with self.traces.current(denoise):  # log lines carry the chunk's trace id
                latent, dit_state = await self.dit.step(window, snapshot)
                denoise.end()
                self.metrics.chunk_denoise.record(time.monotonic() - self.ready_at[k])
                log.debug("chunk generated", extra={"session": self.session_id, "chunk": k})
            start, end = plan_chunk(cfg, k).video_frames
            total = self.windows.total_frames
            keep = end - start if total is None else min(end, total) - start
            await self.to_decoder.put(
                decoder_pb2.LatentChunk(
                    chunk_index=k, first_frame=start, latents=to_proto(latent), keep_frames=keep,
                    trace_context=self.traces.carrier(k),
                )
            )  # fmt: skip
            if dit_state is not None:
                await self._start_checkpoint(k + 1, dit_state)
            k += 1
        if self.handing_off and not self._all_done(k):
            await self._checkpoint_for_hand_off(k)
        await self.to_decoder.put(_END)

    async def _checkpoint_for_hand_off(self, k: int) -> None:
        """A checkpoint before chunk k (after the one in flight); then the session may end with a resume."""
        cp = self.checkpoints
        if cp is None:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                "this server is draining and keeps no session state (no --redis-url): start a new session elsewhere",
            )
        if cp.task is not None:
            await asyncio.gather(cp.task, return_exceptions=True)  # the checkpoint already being written
        if not cp.disabled:
            await self._start_checkpoint(k, await self.dit.export())
            if cp.task is not None:
                await asyncio.gather(cp.task, return_exceptions=True)
        if not cp.written and self.restored is None:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                "this server is draining and could not checkpoint the session: start a new session elsewhere",
            )
        self.end_reason = "draining: resume elsewhere"
        self.hand_off_to = generator_pb2.ResumeRequest(
            session_id=self.session_id, resume_secret=self.params.resume_secret, mode=generator_pb2.ResumeRequest.EXACT
        )

    def _checkpoint_due(self, chunks_done: int) -> bool:
        cp = self.checkpoints
        if cp is None or (self.encoder_ended and self.windows.total_frames is None):
            return False  # audio ended but its last rows are still on their way: wait for them
        return cp.due(chunks_done)

    async def _start_checkpoint(self, next_chunk: int, dit_state: list[dict]) -> None:
        """Fix the audio rows held now, send both snapshot markers, write in the background."""
        cp = self.checkpoints
        async with self.progress:
            total = self.windows.total_frames
            if self.encoder_ended and total is None:  # EndOfAudio went to the encoder meanwhile: too late
                return
            if total is None and not cp.exact_from(self.audio_position.seq):
                return  # the audio log has a gap after this point: the checkpoint could not be replayed
            first = self._rows_needed_by(next_chunk)[0]
            end = self.windows.ring.end
            first = min(first, end)
            rows = [self.windows.ring.get(first, end)]  # (n, L, C), n = 0 when no row is held yet
            pending = PendingCheckpoint(
                id=cp.next_id(), chunk_index=next_chunk, dit=dit_state, rows=rows, audio=self.audio_position,
                next_frame=plan_chunk(self.engine.config, next_chunk).video_frames[0] + self.frame_offset,
                rows_first=first, audio_total=total, frame_offset=self.frame_offset,
                row_offset=self.row_offset,
            )  # fmt: skip
            self.pending = pending
            if total is None:
                self.to_encoder.put_nowait(Marker(pending.id))  # after all PCM queued so far: audio_position
            else:  # every row is held: no encoder state needed
                pending.collecting_rows = False
                pending.encoder_state.set_result(b"")
        await self.to_decoder.put(Marker(pending.id))  # right after chunk next_chunk - 1
        cp.start(pending, self._checkpoint_written, self._fenced)

    async def _checkpoint_written(self, version: int, pending: PendingCheckpoint) -> None:
        if self.pending is pending:
            self.pending = None
        await self.out.put(
            generator_pb2.AnimateResponse(
                checkpoint=generator_pb2.CheckpointNotice(
                    next_frame=pending.next_frame, session_id=self.session_id,
                    resume_secret=self.params.resume_secret, version=version,
                )
            )
        )  # fmt: skip

    async def _fenced(self, exc: Exception) -> None:
        self._fail(_fenced())

    def _chunk_ready(self, k: int) -> bool:
        return self.windows.ready(self.engine.config, k)

    def _all_done(self, k: int) -> bool:
        total = self.windows.total_frames
        return total is not None and k >= chunks_needed(self.engine.config, total)

    # -- 4. decoder -> client -------------------------------------------------------------------------
    async def _decoder_requests(self) -> AsyncIterator[decoder_pb2.DecodeRequest]:
        p = self.params
        r = self.restored
        yield decoder_pb2.DecodeRequest(
            config=decoder_pb2.DecodeConfig(
                vae_preset=self.engine.config.vae, width=p.width, height=p.height, fps=p.fps,
                output_format=p.output_format, jpeg_quality=p.jpeg_quality,
                decode_mode=decoder_pb2.CONTEXT if p.decode_mode == "context" else decoder_pb2.STREAM,
                resume_state=r.decoder_state if r is not None else b"",
                first_output_frame=r.first_output_frame - r.frame_offset if r is not None else 0,
            )
        )  # fmt: skip
        while (item := await self.to_decoder.get()) is not _END:
            if isinstance(item, Marker):
                yield decoder_pb2.DecodeRequest(snapshot=common_pb2.SnapshotRequest(id=item.id))
            else:
                yield decoder_pb2.DecodeRequest(chunk=item)
        yield decoder_pb2.DecodeRequest(end=True)

    async def _decode(self) -> None:
        call = self.peers.decoder.Decode(self._decoder_requests())
        seq = 0
        try:
            async for resp in call:
                if resp.HasField("snapshot"):
                    self._snapshot_arrived(resp.snapshot, "decoder")
                    continue
                d = resp.frames
                first = d.first_frame + self.frame_offset  # the client's numbering
                if d.frame_count == 0 and not d.fmp4:  # a resumed chunk wholly before the client's next frame
                    self.ready_at.pop(d.chunk_index, None)
                    self.traces.delivered(d.chunk_index)
                    await self._delivered(d.chunk_index)
                    continue
                await self.out.put(
                    generator_pb2.AnimateResponse(
                        frames=generator_pb2.FrameChunk(
                            seq=seq, chunk_index=d.chunk_index, first_frame=first, frame_count=d.frame_count,
                            pts_us=round(first * 1_000_000 / self.params.fps), frames=d.frames, fmp4=d.fmp4,
                        )
                    )
                )  # fmt: skip
                seq += 1
                self.frames_sent += d.frame_count
                self.next_frame_out = first + d.frame_count
        except grpc.aio.AioRpcError as exc:
            raise _peer_error("decoder", exc) from None
        finally:
            call.cancel()  # a no-op once the call has ended; otherwise frees the decoder's stream at once
        end = generator_pb2.SessionEnd(frames=self.frames_sent, reason=self.end_reason)
        if self.hand_off_to is not None:
            end.resume.CopyFrom(self.hand_off_to)
            end.resume.next_frame = self.next_frame_out
        await self.out.put(generator_pb2.AnimateResponse(end=end))
        await self.out.put(_END)

    async def _delivered(self, chunk_index: int) -> None:
        async with self.progress:
            self.delivered = max(self.delivered, chunk_index + 1)
            self.progress.notify_all()


def _fenced() -> RequestError:
    return RequestError(
        grpc.StatusCode.ABORTED,
        "another generator took this session over (its lease has a newer fencing token): continue on the stream "
        "that resumed it",
    )


def lost_rank(why: object) -> RequestError:
    """UNAVAILABLE for a session (or a session start) on a generator whose tensor-parallel ranks failed."""
    return RequestError(
        grpc.StatusCode.UNAVAILABLE,
        f"this generator lost a tensor-parallel rank ({why}): resume the session on another replica",
    )


def _peer_error(peer: str, exc: grpc.aio.AioRpcError) -> RequestError:
    code = exc.code()
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return RequestError(code, f"{peer}: {exc.details()}")
    return RequestError(grpc.StatusCode.UNAVAILABLE, f"{peer} unavailable ({code.name}: {exc.details()}): retry")
