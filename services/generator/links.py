"""A session's two peer streams: ``Encode`` to the audio encoder and ``Decode`` to the decoder.

Each link owns its call, the queue its request stream is read from, and the futures of the
snapshots asked of it. A snapshot marker travels in order with the PCM (or latents) of its stream:
the peer answers with its state once it has processed everything before the marker, and the link
resolves that marker's future with the state. What the responses mean is the session's business:
the link hands feature rows or frames to the callbacks it runs with, in order.

A peer failing ends the session: INVALID_ARGUMENT and FAILED_PRECONDITION pass through with the
peer named (the client's input was refused), anything else is UNAVAILABLE (retry).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import torch

from liveact.config import LiveActConfig
from liveact.state.schema import AudioPosition
from liveact.v1 import audio_encoder_pb2, audio_encoder_pb2_grpc, common_pb2, decoder_pb2, decoder_pb2_grpc
from services.common.tensors import from_proto
from services.generator.errors import peer_error
from services.generator.resume import Restored
from services.generator.validate import SessionParams

__all__ = ["DecoderLink", "EncoderLink", "PcmPiece", "Peers", "decode_config", "encode_config"]

log = logging.getLogger(__name__)

_END = object()


@dataclass(frozen=True)
class Peers:
    """The generator's channels' stubs, shared by every session."""

    encoder: audio_encoder_pb2_grpc.AudioEncoderStub
    decoder: decoder_pb2_grpc.DecoderStub


@dataclass(frozen=True)
class PcmPiece:
    """Client PCM on its way to the encoder, and the audio position right after it."""

    data: bytes
    after: AudioPosition


@dataclass(frozen=True)
class _Marker:
    id: int


class _Snapshots:
    """Futures of the snapshots asked of one peer stream, by marker id."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self._waiting: dict[int, asyncio.Future[bytes]] = {}

    def ask(self, marker: int) -> asyncio.Future[bytes]:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[marker] = fut
        return fut

    def answered(self, snap: common_pb2.StreamSnapshot) -> None:
        """Resolve the marker's future (a marker nobody waits for is logged and ignored)."""
        fut = self._waiting.pop(snap.id, None)
        if fut is None or fut.done():
            log.warning("stale snapshot ignored", extra={"peer": self.peer, "id": snap.id})
            return
        fut.set_result(snap.state)


class EncoderLink:
    """Client PCM -> ``Encode`` -> feature rows. At most ``audio_queue`` PCM pieces wait to be sent:
    ``room`` waits for a slot, so a full queue stops reading the client (HTTP/2 flow control)."""

    def __init__(self, stub: audio_encoder_pb2_grpc.AudioEncoderStub, config: audio_encoder_pb2.EncodeConfig,
                 audio_queue: int) -> None:  # fmt: skip
        self.stub, self.config = stub, config
        self._slots = asyncio.Semaphore(audio_queue)
        self._queue: asyncio.Queue[PcmPiece | _Marker | object] = asyncio.Queue()  # <= audio_queue PcmPieces
        self.snapshots = _Snapshots("encoder")
        self.ended = False  # EndOfAudio queued: no more PCM or markers

    def depth(self) -> int:
        return self._queue.qsize()

    async def room(self) -> None:
        """Wait for a free PCM slot; the caller then ``put_pcm``s without awaiting in between."""
        await self._slots.acquire()

    def put_pcm(self, piece: PcmPiece) -> None:
        """Queue a piece in the slot ``room`` reserved (in order with markers queued meanwhile)."""
        self._queue.put_nowait(piece)

    def snapshot(self, marker: int) -> asyncio.Future[bytes]:
        """Ask for the encoder's state after all PCM queued so far; the future gets its bytes."""
        fut = self.snapshots.ask(marker)
        self._queue.put_nowait(_Marker(marker))
        return fut

    def end(self) -> None:
        self.ended = True
        self._queue.put_nowait(_END)

    async def run(
        self,
        before_pcm: Callable[[PcmPiece], Awaitable[None]],
        trace: Callable[[], dict[str, str]],
        on_rows: Callable[[torch.Tensor | None, audio_encoder_pb2.FeatureRows], Awaitable[None]],
        on_snapshot: Callable[[common_pb2.StreamSnapshot], None],
    ) -> None:
        """Stream until the encoder ends. ``before_pcm(piece)`` returns once the piece may go;
        ``trace()`` is the trace context PCM sent now carries; ``on_snapshot`` checks a snapshot
        before its future is resolved and the next response is read."""
        call = self.stub.Encode(self._requests(before_pcm, trace))
        try:
            async for resp in call:
                if resp.HasField("snapshot"):
                    on_snapshot(resp.snapshot)
                    self.snapshots.answered(resp.snapshot)
                    continue
                rows = resp.rows
                block = from_proto(rows.rows) if rows.rows.shape and rows.rows.shape[0] else None
                await on_rows(block, rows)
        except grpc.aio.AioRpcError as exc:
            raise peer_error("audio encoder", exc) from None
        finally:
            call.cancel()  # a no-op once the call has ended; otherwise frees the encoder's stream at once

    async def _requests(
        self, before_pcm: Callable[[PcmPiece], Awaitable[None]], trace: Callable[[], dict[str, str]]
    ) -> AsyncIterator[audio_encoder_pb2.EncodeRequest]:
        yield audio_encoder_pb2.EncodeRequest(config=self.config)
        while (item := await self._queue.get()) is not _END:
            if isinstance(item, _Marker):
                yield audio_encoder_pb2.EncodeRequest(snapshot=common_pb2.SnapshotRequest(id=item.id))
                continue
            assert isinstance(item, PcmPiece)
            self._slots.release()
            await before_pcm(item)
            yield audio_encoder_pb2.EncodeRequest(pcm=item.data, trace_context=trace())
        yield audio_encoder_pb2.EncodeRequest(end_of_audio=True, trace_context=trace())  # the last rows


