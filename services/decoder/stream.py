"""One ``Decode`` stream without gRPC: the checked ``DecodeConfig`` and the per-stream decoder.

``parse_config`` turns a ``DecodeConfig`` into a ``StreamFormat`` or raises ``RequestError`` with the
status code and a message saying what to change. ``DecodeStream`` holds what a stream owns: its
decode state (a fixed size whatever the stream's length, see "Decode modes"), the next expected
``chunk_index`` and, for FMP4_H264, one ``FragmentedMp4Stream`` (an ffmpeg child). Its methods are
blocking CPU / ffmpeg work: the servicer runs them off the event loop, one at a time per stream.

Decode modes (``DecodeConfig.decode_mode``):

* STREAM (the default, also for UNSPECIFIED): ``StreamingDecoder.decode`` against the VAE's causal
  cache (``DecoderState``), kept across chunks; the frames equal one decode of the whole latent
  sequence, bit for bit. The cache is large (see "Size").
* CONTEXT: the public implementation's approximation, ``StreamingDecoder.decode_with_context``: each
  chunk is decoded from a fresh cache together with the previous chunk's last
  ``VaeConfig.decode_context_latents`` (3) clean latents, whose frames are dropped; the stream keeps
  only those latents (``context``, None before the first chunk), so its state is
  ``16 x 3 x H/8 x W/8`` elements (``context_state_nbytes``).

Both modes decode 1 + 4(F-1) frames from a stream's first chunk and 4F from each later one, so
``keep_frames``, ``first_output_frame`` and every output format behave the same in both.

Per chunk: latents checked (dtype, shape ``(1, 16, F, H/8, W/8)``, element limit, finite) -> the
mode's decode with the stream's state -> ``frames_to_uint8`` -> the first ``keep_frames`` ->
RAW_RGB bytes, JPEG files or fMP4 bytes, cut into responses that fit the gRPC message limit.
Nothing accumulates across chunks: each call returns its chunk's responses only.

Responses echo ``chunk_index`` and ``first_frame``; ``frame_count`` is the number of frames in that
response. RAW_RGB / JPEG frames too big for one message are split over consecutive responses, each
numbered for its own frames. FMP4_H264: each chunk's response carries the bytes ffmpeg has produced
so far (possibly none), and ``end`` adds one response (``frame_count`` 0, ``first_frame`` = the end
of the video) with the rest; concatenated in order they are one fragmented MP4. The first chunk may
have any ``chunk_index``; each later one must be the previous one + 1.

``first_output_frame`` (config): frames whose absolute index (``first_frame`` + position) is below it
are decoded, since the decode state needs every latent, but not sent. A chunk that straddles it is
sent from it on; a chunk entirely before it is still answered, with one response of ``frame_count`` 0
whose ``first_frame`` is the chunk's end (where the next frame would start), so every chunk gets an
answer. With FMP4_H264 the dropped frames are not encoded (the video starts at the first frame sent)
and the leading audio samples that cover them (``samples_before`` of the dropped frames, counted
from the chunk's ``first_frame``) are dropped with them.

Snapshots: ``state_dict()`` is the decode state, the next expected ``chunk_index`` (-1: none yet),
the end of the last chunk's frames and the size. The decode state is, in STREAM mode, the VAE cache
(``DecoderState.export()``, prefixed ``vae.``); in CONTEXT mode the context latents (``context``,
absent before the first chunk), in bfloat16 when that holds them exactly (latents that came as
bfloat16 always do), else float32. ``snapshot`` packs it with the VAE preset's name and the decode
mode as metadata into ``StreamSnapshot.state`` bytes (``services.common.snapshot``; a snapshot
without a mode predates CONTEXT and is STREAM). ``resume`` puts a new stream of the same VAE preset,
size and decode mode there (another mode's state is INVALID_ARGUMENT, naming the mode it was taken
in): the chunks after the snapshot decode to exactly the frames of an uninterrupted stream of that
mode. The output settings are not part of the state and may change. An fMP4 muxer (an ffmpeg
process) cannot be saved: a resumed FMP4_H264 stream starts a new fragmented MP4, init segment
included, whose timestamps start at 0 with the first frame it sends.

Size: a STREAM cache grows with width x height. Measured (fp32 VAE): tiny about 560 bytes per
output pixel (2.2 MiB at 64x64, 140 MiB at 512x512), wan2.1 about 9.5 KB per pixel (37 MiB at
64x64, 2.3 GiB at 512x512, ~2.8 GB at 416x720). A CONTEXT state is 16 x 3 latent cells per 8x8
pixels: 1.5 bytes per pixel in bfloat16 (6 KiB at 64x64, 449,280 bytes at 416x720, any preset).
A state larger than a response (``--max-message-mb`` less 64 KiB) is RESOURCE_EXHAUSTED, refused
before it is serialised: raise ``--max-message-mb`` on the decoders and the client's message
limits, or use CONTEXT. Protobuf caps a message at 2 GiB, so a wan2.1 STREAM stream at 512x512 and
above cannot be snapshotted in-band at all.
"""

