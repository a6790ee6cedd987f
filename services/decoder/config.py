"""Checking a ``DecodeConfig``: what a ``Decode`` stream is asked to produce, or INVALID_ARGUMENT.

``parse_config`` turns a ``DecodeConfig`` into a ``StreamFormat`` (against this server's VAE and
limits) or raises ``RequestError`` with a message saying what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from liveact.media import DEFAULT_JPEG_QUALITY
from liveact.v1 import common_pb2, decoder_pb2
from liveact.vae import VaeConfig
from liveact.vae.session import DEFAULT_DECODE_MODE, DecodeMode
from services.common.errors import invalid

__all__ = ["LATENT_DTYPES", "LIBRARY_MODES", "MODES", "StreamFormat", "parse_config"]

SIZE_MULTIPLE = 16  # width and height: whole latent cells (8 px) of an even number of cells
MIN_AUDIO_RATE, MAX_AUDIO_RATE = 8000, 96000  # what ffmpeg's AAC encoder takes
LATENT_DTYPES = ("float32", "bfloat16")
LIBRARY_MODES: dict[int, DecodeMode] = {decoder_pb2.STREAM: "stream", decoder_pb2.CONTEXT: "context"}
MODES = {  # DecodeConfig.decode_mode -> the mode the stream runs (UNSPECIFIED: the library's default)
    decoder_pb2.DECODE_MODE_UNSPECIFIED: {v: k for k, v in LIBRARY_MODES.items()}[DEFAULT_DECODE_MODE],
    decoder_pb2.STREAM: decoder_pb2.STREAM,
    decoder_pb2.CONTEXT: decoder_pb2.CONTEXT,
}
_MODE_NAMES = ", ".join(decoder_pb2.DecodeMode.Name(m) for m in sorted(MODES))
_FORMATS = {
    common_pb2.OUTPUT_FORMAT_UNSPECIFIED: common_pb2.JPEG,
    common_pb2.RAW_RGB: common_pb2.RAW_RGB,
    common_pb2.JPEG: common_pb2.JPEG,
    common_pb2.FMP4_H264: common_pb2.FMP4_H264,
}
_FORMAT_NAMES = ", ".join(common_pb2.OutputFormat.Name(f) for f in sorted(_FORMATS))


@dataclass(frozen=True)
class StreamFormat:
    width: int
    height: int
    fps: Fraction  # exact: the float32 on the wire read as its shortest decimal (29.97 -> 2997/100)
    output_format: int  # common_pb2.RAW_RGB, JPEG or FMP4_H264 (UNSPECIFIED resolved to JPEG)
    jpeg_quality: int
    audio_sample_rate: int  # 0: no audio track (FMP4_H264 only)
    first_output_frame: int = 0  # frames before this absolute index are decoded, not sent
    decode_mode: int = MODES[decoder_pb2.DECODE_MODE_UNSPECIFIED]  # decoder_pb2.STREAM or CONTEXT

    @property
    def format_name(self) -> str:
        return common_pb2.OutputFormat.Name(self.output_format)

    @property
    def mode_name(self) -> str:
        return decoder_pb2.DecodeMode.Name(self.decode_mode)

    @property
    def session_mode(self) -> DecodeMode:
        """The mode as ``liveact.vae.DecodeSession`` names it."""
        return LIBRARY_MODES[self.decode_mode]


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
    if msg.decode_mode not in MODES:
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
        decode_mode=MODES[msg.decode_mode],
    )
