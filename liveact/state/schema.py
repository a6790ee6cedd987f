"""What a session stores: one typed schema, one format version, every tensor name.

Everything LiveAct writes to its session store is one of these frozen dataclasses (JSON through
``to_json`` / ``from_json``) or a tensor whose name is built from the prefixes below; nothing else
reads or writes a stored field by a string key. A checkpoint is a manifest (``store.py``) whose
``meta`` is a ``CheckpointMeta`` and whose table lists, per tensor-parallel rank, its streams (``StreamRef``:
tensors as they lie in one buffer, each a ``TensorRef``: name, dtype, shape, offset) and the content-addressed
parts of each stream's bytes (``PartDigest``):

* every rank: ``dit.memory.<cache>.{k,v}[_scale]`` (its heads of every ConvKV cache's slots after the
  sink) and ``dit.memory.<cache>.sink.{k,v}[_scale]`` (the sink slots, fixed after chunk 0),
  ``dit.memory.chunks_written``, ``dit.noise.state``, ``dit.cond.{y,context,null_audio}``
  (``liveact.sampling.state`` names them without the ``dit.`` prefix);
* rank 0 also: ``audio.rows`` (float32 (n, L, C), absolute rows ``rows_first ..``),
  ``encoder.state`` and ``decoder.state`` (uint8: the streams' own safetensors bytes).

``FORMAT_VERSION`` covers all of it (manifest layout, meta fields, tensor names): a reader refuses
any other version rather than guessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import torch

from liveact.state import codec

__all__ = [
    "AUDIO_ROWS",
    "COND",
    "COND_CONTEXT",
    "COND_NULL_AUDIO",
    "COND_Y",
    "DECODER_STATE",
    "DIT",
    "ENCODER_STATE",
    "FORMAT_VERSION",
    "LAYOUT_GROUPS",
    "MEMORY",
    "MEMORY_KV_SUFFIXES",
    "NOISE_STATE",
    "AudioPosition",
    "CheckpointMeta",
    "Manifest",
    "PartDigest",
    "SchemaError",
    "SessionInfo",
    "SessionRecord",
    "StreamRef",
    "TensorRef",
    "by_layout_group",
    "dit_part",
    "fixed_after_first_chunk",
    "layout_group",
    "with_dit_prefix",
]

FORMAT_VERSION = 4  # 4: streams of tensors as laid out in the capture buffers, parts addressed by content;
# 3: per-tensor parts addressed by content, sink slots apart; 2: one blob per rank, typed meta

# tensor names of a sampler's state (liveact.sampling.state)
MEMORY = "memory."  # ConvKV caches: memory.<step>.<layer>.{k,v}[_scale], memory.chunks_written
MEMORY_KV_SUFFIXES = (".k", ".v", ".k_scale", ".v_scale")  # the cache tensors split by heads across ranks
NOISE_STATE = "noise.state"
COND = "cond."
COND_Y, COND_CONTEXT, COND_NULL_AUDIO = COND + "y", COND + "context", COND + "null_audio"

# tensor names of a checkpoint shard
DIT = "dit."  # every rank: its sampler state under this prefix
AUDIO_ROWS, ENCODER_STATE, DECODER_STATE = "audio.rows", "encoder.state", "decoder.state"  # rank 0 only


class SchemaError(ValueError):
    """A stored object that does not match this schema (missing or mistyped field)."""


SINK = ".sink."  # in a memory tensor's name: the cache's sink slots (``LayerKV.persistent_views``)


def fixed_after_first_chunk(name: str) -> bool:
    """A sampler-state tensor that no chunk after chunk 0 changes: the conditioning and the sink slots. A checkpoint
    store shares its parts between versions; a capture need not copy it again."""
    return name.startswith(COND) or (name.startswith(MEMORY) and SINK in name)


LAYOUT_GROUPS = ("cond", "sink", "state")


def layout_group(name: str) -> str:
    """The capture buffer a sampler-state tensor lives in (``liveact.sampling.capture``): tensors that change
    together share one, so a checkpoint's stream of an unchanged group has the same parts as the version before
    (the sink slots), and the conditioning's the same parts on every rank."""
    if name.startswith(COND):
        return "cond"
    return "sink" if fixed_after_first_chunk(name) else "state"


def by_layout_group(names: Iterable[str]) -> dict[str, list[str]]:
    """``names`` by ``layout_group``, each group's sorted: the order a capture lays its buffers out in
    (``liveact.sampling.capture``), which ``liveact plan`` costs (``liveact.plan.redis_plan``)."""
    out: dict[str, list[str]] = {group: [] for group in LAYOUT_GROUPS}
    for name in sorted(names):
        out[layout_group(name)].append(name)
    return out


def with_dit_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A rank's sampler state -> its checkpoint names."""
    return {DIT + name: t for name, t in state.items()}


