"""One ``Animate`` stream: client audio -> audio encoder -> DiT -> decoder -> client, overlapped.

A composition of small parts (``docs/architecture.md`` draws it): the ``ClientReader`` checks and
logs the client's audio and queues it on the ``EncoderLink``; feature rows come back into the
``ChunkScheduler``'s ring; the DiT denoises chunk n as soon as the scheduler says its window is
final; its latents go over the ``DecoderLink``; decoded frames go to the client through
``ClientOutput``. While the DiT works on chunk n, the encoder extracts rows for n+1 and the decoder
decodes n-1. One ``asyncio.Condition`` (``progress``) guards the scheduler; each task waits on it
for its own question. Checkpoints are taken by ``SessionSnapshots`` (``--redis-url``); a resumed
session starts from a ``Restored``. Any failure ends the session with one gRPC status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial

import grpc
import torch

from liveact.parallel.ranks import RankFailure, SessionDiT
from liveact.pipeline import Engine
from liveact.sampling.chunking import plan_chunk
from liveact.v1 import audio_encoder_pb2, common_pb2, decoder_pb2, generator_pb2
from services.common.errors import RequestError
from services.common.tensors import to_proto
from services.generator.checkpoint import CheckpointWriter, CommitReport, PendingCheckpoint
from services.generator.client_reader import ClientReader
from services.generator.errors import fenced, lost_rank
from services.generator.links import DecoderLink, EncoderLink, PcmPiece, Peers, decode_config, encode_config
from services.generator.metrics import GeneratorMetrics
from services.generator.output import END, ClientOutput
from services.generator.resume import Restored
from services.generator.scheduler import ChunkScheduler, Numbering
from services.generator.snapshots import SessionSnapshots
from services.generator.tracing import ChunkTraces
from services.generator.validate import SessionParams

log = logging.getLogger(__name__)
MS_PER_S = 1000.0


class GeneratorSession:
    def __init__(
        self, engine: Engine, params: SessionParams, dit: SessionDiT, peers: Peers, audio_queue: int,
        chunk_queue: int, traces: ChunkTraces, metrics: GeneratorMetrics,
        checkpoints: CheckpointWriter | None = None, restored: Restored | None = None,
    ) -> None:  # fmt: skip
        self.engine, self.params, self.dit, self.session_id = engine, params, dit, params.session_id
        self.traces, self.metrics = traces, metrics  # one trace per chunk (tracing.py); pod metrics (metrics.py)
        self.checkpoints, self.restored, r = checkpoints, restored, restored
        self.numbering = Numbering(r.frame_offset, r.row_offset) if r is not None else Numbering()
        self.schedule = ChunkScheduler(
            engine.config, self.numbering, params.fps, params.sample_rate, chunk_queue,
            next_chunk=r.chunk_index if r else 0, pcm_frames_sent=r.audio_position.frames if r else 0,
        )  # fmt: skip
        if r is not None:
            self.schedule.restore(r.rows_first, r.rows, r.audio_total)
        self.progress = asyncio.Condition()  # guards self.schedule
        self.encoder = EncoderLink(peers.encoder, encode_config(params, engine.config, r), audio_queue)
        self.decoder = DecoderLink(peers.decoder, decode_config(params, engine.config, r), chunk_queue)
        self.reader = ClientReader(params, self.encoder, checkpoints.audio_log if checkpoints else None, r)
        self.output = ClientOutput(
            params.fps, self.numbering, chunk_queue, r.first_output_frame if r else 0, metrics, traces
        )
        self.snapshots = None if checkpoints is None else SessionSnapshots(
            checkpoints, engine.config, self.schedule, self.progress, self.reader, self.encoder, self.decoder
        )  # fmt: skip
        self.handing_off = False  # draining: checkpoint now, then end with a ResumeRequest
        self.end_reason = "end_of_audio"
        self.hand_off_to: generator_pb2.ResumeRequest | None = None

    @property
    def frames_sent(self) -> int:
        return self.output.frames_sent

    # -- the stream -------------------------------------------------------------------------------
    async def run(
        self, requests: AsyncIterator[generator_pb2.AnimateRequest]
    ) -> AsyncIterator[generator_pb2.AnimateResponse]:
        """Yields response messages; raises RequestError to end the stream with a status."""
        failure: str | None = "ended before its frames"
        jobs = {"read_client": self.reader.run(requests), "encode": self._encode(), "generate": self._generate(),
                "decode": self._decode()}  # fmt: skip
        if self.checkpoints is not None:
            jobs["lease"] = self.checkpoints.keeper.keep(self._fenced)
        tasks = [asyncio.create_task(job, name=name) for name, job in jobs.items()]
        for t in tasks:
            t.add_done_callback(self._report_failure)
        try:
            while (item := await self.output.queue.get()) is not END:
                if isinstance(item, BaseException):
                    failure = str(item)
                    raise item
                assert isinstance(item, generator_pb2.AnimateResponse)
                yield item  # returns once gRPC has taken the message for the client
                if item.WhichOneof("kind") == "frames":
                    self.output.sent(item.frames)
                    await self._changed(partial(self.schedule.delivered_chunk, item.frames.chunk_index))
            failure = None
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.traces.close(failure)
            if self.checkpoints is not None:
                await self.checkpoints.close()

    def queue_depths(self) -> dict[str, int]:
        """Items waiting in this session's queues (``liveact_generator_queue_depth``)."""
        return {"audio": self.encoder.depth(), "decoder": self.decoder.depth(), "client": self.output.depth()}

    def hand_off(self) -> None:
        """Draining: stop after the chunk in progress, checkpoint, and end telling the client to resume."""
        self.handing_off = True
        asyncio.get_running_loop().create_task(self._changed(), name="hand_off")

    def abort(self, exc: RequestError) -> None:
        """End the session with ``exc``'s status (from outside: e.g. the server's drain deadline)."""
        self.output.fail(exc)

    def _report_failure(self, task: asyncio.Task) -> None:
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if isinstance(exc, RankFailure):
            exc = lost_rank(exc)
        if not isinstance(exc, RequestError):
            log.error("session task failed", exc_info=exc, extra={"session": self.session_id, "task": task.get_name()})
            exc = RequestError(grpc.StatusCode.INTERNAL, f"{task.get_name()} failed: {exc}")
        self.output.fail(exc)

    async def _fenced(self, exc: Exception) -> None:
        self.output.fail(fenced())

    async def _changed(self, change: Callable[[], None] | None = None) -> None:
        """Apply ``change()`` to the schedule (if any) and wake every task waiting on it."""
        async with self.progress:
            if change is not None:
                change()
            self.progress.notify_all()

    # -- audio encoder -> ring ----------------------------------------------------------------------
    async def _encode(self) -> None:
        if self.restored is not None and self.restored.audio_total is not None:
            return  # resumed after the audio ended: every row came with the checkpoint
        answered = self.snapshots.encoder_answered if self.snapshots is not None else _never_asked
        await self.encoder.run(self._before_pcm, self._pcm_trace, self._rows_arrived, answered)

    async def _before_pcm(self, piece: PcmPiece) -> None:
        async with self.progress:  # keep the encoder at most ROWS_KEPT rows ahead of the DiT
            await self.progress.wait_for(self.schedule.may_send_pcm)
            self.schedule.sent_pcm(piece.after.frames)

    def _pcm_trace(self) -> dict[str, str]:
        """The trace of the chunk that the PCM sent so far completes."""
        return self.traces.carrier(self.schedule.chunk_of_pcm()) if self.traces.enabled else {}

    async def _rows_arrived(self, block: torch.Tensor | None, rows: audio_encoder_pb2.FeatureRows) -> None:
        done = 0
        while block is not None and done < block.shape[0]:
            async with self.progress:  # never overwrite a row that a chunk still to be generated needs
                await self.progress.wait_for(lambda: self.schedule.ring_room() > 0)
                part = self.schedule.add_rows(block[done:])
                if self.snapshots is not None:
                    self.snapshots.rows_added(part)
                done += part.shape[0]
                self.progress.notify_all()
        if rows.final:
            await self._changed(lambda: self.schedule.finish(int(rows.total_frames)))

    # -- DiT ------------------------------------------------------------------------------------------
    async def _generate(self) -> None:
        s, ready_at = self.schedule, self.output.ready_at
        while True:
            async with self.progress:
                await self.progress.wait_for(lambda: s.can_generate() or s.all_done() or self.handing_off)
                if s.all_done() or self.handing_off:
                    break
                k, window = s.take()
                self.progress.notify_all()
            ready_at[k] = time.monotonic()
            snapshot = self.snapshots is not None and self.snapshots.due(k + 1)
            denoise = self.traces.child(k, "generator.denoise")
            with self.traces.current(denoise):  # log lines carry the chunk's trace id
                latent, dit_state = await self.dit.step(window, snapshot)
                denoise.end()
                self.metrics.chunk_denoise.record(time.monotonic() - ready_at[k])
                log.debug("chunk generated", extra={"session": self.session_id, "chunk": k})
            await self.decoder.send(
                decoder_pb2.LatentChunk(
                    chunk_index=k, first_frame=plan_chunk(self.engine.config, k).video_frames[0],
                    latents=to_proto(latent), keep_frames=s.keep_frames(k), trace_context=self.traces.carrier(k),
                )
            )  # fmt: skip
            if snapshot and self.snapshots is not None:
                await self.snapshots.take(k + 1, dit_state, self._checkpoint_written, self._fenced)
        if self.handing_off and not s.all_done():
            await self._checkpoint_for_hand_off(s.next_chunk)
        await self.decoder.end()

    async def _checkpoint_for_hand_off(self, k: int) -> None:
        """A checkpoint before chunk k (after the one in flight); then the session may end with a resume."""
        cp = self.checkpoints
        if cp is None:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                "this server is draining and keeps no session state (no --redis-url): start a new session elsewhere",
            )
        await cp.settled()  # the checkpoint already being written
        if not cp.disabled and self.snapshots is not None:
            await self.snapshots.take(k, await self.dit.export(), self._checkpoint_written, self._fenced)
            await cp.settled()
        if not cp.written and self.restored is None:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                "this server is draining and could not checkpoint the session: start a new session elsewhere",
            )
        self.end_reason = "draining: resume elsewhere"
        self.hand_off_to = generator_pb2.ResumeRequest(
            session_id=self.session_id, resume_secret=self.params.resume_secret, mode=generator_pb2.ResumeRequest.EXACT
        )

    async def _checkpoint_written(self, version: int, pending: PendingCheckpoint, report: CommitReport) -> None:
        notice = generator_pb2.CheckpointNotice(
            next_frame=pending.next_frame, session_id=self.session_id, resume_secret=self.params.resume_secret,
            version=version, replay_seconds=report.replay_s, checkpoints_skipped=report.skipped,
            stall_ms=report.stall_s * MS_PER_S,
        )  # fmt: skip
        await self.output.put(generator_pb2.AnimateResponse(checkpoint=notice))

    # -- decoder -> client ----------------------------------------------------------------------------
    async def _decode(self) -> None:
        await self.decoder.run(self._frames_arrived)
        end = generator_pb2.SessionEnd(frames=self.output.frames_sent, reason=self.end_reason)
        if self.checkpoints is not None:
            end.checkpoints_written, end.checkpoints_skipped = self.checkpoints.written, self.checkpoints.skipped
        if self.hand_off_to is not None:
            end.resume.CopyFrom(self.hand_off_to)
            end.resume.next_frame = self.output.next_frame
        await self.output.put(generator_pb2.AnimateResponse(end=end))
        await self.output.put(END)

    async def _frames_arrived(self, d: decoder_pb2.DecodedFrames) -> None:
        if not await self.output.frames(d):  # nothing to send: delivered at once
            await self._changed(lambda: self.schedule.delivered_chunk(d.chunk_index))


def _never_asked(snapshot: common_pb2.StreamSnapshot) -> None:
    """Without checkpoints no encoder snapshot is asked for (the link logs any as stale)."""