from __future__ import annotations

import io
import math
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import grpc
import numpy as np
import torch
from PIL import Image

from liveact.media import FragmentedMp4Stream, frames_to_uint8
from liveact.media.timing import samples_before
from liveact.state.tensors import StateReader, int_tensor, with_prefix
from liveact.v1 import common_pb2, decoder_pb2
from liveact.vae import DecoderState, StreamingDecoder, VaeConfig
from liveact.vae.streaming import FIRST_KEY, SLOTS_KEY
from services.common import snapshot
from services.common.errors import RequestError, invalid
from services.common.tensors import from_proto

__all__ = [
    "DEFAULT_JPEG_QUALITY",
    "SNAPSHOT_KIND",
    "DecodeStream",
    "RequestError",
    "StreamFormat",
    "context_state_nbytes",
    "parse_config",
]

SNAPSHOT_KIND = "decoder"  # services.common.snapshot's kind for this stream's state
_VAE_PRESET_KEY = "vae_preset"  # snapshot metadata: the VAE whose cache it holds
_MODE_KEY = "decode_mode"  # snapshot metadata: the DecodeMode's name; absent = STREAM (taken before modes)
_CONTEXT_KEY = "context"  # CONTEXT mode's state tensor: the last clean latents, (1, Cz, Tc, h, w)
_CONTEXT_SNAPSHOT_DTYPE = torch.bfloat16  # a context's snapshot dtype when it holds the values exactly
_CONTEXT_DTYPES = (torch.bfloat16, torch.float32)  # what a CONTEXT snapshot may hold
_NO_CHUNK_YET = -1  # state's next_chunk_index before the first chunk
_CACHE_DIMS = 5  # a causal conv's cache entry: (1, C, t, h, w)
_CONTEXT_DIMS = 5  # the context latents: (1, Cz, Tc, h, w)
_MODES = {  # DecodeConfig.decode_mode -> the mode the stream runs (UNSPECIFIED = STREAM)
    decoder_pb2.DECODE_MODE_UNSPECIFIED: decoder_pb2.STREAM,
    decoder_pb2.STREAM: decoder_pb2.STREAM,
    decoder_pb2.CONTEXT: decoder_pb2.CONTEXT,
}
_MODE_NAMES = ", ".join(decoder_pb2.DecodeMode.Name(m) for m in sorted(_MODES))

DEFAULT_JPEG_QUALITY = 90
SIZE_MULTIPLE = 16  # width and height: whole latent cells (8 px) of an even number of cells
MIN_AUDIO_RATE, MAX_AUDIO_RATE = 8000, 96000  # what ffmpeg's AAC encoder takes
LATENT_DTYPES = ("float32", "bfloat16")
_FORMATS = {
    common_pb2.OUTPUT_FORMAT_UNSPECIFIED: common_pb2.JPEG,
    common_pb2.RAW_RGB: common_pb2.RAW_RGB,
    common_pb2.JPEG: common_pb2.JPEG,
    common_pb2.FMP4_H264: common_pb2.FMP4_H264,
}
_FORMAT_NAMES = ", ".join(common_pb2.OutputFormat.Name(f) for f in sorted(_FORMATS))
_POLL_S = 0.05  # how often the fMP4 pump looks whether the encoder call has returned


@dataclass(frozen=True)
class StreamFormat:
    width: int
    height: int
    fps: Fraction  # exact: the float32 on the wire read as its shortest decimal (29.97 -> 2997/100)
    output_format: int  # common_pb2.RAW_RGB, JPEG or FMP4_H264 (UNSPECIFIED resolved to JPEG)
    jpeg_quality: int
    audio_sample_rate: int  # 0: no audio track (FMP4_H264 only)
    first_output_frame: int = 0  # frames before this absolute index are decoded, not sent
    decode_mode: int = decoder_pb2.STREAM  # decoder_pb2.STREAM or CONTEXT (UNSPECIFIED resolved to STREAM)

    @property
    def format_name(self) -> str:
        return common_pb2.OutputFormat.Name(self.output_format)

    @property
    def mode_name(self) -> str:
        return decoder_pb2.DecodeMode.Name(self.decode_mode)