def dit_part(shard: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint shard -> the rank's sampler state (names without ``dit.``)."""
    n = len(DIT)
    return {name[n:]: t for name, t in shard.items() if name.startswith(DIT)}


T = TypeVar("T")


def _from_json(cls: type[T], obj: Any, what: str) -> T:
    """``cls(**obj)`` with every declared field present and of its declared scalar type."""
    if not isinstance(obj, dict):
        raise SchemaError(f"{what} must be a JSON object, got {type(obj).__name__}")
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]  # cls is one of the dataclasses below
        if f.name not in obj:
            raise SchemaError(f"{what} has no {f.name!r}")
        v, declared = obj[f.name], str(f.type)  # annotations are strings (from __future__ import annotations)
        kinds = _KINDS[declared]
        if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
            raise SchemaError(f"{what}.{f.name} must be {declared}, got {v!r}")
        values[f.name] = float(v) if declared == "float" and isinstance(v, int | float) else v
    return cls(**values)


_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "int | None": (int, type(None)),
}


@dataclass(frozen=True)
class SessionInfo:
    """What a resume needs to rebuild a session's parameters (the image is not: its conditioning is
    in the checkpoint). Stored with the session record when it starts."""

    preset: str
    fps: float
    width: int
    height: int
    seed: int
    output_format: int  # common.OutputFormat
    jpeg_quality: int
    prompt: str
    audio_encoding: int  # common.AudioFormat.Encoding
    audio_sample_rate: int  # 0: the models' rate
    audio_channels: int  # 0: mono
    decode_mode: str  # "stream" or "context"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> SessionInfo:
        return _from_json(cls, obj, "session info")


@dataclass(frozen=True)
class SessionRecord:
    """A session's record: the sha256 of its resume secret (never the secret) and its info."""

    secret_sha256: str
    info: SessionInfo
    created: float  # Unix seconds

    def to_json(self) -> dict[str, Any]:
        return {"secret_sha256": self.secret_sha256, "info": self.info.to_json(), "created": self.created}

    @classmethod
    def from_json(cls, obj: Any) -> SessionRecord:
        if not isinstance(obj, dict):
            raise SchemaError(f"session record must be a JSON object, got {type(obj).__name__}")
        digest, created = obj.get("secret_sha256"), obj.get("created")
        if not isinstance(digest, str) or not isinstance(created, int | float) or isinstance(created, bool):
            raise SchemaError("session record needs secret_sha256 (str) and created (number)")
        return cls(digest, SessionInfo.from_json(obj.get("info")), float(created))


@dataclass(frozen=True)
class AudioPosition:
    """A point in the client's audio: AudioChunk ``seq`` at byte ``offset``, ``frames`` sample frames in."""

    seq: int = 0
    offset: int = 0
    frames: int = 0


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's scalars: the session *before chunk* ``chunk_index``.

    Row and frame numbers: ``rows_first .. rows_end`` are the model rows ``audio.rows`` holds; client
    frame = model frame + ``frame_offset``; model row = encoder stream row + ``row_offset`` (both
    change at a LIVE resume).
    """

    chunk_index: int  # the next chunk to generate
    next_frame: int  # its first video frame (client numbering)
    rows_first: int
    rows_end: int
    audio_seq: int  # first AudioChunk not wholly seen by the encoder state: the audio log keeps seq >= it
    audio_offset: int  # bytes of AudioChunk audio_seq the encoder state has seen
    pcm_frames: int  # sample frames the encoder state has seen
    audio_total: int | None  # the audio had ended: every row left is in audio.rows, no encoder state
    frame_offset: int
    row_offset: int
    tp: int  # tensor-parallel degree of the writer: one shard per rank

    @property
    def audio(self) -> AudioPosition:
        return AudioPosition(self.audio_seq, self.audio_offset, self.pcm_frames)

    def __post_init__(self) -> None:
        if self.audio_seq < 0 or self.tp < 1:
            raise SchemaError(f"checkpoint meta needs audio_seq >= 0 and tp >= 1, got {self.audio_seq}, {self.tp}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> CheckpointMeta:
        return _from_json(cls, obj, "checkpoint meta")


SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PartDigest:
    """One stored part of a tensor's raw bytes: its sha256 (which names its Redis key) and size."""

    sha256: str
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> PartDigest:
        part = _from_json(cls, obj, "part")
        if not SHA256_HEX.fullmatch(part.sha256) or part.bytes < 0:
            raise SchemaError(f"part needs a lowercase hex sha256 and bytes >= 0, got {part.sha256!r}, {part.bytes}")
        return part