class DecoderLink:
    """Latent chunks -> ``Decode`` -> frames. At most ``chunk_queue`` chunks wait to be sent."""

    def __init__(self, stub: decoder_pb2_grpc.DecoderStub, config: decoder_pb2.DecodeConfig, chunk_queue: int) -> None:
        self.stub, self.config = stub, config
        self._queue: asyncio.Queue[decoder_pb2.LatentChunk | _Marker | object] = asyncio.Queue(chunk_queue)
        self.snapshots = _Snapshots("decoder")

    def depth(self) -> int:
        return self._queue.qsize()

    async def send(self, chunk: decoder_pb2.LatentChunk) -> None:
        await self._queue.put(chunk)

    def ask_snapshot(self, marker: int) -> asyncio.Future[bytes]:
        """The future of the decoder's state at ``marker``; ``send_marker`` then puts it in the stream."""
        return self.snapshots.ask(marker)

    async def send_marker(self, marker: int) -> None:
        """After the chunks sent so far (waits for room in the queue, like a chunk)."""
        await self._queue.put(_Marker(marker))

    async def end(self) -> None:
        await self._queue.put(_END)

    async def run(self, on_frames: Callable[[decoder_pb2.DecodedFrames], Awaitable[None]]) -> None:
        """Stream until the decoder ends; ``on_frames`` gets each decoded chunk in order."""
        call = self.stub.Decode(self._requests())
        try:
            async for resp in call:
                if resp.HasField("snapshot"):
                    self.snapshots.answered(resp.snapshot)
                    continue
                await on_frames(resp.frames)
        except grpc.aio.AioRpcError as exc:
            raise peer_error("decoder", exc) from None
        finally:
            call.cancel()  # a no-op once the call has ended; otherwise frees the decoder's stream at once

    async def _requests(self) -> AsyncIterator[decoder_pb2.DecodeRequest]:
        yield decoder_pb2.DecodeRequest(config=self.config)
        while (item := await self._queue.get()) is not _END:
            if isinstance(item, _Marker):
                yield decoder_pb2.DecodeRequest(snapshot=common_pb2.SnapshotRequest(id=item.id))
            else:
                assert isinstance(item, decoder_pb2.LatentChunk)
                yield decoder_pb2.DecodeRequest(chunk=item)
        yield decoder_pb2.DecodeRequest(end=True)


def encode_config(
    params: SessionParams, config: LiveActConfig, restored: Restored | None
) -> audio_encoder_pb2.EncodeConfig:
    """A session's ``Encode`` stream config (a resumed one continues from the stored encoder state)."""
    m = config.model
    return audio_encoder_pb2.EncodeConfig(
        fps=params.fps,
        audio_format=params.audio_format,
        layers=m.audio_layers,
        channels=m.audio_channels,
        resume_state=restored.encoder_state if restored is not None else b"",
    )


def decode_config(params: SessionParams, config: LiveActConfig, restored: Restored | None) -> decoder_pb2.DecodeConfig:
    """A session's ``Decode`` stream config (a resumed one continues from the stored decoder state and
    drops the frames before the client's next frame, in the model's numbering)."""
    r = restored
    return decoder_pb2.DecodeConfig(
        vae_preset=config.vae, width=params.width, height=params.height, fps=params.fps,
        output_format=params.output_format, jpeg_quality=params.jpeg_quality,
        decode_mode=decoder_pb2.CONTEXT if params.decode_mode == "context" else decoder_pb2.STREAM,
        resume_state=r.decoder_state if r is not None else b"",
        first_output_frame=r.first_output_frame - r.frame_offset if r is not None else 0,
    )  # fmt: skip
