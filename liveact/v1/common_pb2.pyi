from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_UNSPECIFIED: _ClassVar[OutputFormat]
    RAW_RGB: _ClassVar[OutputFormat]
    JPEG: _ClassVar[OutputFormat]
    FMP4_H264: _ClassVar[OutputFormat]
OUTPUT_FORMAT_UNSPECIFIED: OutputFormat
RAW_RGB: OutputFormat
JPEG: OutputFormat
FMP4_H264: OutputFormat

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class AudioFormat(_message.Message):
    __slots__ = ("encoding", "sample_rate", "channels")
    class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENCODING_UNSPECIFIED: _ClassVar[AudioFormat.Encoding]
        PCM_S16LE: _ClassVar[AudioFormat.Encoding]
        PCM_F32LE: _ClassVar[AudioFormat.Encoding]
    ENCODING_UNSPECIFIED: AudioFormat.Encoding
    PCM_S16LE: AudioFormat.Encoding
    PCM_F32LE: AudioFormat.Encoding
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    encoding: AudioFormat.Encoding
    sample_rate: int
    channels: int
    def __init__(self, encoding: _Optional[_Union[AudioFormat.Encoding, str]] = ..., sample_rate: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class ChunkStatus(_message.Message):
    __slots__ = ("code", "message", "chunk_index")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    chunk_index: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., chunk_index: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class StreamSnapshot(_message.Message):
    __slots__ = ("id", "state", "next_frame")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NEXT_FRAME_FIELD_NUMBER: _ClassVar[int]
    id: int
    state: bytes
    next_frame: int
    def __init__(self, id: _Optional[int] = ..., state: _Optional[bytes] = ..., next_frame: _Optional[int] = ...) -> None: ...
