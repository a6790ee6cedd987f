"""Checking what a client sends a generator: every problem becomes INVALID_ARGUMENT with what to fix.

``parse_config`` checks a new session's ``SessionConfig``, ``check_resume`` a ``ResumeRequest``
(what the store cannot check: that it names a session), ``check_audio_chunk`` each ``AudioChunk``
(in order, not empty, whole samples, finite floats). An AudioChunk is checked here rather than
left to the encoder, whose refusal mid-stream can reach gRPC's asyncio client as
INTERNAL while the generator is still writing to it.

What the audio encoder would refuse about a config (fps outside its tempo range, an unknown
encoding, a sample rate it cannot resample) is checked here too, before the session starts, so that
it is answered with INVALID_ARGUMENT naming the client's field rather than a peer's error after the
SessionHeader.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import cast

import numpy as np

from liveact.audio import AudioConfig
from liveact.audio.io import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, PCM_SAMPLE_BYTES, PcmFormat
from liveact.config import ConfigError, LiveActConfig
from liveact.media import DEFAULT_JPEG_QUALITY, ImageError, load_reference_image
from liveact.state.keys import SESSION_ID_PATTERN
from liveact.state.schema import SessionInfo
from liveact.v1 import common_pb2, generator_pb2
from services.common.audio_format import ENCODINGS
from services.common.errors import invalid

DEFAULT_FPS = 20.0
MAX_FPS = 60.0
MAX_SIDE = 2048  # pixels per side a session may ask for
FORMATS = (common_pb2.RAW_RGB, common_pb2.JPEG, common_pb2.FMP4_H264)


@dataclass(frozen=True)
class SessionParams:
    session_id: str
    resume_secret: str
    image: np.ndarray | None  # (H, W, 3) uint8; None for a resumed session (its conditioning is stored)
    prompt: str
    fps: float
    width: int
    height: int
    seed: int
    output_format: common_pb2.OutputFormat
    jpeg_quality: int
    audio_format: common_pb2.AudioFormat
    sample_rate: int  # of the client's PCM (0 in the config resolved to the models' rate)
    decode_mode: str = "stream"  # the decoder's mode for this session ("stream" or "context"), fixed for its life

    @property
    def sample_format(self) -> PcmFormat:
        return ENCODINGS[self.audio_format.encoding]

    @property
    def frame_bytes(self) -> int:
        """Bytes per multi-channel sample frame."""
        return PCM_SAMPLE_BYTES[self.sample_format] * (self.audio_format.channels or 1)

    @property
    def audio_format_name(self) -> str:
        return f"{self.sample_format}, {self.audio_format.channels or 1} channel(s), {self.sample_rate} Hz"


def parse_config(
    msg: generator_pb2.SessionConfig,
    config: LiveActConfig,
    audio: AudioConfig,
    max_image_bytes: int,
    decode_mode: str = "stream",
    max_size: tuple[int, int] | None = None,
) -> SessionParams:
    """``audio``: the audio encoder's configuration (its sample rate and the fps range its tempo takes);
    ``max_size``: the largest (width, height) in pixels the generator's memory is planned for (``--max-size``)."""
    fps = msg.fps or DEFAULT_FPS
    if not 0 < fps <= MAX_FPS:
        raise invalid(f"fps {msg.fps} must be in (0, {MAX_FPS}] (0 means {DEFAULT_FPS})")
    try:
        audio.tempo_factor(float(fps))
    except ConfigError as exc:
        raise invalid(f"fps {msg.fps}: {exc}") from None
    width, height = msg.width or config.width, msg.height or config.height
    if width % 16 or height % 16 or not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise invalid(
            f"size {width}x{height} must be multiples of 16 up to {MAX_SIDE} (0 = {config.width}x{config.height})"
        )
    if max_size is not None and width * height > max_size[0] * max_size[1]:
        mw, mh = max_size
        raise invalid(
            f"size {width}x{height} is {width * height} pixels, more than this generator's memory is planned for "
            f"({mw}x{mh} = {mw * mh}, --max-size): ask for a smaller size or use a generator with a larger --max-size"
        )
    output = msg.output_format or common_pb2.JPEG
    if output not in FORMATS:
        raise invalid(f"output_format {msg.output_format} is unknown: use RAW_RGB, JPEG or FMP4_H264")
    quality = msg.jpeg_quality or DEFAULT_JPEG_QUALITY
    if not 1 <= quality <= 100:
        raise invalid(f"jpeg_quality {msg.jpeg_quality} must be 1..100 (0 means {DEFAULT_JPEG_QUALITY})")
    fmt = msg.audio_format
    if fmt.encoding not in ENCODINGS:
        raise invalid(f"audio_format.encoding {fmt.encoding} is unknown: use PCM_S16LE or PCM_F32LE")
    if fmt.channels > MAX_CHANNELS:
        raise invalid(f"audio_format.channels {fmt.channels} must be 1..{MAX_CHANNELS} (0 means 1)")
    rate = fmt.sample_rate or audio.sample_rate
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise invalid(
            f"audio_format.sample_rate {fmt.sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz: "
            f"send {audio.sample_rate} Hz (the models' rate; other rates in that range are resampled), "
            f"or 0 for {audio.sample_rate}"
        )
    if not msg.reference_image:
        raise invalid("reference_image is empty: send the PNG/JPEG bytes of the person to animate")
    if len(msg.reference_image) > max_image_bytes:
        raise invalid(f"reference_image has {len(msg.reference_image)} bytes; the limit is {max_image_bytes}")
    try:
        image = load_reference_image(msg.reference_image, width, height)
    except ImageError as exc:
        raise invalid(f"reference_image: {exc}") from None
    return SessionParams(
        session_id=uuid.uuid4().hex,
        resume_secret=secrets.token_urlsafe(24),
        image=image,
        prompt=msg.prompt,
        fps=float(fps),
        width=width,
        height=height,
        seed=int(msg.seed),
        output_format=output,
        jpeg_quality=quality,
        audio_format=fmt,
        sample_rate=rate,
        decode_mode=decode_mode,
    )


