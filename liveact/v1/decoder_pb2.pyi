from liveact.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecodeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECODE_MODE_UNSPECIFIED: _ClassVar[DecodeMode]
    STREAM: _ClassVar[DecodeMode]
    CONTEXT: _ClassVar[DecodeMode]
DECODE_MODE_UNSPECIFIED: DecodeMode
STREAM: DecodeMode
CONTEXT: DecodeMode

class DecodeConfig(_message.Message):
    __slots__ = ("vae_preset", "width", "height", "fps", "output_format", "jpeg_quality", "audio_sample_rate", "resume_state", "first_output_frame", "decode_mode")
    VAE_PRESET_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    RESUME_STATE_FIELD_NUMBER: _ClassVar[int]
    FIRST_OUTPUT_FRAME_FIELD_NUMBER: _ClassVar[int]
    DECODE_MODE_FIELD_NUMBER: _ClassVar[int]
    vae_preset: str
    width: int
    height: int
    fps: float
    output_format: _common_pb2.OutputFormat
    jpeg_quality: int
    audio_sample_rate: int
    resume_state: bytes
    first_output_frame: int
    decode_mode: DecodeMode
    def __init__(self, vae_preset: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[float] = ..., output_format: _Optional[_Union[_common_pb2.OutputFormat, str]] = ..., jpeg_quality: _Optional[int] = ..., audio_sample_rate: _Optional[int] = ..., resume_state: _Optional[bytes] = ..., first_output_frame: _Optional[int] = ..., decode_mode: _Optional[_Union[DecodeMode, str]] = ...) -> None: ...

class LatentChunk(_message.Message):
    __slots__ = ("chunk_index", "first_frame", "latents", "keep_frames", "audio_pcm_f32", "trace_context")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    KEEP_FRAMES_FIELD_NUMBER: _ClassVar[int]
    AUDIO_PCM_F32_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    chunk_index: int
    first_frame: int
    latents: _common_pb2.Tensor
    keep_frames: int
    audio_pcm_f32: bytes
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, chunk_index: _Optional[int] = ..., first_frame: _Optional[int] = ..., latents: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., keep_frames: _Optional[int] = ..., audio_pcm_f32: _Optional[bytes] = ..., trace_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DecodeRequest(_message.Message):
    __slots__ = ("config", "chunk", "end", "snapshot")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    config: DecodeConfig
    chunk: LatentChunk
    end: bool
    snapshot: _common_pb2.SnapshotRequest
    def __init__(self, config: _Optional[_Union[DecodeConfig, _Mapping]] = ..., chunk: _Optional[_Union[LatentChunk, _Mapping]] = ..., end: _Optional[bool] = ..., snapshot: _Optional[_Union[_common_pb2.SnapshotRequest, _Mapping]] = ...) -> None: ...

class DecodedFrames(_message.Message):
    __slots__ = ("chunk_index", "first_frame", "frame_count", "frames", "fmp4")
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FMP4_FIELD_NUMBER: _ClassVar[int]
    chunk_index: int
    first_frame: int
    frame_count: int
    frames: _containers.RepeatedScalarFieldContainer[bytes]
    fmp4: bytes
    def __init__(self, chunk_index: _Optional[int] = ..., first_frame: _Optional[int] = ..., frame_count: _Optional[int] = ..., frames: _Optional[_Iterable[bytes]] = ..., fmp4: _Optional[bytes] = ...) -> None: ...

class DecodeResponse(_message.Message):
    __slots__ = ("frames", "snapshot")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    frames: DecodedFrames
    snapshot: _common_pb2.StreamSnapshot
    def __init__(self, frames: _Optional[_Union[DecodedFrames, _Mapping]] = ..., snapshot: _Optional[_Union[_common_pb2.StreamSnapshot, _Mapping]] = ...) -> None: ...
