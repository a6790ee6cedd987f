"""Streaming state as plain named tensors: build it, and read it back strictly.

Shared by every streaming class that exports its state for a checkpoint (the WSOLA tempo,
``StreamingAudioFeatures``, the audio encoder's resampler and streams, the decoder stream):
integers travel as 0-d int64 tensors, floats as 0-d float64, PCM as 1-D float32, a nested object's
entries under its prefix, so a state is plain safetensors content and never needs pickle.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["StateReader", "array_tensor", "check_state", "float_tensor", "int_tensor", "with_prefix"]

_PREFIX_SEP = "."  # "features.tempo.buf": a nested state's names carry its owner's prefix


def int_tensor(value: int) -> torch.Tensor:
    """An integer as a 0-d int64 tensor."""
    return torch.tensor(int(value), dtype=torch.int64)


def float_tensor(value: float) -> torch.Tensor:
    """A float as a 0-d float64 tensor (exact for a Python float)."""
    return torch.tensor(float(value), dtype=torch.float64)


def array_tensor(x: np.ndarray) -> torch.Tensor:
    """PCM (S,) float32 -> a tensor owning a copy (the stream keeps changing its buffers)."""
    return torch.from_numpy(np.array(x, dtype=np.float32, copy=True).reshape(-1))


def with_prefix(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}{_PREFIX_SEP}{name}": t for name, t in tensors.items()}


class StateReader:
    """Reads a ``state_dict`` strictly: each entry's dtype and shape are checked, and ``close`` refuses
    entries nobody read, so a state from another class, version or configuration never half-loads.
    Errors are ``ValueError`` naming ``what`` (e.g. "tempo state") and the entry."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], what: str) -> None:
        self.what = what
        self._tensors = dict(tensors)
        self._read: set[str] = set()

    def tensor(self, name: str, dtype: torch.dtype, ndim: int) -> torch.Tensor:
        if name not in self._tensors:
            raise ValueError(f"{self.what} is missing {name!r}")
        t = self._tensors[name]
        if not isinstance(t, torch.Tensor) or t.dtype != dtype or t.dim() != ndim:
            got = f"{t.dtype} with shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{self.what}: {name!r} must be a {ndim}-d {dtype} tensor, got {got}")
        self._read.add(name)
        return t

    def read_int(self, name: str) -> int:
        return int(self.tensor(name, torch.int64, 0).item())

    def read_float(self, name: str) -> float:
        return float(self.tensor(name, torch.float64, 0).item())

    def read_array(self, name: str) -> np.ndarray:
        """A 1-D float32 buffer, as a writable array of its own."""
        return self.tensor(name, torch.float32, 1).detach().cpu().numpy().copy()

    def has(self, prefix: str) -> bool:
        return any(n.startswith(prefix + _PREFIX_SEP) for n in self._tensors)

    def sub(self, prefix: str) -> dict[str, torch.Tensor]:
        """The entries under ``prefix.``, unprefixed, for a nested object's ``load_state_dict`` to check."""
        head = prefix + _PREFIX_SEP
        names = [n for n in self._tensors if n.startswith(head)]
        self._read.update(names)
        return {n[len(head) :]: self._tensors[n] for n in names}

    def same(self, name: str, current: float | int, unit: str = "") -> None:
        """The saved setting ``name`` must equal this object's; else say which stream differs how."""
        saved = self.read_float(name) if isinstance(current, float) else self.read_int(name)
        if saved != current:
            raise ValueError(
                f"{self.what} was saved with {name} = {saved}{unit}, but this stream has {current}{unit}: "
                "load it into a stream configured like the one it came from"
            )

    def close(self) -> None:
        if extra := sorted(set(self._tensors) - self._read):
            raise ValueError(f"{self.what} has unexpected entries {extra}: it is not a state this version wrote")


def check_state(ok: bool, what: str, detail: str) -> None:
    """An inconsistent saved state (a damaged or hand-made one) is refused before it is used."""
    if not ok:
        raise ValueError(f"{what} is inconsistent ({detail}): it was not written by state_dict()")
