from liveact.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnimateRequest(_message.Message):
    __slots__ = ("config", "audio", "end_of_audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    END_OF_AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: SessionConfig
    audio: AudioChunk
    end_of_audio: EndOfAudio
    def __init__(self, config: _Optional[_Union[SessionConfig, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., end_of_audio: _Optional[_Union[EndOfAudio, _Mapping]] = ...) -> None: ...

class SessionConfig(_message.Message):
    __slots__ = ("reference_image", "prompt", "fps", "width", "height", "seed", "output_format", "audio_format", "jpeg_quality", "resume")
    REFERENCE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FORMAT_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    reference_image: bytes
    prompt: str
    fps: float
    width: int
    height: int
    seed: int
    output_format: _common_pb2.OutputFormat
    audio_format: _common_pb2.AudioFormat
    jpeg_quality: int
    resume: ResumeRequest
    def __init__(self, reference_image: _Optional[bytes] = ..., prompt: _Optional[str] = ..., fps: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., seed: _Optional[int] = ..., output_format: _Optional[_Union[_common_pb2.OutputFormat, str]] = ..., audio_format: _Optional[_Union[_common_pb2.AudioFormat, _Mapping]] = ..., jpeg_quality: _Optional[int] = ..., resume: _Optional[_Union[ResumeRequest, _Mapping]] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("session_id", "resume_secret", "next_frame", "mode", "audio_pts_us")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNSPECIFIED: _ClassVar[ResumeRequest.Mode]
        EXACT: _ClassVar[ResumeRequest.Mode]
        LIVE: _ClassVar[ResumeRequest.Mode]
    MODE_UNSPECIFIED: ResumeRequest.Mode
    EXACT: ResumeRequest.Mode
    LIVE: ResumeRequest.Mode
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_SECRET_FIELD_NUMBER: _ClassVar[int]
    NEXT_FRAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_PTS_US_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    resume_secret: str
    next_frame: int
    mode: ResumeRequest.Mode
    audio_pts_us: int
    def __init__(self, session_id: _Optional[str] = ..., resume_secret: _Optional[str] = ..., next_frame: _Optional[int] = ..., mode: _Optional[_Union[ResumeRequest.Mode, str]] = ..., audio_pts_us: _Optional[int] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("seq", "pts_us", "data")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PTS_US_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    pts_us: int
    data: bytes
    def __init__(self, seq: _Optional[int] = ..., pts_us: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class EndOfAudio(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AnimateResponse(_message.Message):
    __slots__ = ("header", "frames", "checkpoint", "status", "end")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    header: SessionHeader
    frames: FrameChunk
    checkpoint: CheckpointNotice
    status: _common_pb2.ChunkStatus
    end: SessionEnd
    def __init__(self, header: _Optional[_Union[SessionHeader, _Mapping]] = ..., frames: _Optional[_Union[FrameChunk, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointNotice, _Mapping]] = ..., status: _Optional[_Union[_common_pb2.ChunkStatus, _Mapping]] = ..., end: _Optional[_Union[SessionEnd, _Mapping]] = ...) -> None: ...

class SessionHeader(_message.Message):
    __slots__ = ("session_id", "resume_secret", "width", "height", "fps", "output_format", "first_frame", "skipped_frames", "next_audio_seq", "warnings")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_SECRET_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    NEXT_AUDIO_SEQ_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    resume_secret: str
    width: int
    height: int
    fps: float
    output_format: _common_pb2.OutputFormat
    first_frame: int
    skipped_frames: int
    next_audio_seq: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., resume_secret: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[float] = ..., output_format: _Optional[_Union[_common_pb2.OutputFormat, str]] = ..., first_frame: _Optional[int] = ..., skipped_frames: _Optional[int] = ..., next_audio_seq: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class FrameChunk(_message.Message):
    __slots__ = ("seq", "chunk_index", "first_frame", "frame_count", "pts_us", "frames", "fmp4")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    PTS_US_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FMP4_FIELD_NUMBER: _ClassVar[int]
    seq: int
    chunk_index: int
    first_frame: int
    frame_count: int
    pts_us: int
    frames: _containers.RepeatedScalarFieldContainer[bytes]
    fmp4: bytes
    def __init__(self, seq: _Optional[int] = ..., chunk_index: _Optional[int] = ..., first_frame: _Optional[int] = ..., frame_count: _Optional[int] = ..., pts_us: _Optional[int] = ..., frames: _Optional[_Iterable[bytes]] = ..., fmp4: _Optional[bytes] = ...) -> None: ...

class CheckpointNotice(_message.Message):
    __slots__ = ("next_frame", "session_id", "resume_secret", "version", "replay_seconds", "checkpoints_skipped", "stall_ms")
    NEXT_FRAME_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_SECRET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    STALL_MS_FIELD_NUMBER: _ClassVar[int]
    next_frame: int
    session_id: str
    resume_secret: str
    version: int
    replay_seconds: float
    checkpoints_skipped: int
    stall_ms: float
    def __init__(self, next_frame: _Optional[int] = ..., session_id: _Optional[str] = ..., resume_secret: _Optional[str] = ..., version: _Optional[int] = ..., replay_seconds: _Optional[float] = ..., checkpoints_skipped: _Optional[int] = ..., stall_ms: _Optional[float] = ...) -> None: ...

class SessionEnd(_message.Message):
    __slots__ = ("frames", "reason", "resume", "checkpoints_written", "checkpoints_skipped")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    frames: int
    reason: str
    resume: ResumeRequest
    checkpoints_written: int
    checkpoints_skipped: int
    def __init__(self, frames: _Optional[int] = ..., reason: _Optional[str] = ..., resume: _Optional[_Union[ResumeRequest, _Mapping]] = ..., checkpoints_written: _Optional[int] = ..., checkpoints_skipped: _Optional[int] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("preset", "default_width", "default_height", "default_fps", "max_sessions", "active_sessions", "max_message_bytes", "audio_sample_rate")
    PRESET_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FPS_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    preset: str
    default_width: int
    default_height: int
    default_fps: float
    max_sessions: int
    active_sessions: int
    max_message_bytes: int
    audio_sample_rate: int
    def __init__(self, preset: _Optional[str] = ..., default_width: _Optional[int] = ..., default_height: _Optional[int] = ..., default_fps: _Optional[float] = ..., max_sessions: _Optional[int] = ..., active_sessions: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., audio_sample_rate: _Optional[int] = ...) -> None: ...
