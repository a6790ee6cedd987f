"""Weight directories: where a model's weights are, their files, and the strict check every loader makes.

* Where: the built-in weights shipped in ``liveact/weights/<preset>/{dit,vae}`` (``builtin_dir``,
  ``builtin_vae_dir``), or a directory the user names (``weights_root``: ``--model DIR``).
* Files: the diffusers layout, ``diffusion_pytorch_model.safetensors`` or shards named by
  ``diffusion_pytorch_model.safetensors.index.json``'s ``weight_map`` (``shard_files``), with a
  ``config.json``.
* Check: every key and shape before anything is loaded (``check_state_dict``); a mismatch raises
  ``CheckpointError`` naming the first few. The DiT, the VAE and the conditioning encoders load
  through these, so there is never a partial load.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch

from liveact.config import get_preset, preset_names

__all__ = [
    "AUDIO_SUBDIR",
    "BUILTIN_WEIGHTS",
    "CONFIG_FILE",
    "DIT_SUBDIR",
    "INDEX_FILE",
    "RELEASE_AUDIO_SUBDIR",
    "SHOW_MISMATCHES",
    "SINGLE_FILE",
    "VAE_SUBDIR",
    "CheckpointError",
    "audio_dir",
    "builtin_dir",
    "builtin_vae_dir",
    "check_state_dict",
    "config_kind",
    "dit_dir",
    "key_problems",
    "load_pth",
    "shard_files",
    "weights_root",
]

SHOW_MISMATCHES = 5  # mismatches named in an error
SHOW_REASON_CHARS = 120  # characters of torch's reason for refusing a file
SINGLE_FILE = "diffusion_pytorch_model.safetensors"
INDEX_FILE = "diffusion_pytorch_model.safetensors.index.json"
CONFIG_FILE = "config.json"
BUILTIN_WEIGHTS = Path(__file__).resolve().parent / "weights"  # liveact/weights
DIT_SUBDIR, VAE_SUBDIR, AUDIO_SUBDIR = "dit", "vae", "wav2vec2"
RELEASE_AUDIO_SUBDIR = "chinese-wav2vec2-base"  # the audio model's published name, beside or inside a release


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message names the first mismatches."""


def key_problems(have: Iterable[str], want: Iterable[str], ignore: Callable[[str], bool] | None = None) -> list[str]:
    """Human-readable differences between two key sets (missing, then unexpected), first few named.

    ``ignore`` marks present-but-unwanted keys that are expected to be there (e.g. an unused tower).
    """
    have_set, want_set = set(have), set(want)
    missing = sorted(want_set - have_set)
    unexpected = sorted(k for k in have_set - want_set if ignore is None or not ignore(k))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys, first: {missing[:SHOW_MISMATCHES]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:SHOW_MISMATCHES]}")
    return problems