@dataclass(frozen=True)
class TensorRef:
    """One tensor of a stream: name, dtype name (``liveact.state.codec``), shape, and where its raw bytes start."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # bytes from the start of its stream

    @property
    def nbytes(self) -> int:
        numel = 1
        for n in self.shape:
            numel *= n
        return numel * codec.itemsize(self.dtype)

    @property
    def end(self) -> int:
        return self.offset + self.nbytes

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "offset": self.offset}

    @classmethod
    def from_json(cls, obj: Any) -> TensorRef:
        if not isinstance(obj, dict):
            raise SchemaError(f"tensor entry must be a JSON object, got {type(obj).__name__}")
        name, dtype, shape, offset = obj.get("name"), obj.get("dtype"), obj.get("shape"), obj.get("offset")
        if not isinstance(name, str) or not name or not isinstance(dtype, str) or dtype not in codec.DTYPES_BY_NAME:
            raise SchemaError(f"tensor entry needs a name and a known dtype, got {name!r}, {dtype!r}")
        if not isinstance(shape, list) or not all(_count(n) for n in shape):
            raise SchemaError(f"tensor {name!r}: shape must be a list of sizes >= 0, got {shape!r}")
        if not isinstance(offset, int) or not _count(offset) or offset % codec.itemsize(dtype):
            raise SchemaError(f"tensor {name!r}: offset must be a multiple of its element size, got {offset!r}")
        return cls(name, dtype, tuple(shape), offset)


@dataclass(frozen=True)
class StreamRef:
    """A run of a rank's tensors stored as one byte stream (``liveact.state.streams``: as they lie in the writer's
    buffer, padding included), cut into content-addressed parts: tensors in ascending, non-overlapping order."""

    tensors: tuple[TensorRef, ...]
    parts: tuple[PartDigest, ...]

    @property
    def nbytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {"tensors": [t.to_json() for t in self.tensors], "parts": [p.to_json() for p in self.parts]}

    @classmethod
    def from_json(cls, obj: Any) -> StreamRef:
        if not isinstance(obj, dict) or not isinstance(obj.get("tensors"), list) or not isinstance(obj.get("parts"),
                                                                                                    list):  # fmt: skip
            raise SchemaError("stream entry must be a JSON object with a tensor list and a part list")
        stream = cls(tuple(TensorRef.from_json(t) for t in obj["tensors"]),
                     tuple(PartDigest.from_json(p) for p in obj["parts"]))  # fmt: skip
        end = 0
        for t in stream.tensors:
            if t.offset < end:
                raise SchemaError(f"tensor {t.name!r} overlaps the tensor before it in its stream")
            end = t.end
        if end > stream.nbytes:
            raise SchemaError(f"a stream's tensors end at byte {end}, after its {stream.nbytes} bytes of parts")
        return stream


def _shard_lists(obj: Any) -> list[list[Any]]:
    """A manifest JSON's per-rank stream entries, unchecked (``SchemaError`` if there is no shard table)."""
    shards = obj.get("shards") if isinstance(obj, dict) else None
    if not isinstance(shards, list) or not all(isinstance(rank, list) for rank in shards):
        raise SchemaError("manifest has no shard table")
    return shards


def _count(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


@dataclass(frozen=True)
class Manifest:
    """A committed checkpoint (``liveact.state.store``): its meta and each rank's tensors and their parts.

    The store's Lua scripts read ``version`` of the JSON; the rest is read here only.
    """

    version: int
    session: str
    token: int  # fencing token of the owner that wrote it
    meta: CheckpointMeta
    shards: list[list[StreamRef]]  # per rank, its streams
    created: float  # writer's wall clock (Unix seconds)
    format: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "version": self.version, "session": self.session, "token": self.token,
            "meta": self.meta.to_json(), "shards": [[st.to_json() for st in rank] for rank in self.shards],
            "created": self.created,
        }  # fmt: skip

    @staticmethod
    def header(obj: Any) -> tuple[int, Any]:
        """(version, format) of a manifest's JSON, before the rest is checked."""
        if not isinstance(obj, dict) or isinstance(obj.get("version"), bool) or not isinstance(obj.get("version"), int):
            raise SchemaError("manifest has no integer version")
        return obj["version"], obj.get("format")

    @staticmethod
    def shard_table(obj: Any) -> list[list[StreamRef]]:
        """A manifest JSON's streams, per rank (``SchemaError`` if there is no readable table)."""
        return [[StreamRef.from_json(st) for st in rank] for rank in _shard_lists(obj)]

    def referenced(self) -> set[str]:
        """The part digests this manifest references."""
        return {p.sha256 for rank in self.shards for st in rank for p in st.parts}

    @staticmethod
    def digests(obj: Any) -> set[str]:
        """The part digests a manifest's JSON references (for garbage collection; ``SchemaError`` if unreadable).

        Reads the part lists only: garbage collection runs at every commit, on every kept version."""
        out: set[str] = set()
        for rank in _shard_lists(obj):
            for st in rank:
                parts = st.get("parts") if isinstance(st, dict) else None
                if not isinstance(parts, list):
                    raise SchemaError("a stream entry has no part list")
                out.update(PartDigest.from_json(p).sha256 for p in parts)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Manifest:
        version, fmt = cls.header(obj)
        if fmt != FORMAT_VERSION:
            raise SchemaError(f"manifest format {fmt!r} is not {FORMAT_VERSION}")
        session, token, created = obj.get("session"), obj.get("token"), obj.get("created")
        if not isinstance(session, str) or not isinstance(token, int) or not isinstance(created, int | float):
            raise SchemaError("manifest needs session (str), token (int) and created (number)")
        meta = CheckpointMeta.from_json(obj.get("meta"))
        return cls(version, session, token, meta, cls.shard_table(obj), float(created))
