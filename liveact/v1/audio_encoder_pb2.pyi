from liveact.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncodeConfig(_message.Message):
    __slots__ = ("fps", "audio_format", "layers", "channels", "resume_state")
    FPS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FORMAT_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    RESUME_STATE_FIELD_NUMBER: _ClassVar[int]
    fps: float
    audio_format: _common_pb2.AudioFormat
    layers: int
    channels: int
    resume_state: bytes
    def __init__(self, fps: _Optional[float] = ..., audio_format: _Optional[_Union[_common_pb2.AudioFormat, _Mapping]] = ..., layers: _Optional[int] = ..., channels: _Optional[int] = ..., resume_state: _Optional[bytes] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("config", "pcm", "end_of_audio", "snapshot", "trace_context")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    END_OF_AUDIO_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    config: EncodeConfig
    pcm: bytes
    end_of_audio: bool
    snapshot: _common_pb2.SnapshotRequest
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, config: _Optional[_Union[EncodeConfig, _Mapping]] = ..., pcm: _Optional[bytes] = ..., end_of_audio: _Optional[bool] = ..., snapshot: _Optional[_Union[_common_pb2.SnapshotRequest, _Mapping]] = ..., trace_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FeatureRows(_message.Message):
    __slots__ = ("first_frame", "rows", "final", "total_frames")
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FRAMES_FIELD_NUMBER: _ClassVar[int]
    first_frame: int
    rows: _common_pb2.Tensor
    final: bool
    total_frames: int
    def __init__(self, first_frame: _Optional[int] = ..., rows: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., final: _Optional[bool] = ..., total_frames: _Optional[int] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("rows", "snapshot")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    rows: FeatureRows
    snapshot: _common_pb2.StreamSnapshot
    def __init__(self, rows: _Optional[_Union[FeatureRows, _Mapping]] = ..., snapshot: _Optional[_Union[_common_pb2.StreamSnapshot, _Mapping]] = ...) -> None: ...