def context_state_nbytes(vae: VaeConfig, width: int, height: int, dtype: torch.dtype = _CONTEXT_SNAPSHOT_DTYPE) -> int:
    """Bytes of a CONTEXT stream's decode state once it holds a full context: ``decode_context_latents``
    latent frames of ``(z_dim, H/stride, W/stride)`` in ``dtype`` (wan2.1 at 416x720, bfloat16: 449,280)."""
    s = vae.spatial_stride
    elements = vae.z_dim * vae.decode_context_latents * (height // s) * (width // s)
    return elements * torch.empty((), dtype=dtype).element_size()


def parse_config(
    msg: decoder_pb2.DecodeConfig, vae: VaeConfig, max_latent_elements: int, max_response_bytes: int
) -> StreamFormat:
    """Check a ``DecodeConfig`` against this server (its VAE and limits); RequestError says what to change."""
    if msg.vae_preset != vae.name:
        raise invalid(
            f"vae_preset {msg.vae_preset!r} does not match this decoder's VAE {vae.name!r}: "
            "latents must be decoded by the VAE preset that made them (route to a decoder serving it)"
        )
    w, h = msg.width, msg.height
    if w <= 0 or h <= 0 or w % SIZE_MULTIPLE or h % SIZE_MULTIPLE:
        raise invalid(f"width and height must be positive multiples of {SIZE_MULTIPLE}, got {w}x{h}")
    cells = vae.z_dim * (w // vae.spatial_stride) * (h // vae.spatial_stride)
    if cells > max_latent_elements:
        raise invalid(
            f"{w}x{h} needs {cells} latent elements per latent frame, above this decoder's limit of "
            f"{max_latent_elements} per chunk (--max-latent-elements): use a smaller size"
        )
    if not (math.isfinite(msg.fps) and msg.fps > 0):
        raise invalid(f"fps must be a positive number, got {msg.fps}")
    if msg.output_format not in _FORMATS:
        raise invalid(f"output_format {msg.output_format} is not one of {_FORMAT_NAMES}")
    output_format = _FORMATS[msg.output_format]
    if msg.jpeg_quality > 100:
        raise invalid(f"jpeg_quality must be 1..100 (0 = {DEFAULT_JPEG_QUALITY}), got {msg.jpeg_quality}")
    if output_format == common_pb2.RAW_RGB and w * h * 3 > max_response_bytes:
        raise invalid(
            f"one {w}x{h} RAW_RGB frame ({w * h * 3} bytes) does not fit in a response ({max_response_bytes} bytes "
            "under the server's --max-message-mb): use JPEG or FMP4_H264, or a smaller size"
        )
    rate = msg.audio_sample_rate if output_format == common_pb2.FMP4_H264 else 0  # audio goes into fMP4 only
    if msg.decode_mode not in _MODES:
        raise invalid(f"decode_mode {msg.decode_mode} is not one of {_MODE_NAMES}")
    if rate and not MIN_AUDIO_RATE <= rate <= MAX_AUDIO_RATE:
        raise invalid(f"audio_sample_rate must be 0 (no audio) or {MIN_AUDIO_RATE}..{MAX_AUDIO_RATE}, got {rate}")
    return StreamFormat(
        width=w,
        height=h,
        fps=Fraction(str(np.float32(msg.fps))),
        output_format=output_format,
        jpeg_quality=msg.jpeg_quality or DEFAULT_JPEG_QUALITY,
        audio_sample_rate=rate,
        first_output_frame=msg.first_output_frame,
        decode_mode=_MODES[msg.decode_mode],
    )


class DecodeStream:
    """A stream's decode state, chunk order and fMP4 encoder; call ``close`` when the stream ends.

    The decode state is ``state`` (STREAM: the VAE's causal cache) or ``context`` (CONTEXT: the last
    clean latents, None until the first chunk); the other one stays None.
    """

    def __init__(
        self, decoder: StreamingDecoder, fmt: StreamFormat, max_latent_elements: int, max_response_bytes: int
    ) -> None:
        self.decoder = decoder
        self.fmt = fmt
        self.max_latent_elements = max_latent_elements
        self.max_response_bytes = max_response_bytes
        self.context_mode = fmt.decode_mode == decoder_pb2.CONTEXT
        self.state: DecoderState | None = None if self.context_mode else decoder.initial_state()
        self.context: torch.Tensor | None = None  # (1, Cz, Tc, h, w) float32 on the VAE's device
        self.closed = False
        self.next_index: int | None = None  # None: the first chunk sets where the numbering starts
        self.end_frame = 0  # first_frame + frame_count of the last chunk
        self.frames_sent = 0
        self.mp4: FragmentedMp4Stream | None = None
        self._check_first_decode = False  # set by resume: a cache that does not fit fails the next decode
        cfg = decoder.cfg
        s = cfg.spatial_stride
        self._latent_shape = (1, cfg.z_dim, fmt.height // s, fmt.width // s)  # without F

    def open(self) -> None:
        """Start the fMP4 encoder (FMP4_H264 only); ffmpeg failing to start is an internal error."""
        if self.fmt.output_format == common_pb2.FMP4_H264:
            self.mp4 = FragmentedMp4Stream(
                self.fmt.fps, self.fmt.width, self.fmt.height, self.fmt.audio_sample_rate or None
            )

    def close(self) -> None:
        """Free the decode state and stop ffmpeg (idempotent; the output of an unfinished fMP4 is dropped)."""
        self.closed = True
        self.state = self.context = None
        if self.mp4 is not None:
            self.mp4.abort()
            self.mp4 = None

    # -- chunks --------------------------------------------------------------------------------------

    def decode(self, chunk: decoder_pb2.LatentChunk) -> list[decoder_pb2.DecodeResponse]:
        """Check and decode one chunk; its responses (more than one only when a message would be too big)."""
        if self.closed:
            raise RuntimeError("decode after close")
        if self.next_index is not None and chunk.chunk_index != self.next_index:
            raise invalid(
                f"chunk_index {chunk.chunk_index} is out of order: expected {self.next_index} "
                "(chunks must be sent in order, each index one more than the last)"
            )
        latents = self._latents(chunk)
        decoded = self.decoder.cfg.video_frames(latents.shape[2], first=self._at_start())
        if chunk.keep_frames > decoded:
            raise invalid(
                f"chunk {chunk.chunk_index}: keep_frames {chunk.keep_frames} is more than the {decoded} frames "
                f"its {latents.shape[2]} latent frames decode to"
            )
        audio = self._audio(chunk)
        frames = self._decode(chunk.chunk_index, latents.to(self.decoder.vae.device))
        pixels = frames_to_uint8(frames)  # (Tv, H, W, 3) uint8
        if chunk.keep_frames:
            pixels = pixels[: chunk.keep_frames]
        self.next_index = chunk.chunk_index + 1
        self.end_frame = chunk.first_frame + len(pixels)
        skip = min(max(self.fmt.first_output_frame - chunk.first_frame, 0), len(pixels))  # not sent
        first, pixels = chunk.first_frame + skip, pixels[skip:]
        self.frames_sent += len(pixels)
        if self.fmt.output_format == common_pb2.FMP4_H264:
            if not len(pixels):  # nothing encoded: only what ffmpeg has produced meanwhile
                return self._fmp4_responses(chunk.chunk_index, first, 0, b"".join(self.mp4.drain()))
            if audio is not None and skip:
                rate = self.fmt.audio_sample_rate
                drop = samples_before(first, self.fmt.fps, rate) - samples_before(chunk.first_frame, self.fmt.fps, rate)
                audio = audio[drop:]
            try:
                data = self._pump(lambda: self.mp4.write(pixels, audio))
            except ValueError as exc:  # the audio runs too far ahead of the frames (ffmpeg errors are MediaError)
                raise invalid(f"chunk {chunk.chunk_index}: {exc}") from None
            return self._fmp4_responses(chunk.chunk_index, first, len(pixels), data)
        if self.fmt.output_format == common_pb2.RAW_RGB:
            payloads = [frame.tobytes() for frame in pixels]
        else:
            payloads = [_jpeg(frame, self.fmt.jpeg_quality) for frame in pixels]
        return self._frame_responses(chunk.chunk_index, first, payloads)

    def _at_start(self) -> bool:
        """Whether the next chunk starts the video (its first latent decodes to 1 frame, not 4)."""
        return self.context is None if self.context_mode else not self.state.first_decoded

    def _decode_step(self, latents: torch.Tensor) -> torch.Tensor:
        """One chunk in the stream's mode; the decode state moves on past it."""
        if self.context_mode:
            frames, self.context = self.decoder.decode_with_context(self.context, latents)
        else:
            frames, self.state = self.decoder.decode(latents, self.state)
        return frames

    def _decode(self, index: int, latents: torch.Tensor) -> torch.Tensor:
        """The VAE on the stream's state; a restored state that does not fit it is the client's error."""
        if not self._check_first_decode:
            return self._decode_step(latents)
        try:
            frames = self._decode_step(latents)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:  # shapes of a hand-made or foreign state (a real failure recurs later)
            raise invalid(f"chunk {index}: DecodeConfig.resume_state does not fit this VAE and size: {exc}") from None
        self._check_first_decode = False
        return frames

    def finish(self) -> list[decoder_pb2.DecodeResponse]:
        """End of stream: the rest of the fMP4 bytes (nothing for RAW_RGB / JPEG); the state is freed."""
        out = []
        if self.mp4 is not None:
            mp4 = self.mp4
            data = self._pump(mp4.close)
            self.mp4 = None
            if data:
                last = max((self.next_index or 0) - 1, 0)
                out = self._fmp4_responses(last, self.end_frame, 0, data)
        self.close()
        return out

    # -- snapshots -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The decode state (STREAM: ``vae.*``, the causal cache; CONTEXT: ``context``, once there is one),
        on the VAE's device, then the chunk position and the size."""
        if self.closed:
            raise RuntimeError("state_dict after close: a closed stream has nothing to continue")
        if self.context_mode:
            decode_state = {} if self.context is None else {_CONTEXT_KEY: _compact(self.context)}
        else:
            decode_state = with_prefix("vae", self.state.export())
        return {
            **decode_state,
            "next_chunk_index": int_tensor(_NO_CHUNK_YET if self.next_index is None else self.next_index),
            "end_frame": int_tensor(self.end_frame),
            "width": int_tensor(self.fmt.width),
            "height": int_tensor(self.fmt.height),
        }

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Continue from ``state_dict()`` of a stream of this VAE, size and mode; ``ValueError`` says what is wrong."""
        if self.context_mode and any(name.startswith("vae.") for name in tensors):
            self._check_mode(decoder_pb2.DecodeMode.Name(decoder_pb2.STREAM))
        if not self.context_mode and _CONTEXT_KEY in tensors:
            self._check_mode(decoder_pb2.DecodeMode.Name(decoder_pb2.CONTEXT))
        r = StateReader(tensors, "the snapshot")
        r.same("width", self.fmt.width, " px")
        r.same("height", self.fmt.height, " px")
        next_index, end_frame = r.read_int("next_chunk_index"), r.read_int("end_frame")
        if next_index < _NO_CHUNK_YET or end_frame < 0:
            raise ValueError(f"the snapshot is inconsistent (chunk {next_index}, frame {end_frame})")
        if self.context_mode:
            context = self._read_context(tensors, r, started=next_index != _NO_CHUNK_YET)
            r.close()
            self.context = context
        else:
            cache = r.sub("vae")
            r.close()
            self.state = self._load_cache(cache)
        self.end_frame = end_frame
        self.next_index = None if next_index == _NO_CHUNK_YET else next_index
        self._check_first_decode = True

    def snapshot(self, request: common_pb2.SnapshotRequest) -> decoder_pb2.DecodeResponse:
        """The stream's state now, after every chunk before the request; too big for a message: RESOURCE_EXHAUSTED."""
        if self.state is not None:
            self._check_snapshot_size(self.state.nbytes())  # before copying a cache that cannot be sent
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

    def _read_context(self, tensors: Mapping[str, torch.Tensor], r: StateReader, started: bool) -> torch.Tensor | None:
        """CONTEXT mode's ``context`` (float32, on the VAE's device): there once a chunk was decoded,
        finite, ``(1, Cz, Tc, h, w)`` of this VAE and size with 1 <= Tc <= ``decode_context_latents``."""
        t = tensors.get(_CONTEXT_KEY)
        if (t is not None) != started:
            has = "has" if t is not None else "has no"
            raise ValueError(
                f"the snapshot is inconsistent: it {has} {_CONTEXT_KEY!r} latents, but "
                f"{'a chunk was' if started else 'no chunk was yet'} decoded: it was not written by state_dict()"
            )
        if t is None:
            return None
        if not isinstance(t, torch.Tensor) or t.dtype not in _CONTEXT_DTYPES:
            got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"the {_CONTEXT_KEY!r} latents must be one of {list(_CONTEXT_DTYPES)}, got {got}")
        r.tensor(_CONTEXT_KEY, t.dtype, _CONTEXT_DIMS)  # the number of dims, and t counts as read
        n, c, h, w = self._latent_shape
        most = self.decoder.cfg.decode_context_latents
        if (t.shape[0], t.shape[1], t.shape[3], t.shape[4]) != (n, c, h, w) or not 1 <= t.shape[2] <= most:
            raise ValueError(
                f"the {_CONTEXT_KEY!r} latents must have shape ({n}, {c}, 1..{most}, {h}, {w}) for this VAE and "
                f"size, got {tuple(t.shape)}"
            )
        if not torch.isfinite(t).all():
            raise ValueError(f"the {_CONTEXT_KEY!r} latents contain NaN or infinite values")
        return t.to(device=self.decoder.vae.device, dtype=torch.float32)

    def _load_cache(self, tensors: dict[str, torch.Tensor]) -> DecoderState:
        """``DecoderState.load`` after the checks it does not make: slot count, dtypes, shapes, finiteness."""
        slots, first = tensors.get(SLOTS_KEY), tensors.get(FIRST_KEY)
        if not (isinstance(slots, torch.Tensor) and slots.dtype == torch.int64 and slots.numel() == 1):
            raise ValueError(f"the VAE cache's {SLOTS_KEY!r} is missing or not one int64")
        if int(slots.item()) != self.decoder.num_slots:
            raise ValueError(f"the VAE cache has {int(slots.item())} slots, this VAE has {self.decoder.num_slots}")
        if not (isinstance(first, torch.Tensor) and first.dtype == torch.bool and first.numel() == 1):
            raise ValueError(f"the VAE cache's {FIRST_KEY!r} is missing or not one bool")
        vae = self.decoder.vae
        for name, t in tensors.items():
            if name in (SLOTS_KEY, FIRST_KEY) or t.numel() == 0:  # empty: a REPEAT marker
                continue
            if t.dtype != vae.dtype or t.dim() != _CACHE_DIMS or t.shape[0] != 1 or not torch.isfinite(t).all():
                raise ValueError(
                    f"VAE cache entry {name!r} must be finite {vae.dtype} of shape (1, C, t, h, w), "
                    f"got {t.dtype} {tuple(t.shape)}"
                )
        return DecoderState.load(tensors, device=vae.device)  # ValueError for a name it does not know

    def _latents(self, chunk: decoder_pb2.LatentChunk) -> torch.Tensor:
        where = f"chunk {chunk.chunk_index}: latents"
        if not chunk.HasField("latents"):
            raise invalid(f"{where} are missing")
        t = chunk.latents
        if t.dtype not in LATENT_DTYPES:
            raise invalid(f"{where} dtype {t.dtype!r} must be one of {list(LATENT_DTYPES)}")
        shape = tuple(t.shape)  # checked before anything is allocated
        n, c, h, w = self._latent_shape
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

    # -- responses -----------------------------------------------------------------------------------

    def _frame_responses(self, index: int, first: int, payloads: list[bytes]) -> list[decoder_pb2.DecodeResponse]:
        """One response per chunk, or several consecutive ones when the frames would not fit one message."""
        out, batch, size = [], [], 0
        for p in payloads:
            if batch and size + len(p) > self.max_response_bytes:
                out.append(_response(index, first, len(batch), frames=batch))
                first, batch, size = first + len(batch), [], 0
            batch.append(p)
            size += len(p)
        out.append(_response(index, first, len(batch), frames=batch))
        return out

    def _fmp4_responses(self, index: int, first: int, count: int, data: bytes) -> list[decoder_pb2.DecodeResponse]:
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


def _compact(context: torch.Tensor) -> torch.Tensor:
    """A context in bfloat16 when that holds it exactly (latents sent as bfloat16 always are), else as it is."""
    narrow = context.to(_CONTEXT_SNAPSHOT_DTYPE)
    return narrow if torch.equal(narrow.to(context.dtype), context) else context


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _response(index: int, first: int, count: int, **payload) -> decoder_pb2.DecodeResponse:
    return decoder_pb2.DecodeResponse(
        frames=decoder_pb2.DecodedFrames(chunk_index=index, first_frame=first, frame_count=count, **payload)
    )
