"""A session's client stream after its config: AudioChunks checked, logged, and passed on as PCM.

Each AudioChunk is checked by ``validate.check_audio_chunk`` (order, whole samples, finite floats),
written to the session's audio log before it goes anywhere (``audio_log.py``: an exact resume
replays it), and split into pieces of at most ``PCM_PIECE_BYTES`` for the encoder link, whatever
the message size. A resumed session first replays the audio stored since its checkpoint.

``position`` is the audio position right after the last piece queued for the encoder; the reader
changes it and queues the piece without awaiting in between, so a snapshot marker queued at any
moment sees a position that matches the PCM before it.

Protocol errors (``RequestError``): a second SessionConfig is FAILED_PRECONDITION; anything but
AudioChunk and EndOfAudio, and any bad AudioChunk, is INVALID_ARGUMENT; a request stream that ends
without EndOfAudio is FAILED_PRECONDITION.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from liveact.state.schema import AudioPosition
from liveact.state.store import FencedError
from liveact.v1 import generator_pb2
from services.common.errors import RequestError
from services.generator.audio_log import AudioLog
from services.generator.errors import fenced
from services.generator.links import EncoderLink, PcmPiece
from services.generator.resume import Restored
from services.generator.validate import SessionParams, check_audio_chunk

__all__ = ["PCM_PIECE_BYTES", "ClientReader"]

PCM_PIECE_BYTES = 64 * 1024  # client audio goes to the encoder in pieces of at most this many bytes


class ClientReader:
    def __init__(
        self, params: SessionParams, encoder: EncoderLink, audio_log: AudioLog | None, restored: Restored | None
    ) -> None:
        self.params, self.encoder, self.audio_log, self.restored = params, encoder, audio_log, restored
        self.position = restored.audio_position if restored is not None else AudioPosition()

    async def run(self, requests: AsyncIterator[generator_pb2.AnimateRequest]) -> None:
        r = self.restored
        if r is not None:  # exact resume: the stored audio since the checkpoint first
            for seq, data in r.replay:
                await self._queue(seq, data, r.audio_position.offset if seq == r.audio_position.seq else 0)
        ended = r is not None and r.audio_total is not None  # every row came with the checkpoint
        expected_seq = r.next_audio_seq if r is not None else 0
        async for req in requests:
            kind = req.WhichOneof("kind")
            if kind == "config":
                raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, "a session takes one SessionConfig, first")
            if kind == "end_of_audio":
                break
            if kind != "audio":
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "send AudioChunk or EndOfAudio messages")
            chunk = req.audio
            check_audio_chunk(self.params, chunk, expected_seq, audio_ended=ended)
            expected_seq += 1
            await self._log(chunk.seq, chunk.data)
            # after a resume with nothing to replay, the encoder state may already hold part of it
            partial = r is not None and not r.replay and chunk.seq == r.audio_position.seq
            await self._queue(chunk.seq, chunk.data, r.audio_position.offset if r is not None and partial else 0)
        else:
            # A client that cancels also ends the request iterator; its cancellation reaches the
            # handler at its next await, so a real cancel is not reported as a protocol error.
            await asyncio.sleep(0)
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the request stream ended after {expected_seq} AudioChunk(s) without EndOfAudio: send EndOfAudio "
                "after the last AudioChunk to finish the session, and keep reading until SessionEnd",
            )
        if not ended:
            self.encoder.end()

    async def _log(self, seq: int, data: bytes) -> None:
        """Store the AudioChunk for an exact resume before it goes anywhere."""
        if self.audio_log is None:
            return
        try:
            await self.audio_log.append(seq, data)
        except FencedError:
            raise fenced() from None

    async def _queue(self, seq: int, data: bytes, offset: int = 0) -> None:
        """AudioChunk ``seq``'s bytes from ``offset`` on -> bounded pieces for the encoder."""
        frame_bytes = self.params.frame_bytes
        piece = PCM_PIECE_BYTES - PCM_PIECE_BYTES % frame_bytes
        for start in range(offset, len(data), piece):
            stop = min(start + piece, len(data))
            await self.encoder.room()
            # position and queue change together: a marker queued meanwhile sees both before this piece
            frames = self.position.frames + (stop - start) // frame_bytes
            whole = stop == len(data)
            self.position = AudioPosition(seq + 1, 0, frames) if whole else AudioPosition(seq, stop, frames)
            self.encoder.put_pcm(PcmPiece(data[start:stop], self.position))
