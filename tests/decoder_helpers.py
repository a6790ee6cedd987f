"""In-process Decode streams for the decoder tests: the server's VAE, a ``DecodeStream`` as the server makes it,
latent chunks in, RAW_RGB frames out."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import torch

from liveact.v1 import common_pb2, decoder_pb2
from liveact.vae import StreamingDecoder, get_vae_preset
from liveact.vae.loading import load_vae
from liveact.weight_files import builtin_vae_dir
from services.common.tensors import to_proto
from services.decoder.stream import DecodeStream, StreamFormat

MAX_LATENTS = 1 << 20
JPEG_QUALITY = 90


def tiny_vae_decoder() -> StreamingDecoder:
    """The VAE the server loads by default: the built-in weights, else the same seeded fresh ones."""
    cfg = get_vae_preset("tiny")
    return StreamingDecoder(load_vae(cfg, builtin_vae_dir("tiny")), cfg)


def new_stream(
    decoder: StreamingDecoder, size: int, fps: int, mode: int, max_bytes: int, state: bytes = b"", **fmt_fields
) -> DecodeStream:
    """A ``size`` x ``size`` DecodeStream as the server makes it (RAW_RGB unless told), resumed from ``state``."""
    fields = dict(
        width=size, height=size, fps=Fraction(fps), output_format=common_pb2.RAW_RGB, jpeg_quality=JPEG_QUALITY,
        audio_sample_rate=0, decode_mode=mode,
    )  # fmt: skip
    stream = DecodeStream(decoder, StreamFormat(**(fields | fmt_fields)), MAX_LATENTS, max_bytes)
    if state:
        stream.resume(state)
    stream.open()
    return stream


def latent_chunk(index: int, first_frame: int, z: torch.Tensor, **extra) -> decoder_pb2.LatentChunk:
    return decoder_pb2.LatentChunk(chunk_index=index, first_frame=first_frame, latents=to_proto(z), **extra)


def raw_frames(responses: list[decoder_pb2.DecodeResponse], size: int) -> np.ndarray:
    """The RAW_RGB frames of a chunk's responses, (n, size, size, 3) uint8 (numbering checked)."""
    frames = [r.frames for r in responses]
    for a, b in itertools.pairwise(frames):
        assert b.first_frame == a.first_frame + a.frame_count
    pixels = [np.frombuffer(f, np.uint8).reshape(size, size, 3) for d in frames for f in d.frames]
    assert len(pixels) == sum(d.frame_count for d in frames)
    return np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8)
