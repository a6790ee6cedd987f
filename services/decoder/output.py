"""Where a ``Decode`` stream's frames become responses: RAW_RGB bytes, JPEG files or fMP4 bytes.

Responses echo ``chunk_index`` and ``first_frame``; ``frame_count`` is the number of frames in that
response. RAW_RGB / JPEG frames too big for one message are split over consecutive responses, each
numbered for its own frames. FMP4_H264: one ``FragmentedMp4Stream`` (an ffmpeg child) per stream;
each chunk's response carries the bytes ffmpeg has produced so far (possibly none), and ``finish``
adds one response (``frame_count`` 0, ``first_frame`` = the end of the video) with the rest;
concatenated in order they are one fragmented MP4. Nothing accumulates across chunks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np

from liveact.media import FragmentedMp4Stream, encode_jpeg
from liveact.media.timing import samples_before
from liveact.v1 import common_pb2, decoder_pb2
from services.common.errors import invalid
from services.decoder.config import StreamFormat

__all__ = ["StreamOutput"]

_POLL_S = 0.05  # how often the fMP4 pump looks whether the encoder call has returned


class StreamOutput:
    def __init__(self, fmt: StreamFormat, max_response_bytes: int) -> None:
        self.fmt, self.max_response_bytes = fmt, max_response_bytes
        self.mp4: FragmentedMp4Stream | None = None

    def open(self) -> None:
        """Start the fMP4 encoder (FMP4_H264 only); ffmpeg failing to start is an internal error."""
        if self.fmt.output_format == common_pb2.FMP4_H264:
            self.mp4 = FragmentedMp4Stream(
                self.fmt.fps, self.fmt.width, self.fmt.height, self.fmt.audio_sample_rate or None
            )

    def close(self) -> None:
        """Stop ffmpeg (idempotent; the output of an unfinished fMP4 is dropped)."""
        if self.mp4 is not None:
            self.mp4.abort()
            self.mp4 = None

    def chunk(
        self, index: int, chunk_first: int, first: int, pixels: np.ndarray, audio: np.ndarray | None
    ) -> list[decoder_pb2.DecodeResponse]:
        """Chunk ``index``'s frames (T, H, W, 3) uint8 from absolute frame ``first`` (the chunk's
        frames from ``chunk_first`` before it are not sent, nor the audio samples that cover them)."""
        if self.fmt.output_format == common_pb2.FMP4_H264:
            assert self.mp4 is not None
            if not len(pixels):  # nothing encoded: only what ffmpeg has produced meanwhile
                return self._fmp4(index, first, 0, b"".join(self.mp4.drain()))
            if audio is not None and first > chunk_first:
                rate, fps = self.fmt.audio_sample_rate, self.fmt.fps
                audio = audio[samples_before(first, fps, rate) - samples_before(chunk_first, fps, rate) :]
            mp4, samples = self.mp4, audio
            try:
                data = self._pump(lambda: mp4.write(pixels, samples))
            except ValueError as exc:  # the audio runs too far ahead of the frames (ffmpeg errors are MediaError)
                raise invalid(f"chunk {index}: {exc}") from None
            return self._fmp4(index, first, len(pixels), data)
        if self.fmt.output_format == common_pb2.RAW_RGB:
            payloads = [frame.tobytes() for frame in pixels]
        else:
            payloads = [encode_jpeg(frame, self.fmt.jpeg_quality) for frame in pixels]
        return self._frames(index, first, payloads)

    def finish(self, last_index: int, end_frame: int) -> list[decoder_pb2.DecodeResponse]:
        """End of stream: the rest of the fMP4 bytes (nothing for RAW_RGB / JPEG)."""
        if self.mp4 is None:
            return []
        mp4 = self.mp4
        data = self._pump(mp4.close)
        self.mp4 = None
        return self._fmp4(last_index, end_frame, 0, data) if data else []

    def _frames(self, index: int, first: int, payloads: list[bytes]) -> list[decoder_pb2.DecodeResponse]:
        """One response per chunk, or several consecutive ones when the frames would not fit one message."""
        out: list[decoder_pb2.DecodeResponse] = []
        batch: list[bytes] = []
        size = 0
        for p in payloads:
            if batch and size + len(p) > self.max_response_bytes:
                out.append(_response(index, first, len(batch), frames=batch))
                first, batch, size = first + len(batch), [], 0
            batch.append(p)
            size += len(p)
        out.append(_response(index, first, len(batch), frames=batch))
        return out

    def _fmp4(self, index: int, first: int, count: int, data: bytes) -> list[decoder_pb2.DecodeResponse]:
        """The chunk's frames and the bytes available; bytes beyond one message follow with frame_count 0."""
        step = self.max_response_bytes
        out = [_response(index, first, count, fmp4=data[:step])]
        out += [_response(index, first + count, 0, fmp4=data[i : i + step]) for i in range(step, len(data), step)]
        return out

    def _pump(self, work: Callable[[], None]) -> bytes:
        """Run an encoder call while taking its output: a full output queue would otherwise block it."""
        assert self.mp4 is not None
        errors: list[BaseException] = []

        def target() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=target, name="liveact-decoder-fmp4", daemon=True)
        worker.start()
        pieces = []
        while worker.is_alive():
            try:
                piece = self.mp4.read(timeout=_POLL_S)
            except queue.Empty:
                continue
            if piece is None:
                break
            pieces.append(piece)
        worker.join()
        if errors:
            raise errors[0]
        return b"".join(pieces + self.mp4.drain())


def _response(index: int, first: int, count: int, **payload) -> decoder_pb2.DecodeResponse:
    return decoder_pb2.DecodeResponse(
        frames=decoder_pb2.DecodedFrames(chunk_index=index, first_frame=first, frame_count=count, **payload)
    )
