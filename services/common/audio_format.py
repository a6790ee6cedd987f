"""``common.AudioFormat``'s encodings as the library names them: one table for every service."""

from __future__ import annotations

from liveact.audio.io import PcmFormat
from liveact.v1 import common_pb2

__all__ = ["ENCODINGS", "ENCODING_CODES"]

ENCODINGS: dict[int, PcmFormat] = {  # AudioFormat.Encoding -> the PCM format (UNSPECIFIED: the proto's default)
    common_pb2.AudioFormat.ENCODING_UNSPECIFIED: "s16le",
    common_pb2.AudioFormat.PCM_S16LE: "s16le",
    common_pb2.AudioFormat.PCM_F32LE: "f32le",
}
ENCODING_CODES: dict[PcmFormat, int] = {  # the other way (how a snapshot records the encoding)
    "s16le": common_pb2.AudioFormat.PCM_S16LE,
    "f32le": common_pb2.AudioFormat.PCM_F32LE,
}
