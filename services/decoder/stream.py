"""One ``Decode`` stream without gRPC: a ``DecodeSession`` plus what the stream adds to it.

``DecodeStream`` holds what a stream owns: its ``liveact.vae.DecodeSession`` (the decode mode and
its state, a fixed size whatever the stream's length), the next expected ``chunk_index`` and its
``StreamOutput`` (RAW_RGB / JPEG / fMP4 responses; ``output.py``). Its methods are blocking CPU /
ffmpeg work: the servicer runs them off the event loop, one at a time per stream.

Per chunk: latents checked (dtype, shape ``(1, 16, F, H/8, W/8)``, element limit, finite) -> the
session's decode -> ``frames_to_uint8`` -> the first ``keep_frames`` -> responses that fit the gRPC
message limit. The first chunk may have any ``chunk_index``; each later one must be the previous + 1.

``first_output_frame`` (config): frames whose absolute index (``first_frame`` + position) is below it
are decoded, since the decode state needs every latent, but not sent. A chunk that straddles it is
sent from it on; a chunk entirely before it is still answered, with one response of ``frame_count`` 0
whose ``first_frame`` is the chunk's end, so every chunk gets an answer. With FMP4_H264 the dropped
frames are not encoded and the audio samples that cover them are dropped with them.

Snapshots: ``state_dict()`` is the decode session's state (``vae.*`` or ``context``), the next expected
``chunk_index`` (-1: none yet), the end of the last chunk's frames and the size. ``snapshot`` packs it
with the VAE preset's name and the decode mode into ``StreamSnapshot.state`` bytes
(``services.common.snapshot``; a snapshot without a mode predates CONTEXT and is STREAM). ``resume``
puts a new stream of the same VAE preset, size and decode mode there (another mode's state is
INVALID_ARGUMENT, naming the mode it was taken in): the chunks after the snapshot decode to exactly
the frames of an uninterrupted stream. The output settings are not part of the state and may change;
an fMP4 muxer cannot be saved, so a resumed FMP4_H264 stream starts a new fragmented MP4 at 0.

Size: a STREAM state grows with width x height (``liveact.vae.session``); a CONTEXT state is 1.5 bytes
per pixel in bfloat16. A state larger than a response (``--max-message-mb`` less 64 KiB) is
RESOURCE_EXHAUSTED, refused before it is serialised: raise ``--max-message-mb`` on the decoders and
the client's message limits, or use CONTEXT. Protobuf caps a message at 2 GiB, so a wan2.1 STREAM
stream at 512x512 and above cannot be snapshotted in-band at all.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np
import torch

from liveact.media import frames_to_uint8
from liveact.state.tensors import StateReader, int_tensor
from liveact.v1 import common_pb2, decoder_pb2
from liveact.vae import StreamingDecoder
from liveact.vae.session import DecodeSession, context_state_nbytes
from services.common import snapshot
from services.common.errors import RequestError, invalid
from services.common.tensors import from_proto
from services.decoder.config import LATENT_DTYPES, StreamFormat, parse_config
from services.decoder.output import StreamOutput

__all__ = [
    "SNAPSHOT_KIND",
    "DecodeStream",
    "RequestError",
    "StreamFormat",
    "context_state_nbytes",
    "parse_config",
]

SNAPSHOT_KIND = "decoder"  # services.common.snapshot's kind for this stream's state
_VAE_PRESET_KEY = "vae_preset"  # snapshot metadata: the VAE whose state it holds
_MODE_KEY = "decode_mode"  # snapshot metadata: the DecodeMode's name; absent = STREAM (taken before modes)
_NO_CHUNK_YET = -1  # state's next_chunk_index before the first chunk


class DecodeStream:
    """A stream's decode session, chunk order and output; call ``close`` when the stream ends."""

    def __init__(
        self, decoder: StreamingDecoder, fmt: StreamFormat, max_latent_elements: int, max_response_bytes: int
    ) -> None:
        self.decoder, self.fmt = decoder, fmt
        self.max_latent_elements, self.max_response_bytes = max_latent_elements, max_response_bytes
        self.session: DecodeSession | None = DecodeSession(decoder, fmt.session_mode, fmt.width, fmt.height)
        self.output = StreamOutput(fmt, max_response_bytes)
        self.next_index: int | None = None  # None: the first chunk sets where the numbering starts
        self.end_frame = 0  # first_frame + frame_count of the last chunk
        self.frames_sent = 0
        self._check_first_decode = False  # set by resume: a state that does not fit fails the next decode

    @property
    def closed(self) -> bool:
        return self.session is None

    def open(self) -> None:
        """Start the fMP4 encoder (FMP4_H264 only); ffmpeg failing to start is an internal error."""
        self.output.open()

    def close(self) -> None:
        """Free the decode state and stop ffmpeg (idempotent)."""
        if self.session is not None:
            self.session.close()
            self.session = None
        self.output.close()

    # -- chunks --------------------------------------------------------------------------------------
    def decode(self, chunk: decoder_pb2.LatentChunk) -> list[decoder_pb2.DecodeResponse]:
        """Check and decode one chunk; its responses (more than one only when a message would be too big)."""
        session = self._open_session("decode")
        if self.next_index is not None and chunk.chunk_index != self.next_index:
            raise invalid(
                f"chunk_index {chunk.chunk_index} is out of order: expected {self.next_index} "
                "(chunks must be sent in order, each index one more than the last)"
            )
        latents = self._latents(chunk, session)
        decoded = session.frames_of(latents.shape[2])
        if chunk.keep_frames > decoded:
            raise invalid(
                f"chunk {chunk.chunk_index}: keep_frames {chunk.keep_frames} is more than the {decoded} frames "
                f"its {latents.shape[2]} latent frames decode to"
            )
        audio = self._audio(chunk)
        pixels = frames_to_uint8(self._decode(chunk.chunk_index, session, latents))  # (Tv, H, W, 3) uint8
        if chunk.keep_frames:
            pixels = pixels[: chunk.keep_frames]
        self.next_index = chunk.chunk_index + 1
        self.end_frame = chunk.first_frame + len(pixels)
        skip = min(max(self.fmt.first_output_frame - chunk.first_frame, 0), len(pixels))  # not sent
        self.frames_sent += len(pixels) - skip
        return self.output.chunk(chunk.chunk_index, chunk.first_frame, chunk.first_frame + skip, pixels[skip:], audio)

    def finish(self) -> list[decoder_pb2.DecodeResponse]:
        """End of stream: the rest of the fMP4 bytes (nothing for RAW_RGB / JPEG); the state is freed."""
        out = self.output.finish(max((self.next_index or 0) - 1, 0), self.end_frame)
        self.close()
        return out

    def _open_session(self, what: str) -> DecodeSession:
        if self.session is None:
            raise RuntimeError(f"{what} after close: a closed stream has nothing to continue")
        return self.session

    def _decode(self, index: int, session: DecodeSession, latents: torch.Tensor) -> torch.Tensor:
        """The VAE on the stream's state; a restored state that does not fit it is the client's error."""
        if not self._check_first_decode:
            return session.decode(latents)
        try:
            frames = session.decode(latents)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:  # shapes of a hand-made or foreign state (a real failure recurs later)
            raise invalid(f"chunk {index}: DecodeConfig.resume_state does not fit this VAE and size: {exc}") from None
        self._check_first_decode = False
        return frames

    # -- snapshots -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The decode session's state, then the chunk position and the size."""
        session = self._open_session("state_dict")
        return {
            **session.state_dict(),
            "next_chunk_index": int_tensor(_NO_CHUNK_YET if self.next_index is None else self.next_index),
            "end_frame": int_tensor(self.end_frame),
            "width": int_tensor(self.fmt.width),
            "height": int_tensor(self.fmt.height),
        }

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Continue from ``state_dict()`` of a stream of this VAE, size and mode; ``ValueError`` says what is wrong."""
        session = self._open_session("load_state_dict")
        if (saved := session.saved_mode(tensors)) is not None:
            self._check_mode(saved.upper())  # a DecodeMode's name
        r = StateReader({n: t for n, t in tensors.items() if not DecodeSession.owns(n)}, "the snapshot")
        r.same("width", self.fmt.width, " px")
        r.same("height", self.fmt.height, " px")
        next_index, end_frame = r.read_int("next_chunk_index"), r.read_int("end_frame")
        r.close()
        if next_index < _NO_CHUNK_YET or end_frame < 0:
            raise ValueError(f"the snapshot is inconsistent (chunk {next_index}, frame {end_frame})")
        decode_state = {n: t for n, t in tensors.items() if DecodeSession.owns(n)}
        session.load_state_dict(decode_state, started=next_index != _NO_CHUNK_YET)
        self.end_frame = end_frame
        self.next_index = None if next_index == _NO_CHUNK_YET else next_index
        self._check_first_decode = True

    def snapshot(self, request: common_pb2.SnapshotRequest) -> decoder_pb2.DecodeResponse:
        """The stream's state now, after every chunk before the request; too big for a message: RESOURCE_EXHAUSTED."""
        session = self._open_session("snapshot")
        if session.cache is not None:
            self._check_snapshot_size(session.nbytes())  # before copying a cache that cannot be sent
        meta = {_VAE_PRESET_KEY: self.decoder.cfg.name, _MODE_KEY: self.fmt.mode_name}
        state = snapshot.pack(SNAPSHOT_KIND, self.state_dict(), meta)
        self._check_snapshot_size(len(state))
        snap = common_pb2.StreamSnapshot(id=request.id, state=state, next_frame=self.end_frame)
        return decoder_pb2.DecodeResponse(snapshot=snap)

    def _check_snapshot_size(self, size: int) -> None:
        if size > self.max_response_bytes:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the stream's snapshot state is {size} bytes, more than fits in a response of this decoder "
                f"({self.max_response_bytes} bytes): raise --max-message-mb (LIVEACT_MAX_MESSAGE_MB) on the decoders "
                "and the client's message limits (protobuf caps a message at 2 GiB), or snapshot a smaller size",
            )

    def resume(self, state: bytes) -> None:
        """Continue from ``snapshot()`` bytes (``DecodeConfig.resume_state``); INVALID_ARGUMENT says what is wrong."""
        try:
            snap = snapshot.unpack(state, SNAPSHOT_KIND, "DecodeConfig.resume_state")
            saved = snap.metadata.get(_VAE_PRESET_KEY)
            if saved != self.decoder.cfg.name:
                raise ValueError(
                    f"it holds the cache of VAE preset {saved!r}, this decoder runs {self.decoder.cfg.name!r}: "
                    "resume on a decoder serving the snapshot's VAE preset"
                )
            self._check_mode(snap.metadata.get(_MODE_KEY, decoder_pb2.DecodeMode.Name(decoder_pb2.STREAM)))
            self.load_state_dict(snap.tensors)
        except snapshot.SnapshotError as exc:
            raise invalid(str(exc)) from None
        except ValueError as exc:
            raise invalid(f"DecodeConfig.resume_state does not fit this stream: {exc}") from None

    def _check_mode(self, saved: str) -> None:
        """A state taken in decode mode ``saved`` (a DecodeMode name) must be resumed in that mode."""
        if saved != self.fmt.mode_name:
            raise ValueError(
                f"it was taken in decode_mode {saved}, this stream's decode_mode is {self.fmt.mode_name}: "
                f"set DecodeConfig.decode_mode to {saved} (a session keeps one decode mode: the states of the "
                "two modes are not interchangeable)"
            )

    # -- inputs ---------------------------------------------------------------------------------------
    def _latents(self, chunk: decoder_pb2.LatentChunk, session: DecodeSession) -> torch.Tensor:
        where = f"chunk {chunk.chunk_index}: latents"
        if not chunk.HasField("latents"):
            raise invalid(f"{where} are missing")
        t = chunk.latents
        if t.dtype not in LATENT_DTYPES:
            raise invalid(f"{where} dtype {t.dtype!r} must be one of {list(LATENT_DTYPES)}")
        shape = tuple(t.shape)  # checked before anything is allocated
        n, c, h, w = session.latent_shape
        if len(shape) != 5 or (shape[0], shape[1], shape[3], shape[4]) != (n, c, h, w) or shape[2] < 1:
            stride = self.decoder.cfg.spatial_stride
            raise invalid(
                f"{where} shape {shape} must be ({n}, {c}, F, {h}, {w}) with F >= 1 for "
                f"{self.fmt.width}x{self.fmt.height} (H/{stride}, W/{stride})"
            )
        if shape[2] * c * h * w > self.max_latent_elements:
            raise invalid(
                f"{where} of {shape[2]} latent frames ({shape[2] * c * h * w} elements) exceed this decoder's limit "
                f"of {self.max_latent_elements} per chunk: send fewer latent frames per chunk"
            )
        try:
            z = from_proto(t)
        except ValueError as exc:
            raise invalid(f"{where}: {exc}") from None
        if not torch.isfinite(z).all():
            raise invalid(f"{where} contain NaN or infinite values")
        return z.float()

    def _audio(self, chunk: decoder_pb2.LatentChunk) -> np.ndarray | None:
        if not chunk.audio_pcm_f32:
            return None
        if not self.fmt.audio_sample_rate:
            raise invalid(
                f"chunk {chunk.chunk_index} carries audio_pcm_f32, but this stream has no audio track: "
                "use output_format FMP4_H264 with audio_sample_rate > 0"
            )
        if len(chunk.audio_pcm_f32) % 4:
            raise invalid(
                f"chunk {chunk.chunk_index}: audio_pcm_f32 has {len(chunk.audio_pcm_f32)} bytes, "
                "not whole float32 samples"
            )
        pcm = np.frombuffer(chunk.audio_pcm_f32, dtype="<f4").astype(np.float32)
        if not np.isfinite(pcm).all():
            raise invalid(f"chunk {chunk.chunk_index}: audio_pcm_f32 contains NaN or infinite samples")
        return pcm
