"""What a session sends its client: one bounded response queue, frames numbered in the client's time.

The queue holds at most ``chunk_queue`` responses (a slow reader slows its own session); an error
makes room for itself, so it reaches the stream even when the client stopped reading. Decoded
frames become ``FrameChunk``s numbered from 0 per stream (``seq``) and in the client's frame
numbering (``first_frame``, ``pts_us``); when gRPC has taken one for the client its chunk's
latency, the first-frame time and the chunk's trace are recorded.
"""

from __future__ import annotations

import asyncio
import time

from liveact.v1 import decoder_pb2, generator_pb2
from services.common.errors import RequestError
from services.generator.metrics import GeneratorMetrics
from services.generator.scheduler import Numbering
from services.generator.tracing import ChunkTraces

__all__ = ["END", "ClientOutput"]

END = object()  # the last item of the queue: the stream ends with OK
US_PER_S = 1_000_000


class ClientOutput:
    def __init__(self, fps: float, numbering: Numbering, chunk_queue: int, first_frame: int,
                 metrics: GeneratorMetrics, traces: ChunkTraces) -> None:  # fmt: skip
        self.fps, self.numbering, self.metrics, self.traces = fps, numbering, metrics, traces
        self.queue: asyncio.Queue = asyncio.Queue(chunk_queue)  # AnimateResponse | RequestError | END
        self.started = time.monotonic()
        self.ready_at: dict[int, float] = {}  # chunk -> when its window was taken (<= chunk_queue + 1 entries)
        self.chunks = 0  # FrameChunks queued (their seq)
        self.frames_sent = 0  # frames queued for the client
        self.frames_out = 0  # frames handed to gRPC for the client
        self.next_frame = first_frame  # client frame after the last one queued

    def depth(self) -> int:
        return self.queue.qsize()

    async def put(self, response: generator_pb2.AnimateResponse | object) -> None:
        await self.queue.put(response)

    def fail(self, exc: RequestError) -> None:
        """End the stream with ``exc``'s status, ahead of anything the client has not read."""
        while True:
            try:
                self.queue.put_nowait(exc)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()

    async def frames(self, d: decoder_pb2.DecodedFrames) -> bool:
        """Queue a decoded chunk for the client; False if it had no frame to send (a resumed chunk
        wholly before the client's next frame), which counts as delivered at once."""
        if d.frame_count == 0 and not d.fmp4:
            self.ready_at.pop(d.chunk_index, None)
            self.traces.delivered(d.chunk_index)
            return False
        first = self.numbering.client_frame(d.first_frame)
        frames = generator_pb2.FrameChunk(
            seq=self.chunks, chunk_index=d.chunk_index, first_frame=first, frame_count=d.frame_count,
            pts_us=round(first * US_PER_S / self.fps), frames=d.frames, fmp4=d.fmp4,
        )  # fmt: skip
        await self.queue.put(generator_pb2.AnimateResponse(frames=frames))
        self.chunks += 1
        self.frames_sent += d.frame_count
        self.next_frame = first + d.frame_count
        return True

    def sent(self, frames: generator_pb2.FrameChunk) -> None:
        """A FrameChunk was handed to gRPC: metrics, and the end of the chunk's trace."""
        now = time.monotonic()
        if self.frames_out == 0:
            self.metrics.first_frame.record(now - self.started)
        self.frames_out += frames.frame_count
        self.metrics.sent(frames.frame_count)
        if (ready := self.ready_at.pop(frames.chunk_index, None)) is not None:
            self.metrics.chunk_latency.record(now - ready)
        self.traces.delivered(frames.chunk_index, frames.first_frame, frames.frame_count)