MAX_SECRET_CHARS = 256  # a resume_secret is 32 characters (secrets.token_urlsafe(24)); anything longer is not one
RESUME_MODES = (
    generator_pb2.ResumeRequest.MODE_UNSPECIFIED,
    generator_pb2.ResumeRequest.EXACT,
    generator_pb2.ResumeRequest.LIVE,
)


def check_resume(req: generator_pb2.ResumeRequest) -> None:
    """A ResumeRequest whose fields can name a session (the store checks the rest); nothing is echoed."""
    if not SESSION_ID_PATTERN.fullmatch(req.session_id):
        raise invalid(
            f"resume.session_id ({len(req.session_id)} characters) is not a session id: send the session_id "
            f"of a SessionHeader ({SESSION_ID_PATTERN.pattern})"
        )
    if not 0 < len(req.resume_secret) <= MAX_SECRET_CHARS:
        raise invalid(
            f"resume.resume_secret has {len(req.resume_secret)} characters: send the resume_secret of the "
            f"session's SessionHeader (1..{MAX_SECRET_CHARS} characters)"
        )
    if req.mode not in RESUME_MODES:
        raise invalid(f"resume.mode {req.mode} is unknown: use EXACT or LIVE")


def check_audio_chunk(p: SessionParams, chunk: generator_pb2.AudioChunk, expected_seq: int, audio_ended: bool) -> None:
    """An AudioChunk the session can use: ``expected_seq``, whole finite samples of its format."""
    if chunk.seq != expected_seq:
        raise invalid(
            f"AudioChunk.seq {chunk.seq} out of order: expected {expected_seq} (number chunks 0, 1, 2, ...; "
            "after a resume, continue at SessionHeader.next_audio_seq)"
        )
    if not chunk.data:
        raise invalid(
            f"AudioChunk {chunk.seq} is empty: put at least one whole sample ({p.frame_bytes} bytes, "
            f"{p.audio_format_name}) in each AudioChunk, and send EndOfAudio to finish"
        )
    if len(chunk.data) % p.frame_bytes:
        raise invalid(
            f"AudioChunk {chunk.seq} has {len(chunk.data)} bytes, not a multiple of {p.frame_bytes} "
            f"({p.audio_format_name}): send whole samples"
        )
    if p.sample_format == "f32le" and not np.isfinite(np.frombuffer(chunk.data, "<f4")).all():
        raise invalid(f"AudioChunk {chunk.seq} holds NaN or infinite samples: send finite float samples in [-1, 1]")
    if audio_ended:
        raise invalid(f"this session's audio ended before AudioChunk {chunk.seq}: send only EndOfAudio after resuming")


def session_info(p: SessionParams, preset: str) -> SessionInfo:
    """What a resume needs to rebuild ``SessionParams`` (stored with the session in Redis)."""
    fmt = p.audio_format
    return SessionInfo(
        preset=preset, fps=p.fps, width=p.width, height=p.height, seed=p.seed, output_format=p.output_format,
        jpeg_quality=p.jpeg_quality, prompt=p.prompt, audio_encoding=int(fmt.encoding),
        audio_sample_rate=int(fmt.sample_rate), audio_channels=int(fmt.channels), decode_mode=p.decode_mode,
    )  # fmt: skip


def params_from_info(info: SessionInfo, session_id: str, resume_secret: str, audio: AudioConfig) -> SessionParams:
    """The inverse of ``session_info`` (the image is not needed: the conditioning is in the checkpoint)."""
    encoding = cast(common_pb2.AudioFormat.Encoding, info.audio_encoding)  # stored as the enum's number
    fmt = common_pb2.AudioFormat(encoding=encoding, sample_rate=info.audio_sample_rate, channels=info.audio_channels)
    return SessionParams(
        session_id=session_id,
        resume_secret=resume_secret,
        image=None,
        prompt=info.prompt,
        fps=info.fps,
        width=info.width,
        height=info.height,
        seed=info.seed,
        output_format=cast(common_pb2.OutputFormat, info.output_format),  # stored as the enum's number
        jpeg_quality=info.jpeg_quality,
        audio_format=fmt,
        sample_rate=fmt.sample_rate or audio.sample_rate,
        decode_mode=info.decode_mode,
    )