def check_state_dict(model: torch.nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Raise CheckpointError unless ``shapes`` has exactly the model's keys with the model's shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    misshaped = sorted(k for k in set(expected) & set(shapes) if tuple(shapes[k]) != expected[k])
    problems = key_problems(shapes, expected)
    if misshaped:
        shown = [
            f"{k}: checkpoint {tuple(shapes[k])}, model expects {expected[k]}" for k in misshaped[:SHOW_MISMATCHES]
        ]
        problems.append(f"{len(misshaped)} mis-shaped tensors, first: {shown}")
    if problems:
        raise CheckpointError("checkpoint does not match the model: " + "; ".join(problems))


def shard_files(directory: str | Path) -> dict[str, Path]:
    """key -> shard path for a checkpoint directory; raises CheckpointError if a shard is missing."""
    d = Path(directory)
    index = d / INDEX_FILE
    if index.exists():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        files = {name: d / name for name in sorted(set(weight_map.values()))}
        absent = [n for n, p in files.items() if not p.exists()]
        if absent:
            raise CheckpointError(
                f"{d}: {len(absent)} shard(s) named by {INDEX_FILE} are missing: {absent[:SHOW_MISMATCHES]}"
            )
        return {k: files[v] for k, v in weight_map.items()}
    single = d / SINGLE_FILE
    if not single.exists():
        raise CheckpointError(f"{d}: neither {INDEX_FILE} nor {SINGLE_FILE} found")
    return dict.fromkeys(SafetensorsFile(single).keys(), single)


HEADER_LENGTH_BYTES = 8  # a safetensors file: u64 little-endian header length, JSON header, then the data
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip


class SafetensorsFile:
    """Reads tensors (or row ranges of them) from a safetensors file with plain reads, never a memory map.

    A tensor read here owns its memory, and nothing of the file stays resident in this process after the
    read: loading at real size holds the weights loaded so far plus the tensor being read, whatever the
    shard size (a memory-mapped file keeps every page it touched resident while any tensor from it lives).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(HEADER_LENGTH_BYTES))
            header = json.loads(f.read(length))
        header.pop("__metadata__", None)
        self._data_start = HEADER_LENGTH_BYTES + length
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int]] = {}  # key -> dtype, shape, offset
        for key, entry in header.items():
            if entry["dtype"] not in SAFETENSORS_DTYPES:
                raise CheckpointError(f"{self.path.name}: tensor {key} has unsupported dtype {entry['dtype']}")
            self.entries[key] = (SAFETENSORS_DTYPES[entry["dtype"]], tuple(entry["shape"]), entry["data_offsets"][0])

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.entries[key][1]

    def read(self, key: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Tensor ``key`` (or its rows [start, stop) along dim 0), read into fresh host memory."""
        dtype, shape, offset = self.entries[key]
        start, stop = rows if rows is not None else (0, shape[0] if shape else 1)
        row_bytes = math.prod(shape[1:]) * dtype.itemsize
        out = torch.empty((stop - start, *shape[1:]) if shape else (), dtype=dtype)
        if out.numel() == 0:
            return out
        buffer = memoryview(out.view(-1).view(torch.uint8).numpy())
        with open(self.path, "rb") as f:
            f.seek(self._data_start + offset + start * row_bytes)
            if f.readinto(buffer) != len(buffer):
                raise CheckpointError(f"{self.path.name}: tensor {key} is truncated")
        return out


def load_pth(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``torch.save``d state dict, memory-mapped; only tensors and plain containers are accepted."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint file not found: {p}")
    try:
        state = torch.load(p, weights_only=True, map_location="cpu", mmap=True)
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:  # not a torch.save file
        reason = str(exc).strip().splitlines()[0][:SHOW_REASON_CHARS] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p}: not a weights-only torch checkpoint (.pth): {reason}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: expected a flat state dict of tensors, got {type(state).__name__}")
    return dict(state)


def audio_dir(path: str | Path) -> Path:
    """The wav2vec2 folder ``path`` names: its ``wav2vec2/`` or ``chinese-wav2vec2-base/`` (the published name),
    else itself when its ``config.json`` is a wav2vec2 model's; ``CheckpointError`` naming all three otherwise.
    (A release's own ``config.json`` is the DiT's, so the folders inside are looked at first.)"""
    p = Path(path)
    for name in (AUDIO_SUBDIR, RELEASE_AUDIO_SUBDIR):
        if (p / name).is_dir():
            return p / name
    if config_kind(p / CONFIG_FILE, "model_type") == "wav2vec2":
        return p
    raise CheckpointError(
        f"{p}: no wav2vec2 model: expected {CONFIG_FILE} and weights there, or a {AUDIO_SUBDIR}/ or "
        f"{RELEASE_AUDIO_SUBDIR}/ folder holding them"
    )


def config_kind(path: Path, field: str) -> str | None:
    """``field`` of the JSON file ``path`` (a model's ``config.json``), or None when absent or unreadable."""
    try:
        value = json.loads(path.read_text()).get(field)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def dit_dir(root: Path) -> Path:
    """The DiT checkpoint inside a weights root: its ``dit/`` folder, or the root itself."""
    return root / DIT_SUBDIR if (root / DIT_SUBDIR).is_dir() else root


def builtin_dir(preset: str) -> Path | None:
    d = BUILTIN_WEIGHTS / preset
    return d if (d / DIT_SUBDIR).is_dir() and (d / VAE_SUBDIR).is_dir() else None


def builtin_vae_dir(vae_preset: str) -> Path | None:
    """The built-in VAE directory for a VAE preset: that of a model preset using it that has built-in weights."""
    for name in preset_names():
        root = builtin_dir(name)
        if root is not None and get_preset(name).vae == vae_preset:
            return root / VAE_SUBDIR
    return None


def weights_root(preset: str, model_dir: str | Path | None) -> Path | None:
    """Where ``preset``'s weights come from: ``model_dir``, else the built-in ones (None: fresh weights)."""
    root = Path(model_dir) if model_dir is not None else builtin_dir(preset)
    if root is None and preset != "tiny":
        raise FileNotFoundError(
            f"preset {preset!r} has no built-in weights: pass --model DIR (see liveact animate --help)"
        )
    return root
