"""Noise sources for the sampler.

``SeededNoise`` draws from the session's own ``torch.Generator`` (seeded once per session, state
exportable and importable, so a run is reproducible and resumable). ``RecordedNoise`` replays
tensors recorded elsewhere (the golden fixtures), so a rollout can be compared draw for draw.
Per chunk the sampler asks for one initial draw and then one fresh draw per step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Protocol

import torch


class NoiseSource(Protocol):
    def draw(self, shape: tuple[int, ...]) -> torch.Tensor: ...


class SeededNoise:
    def __init__(self, seed: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def get_state(self) -> torch.Tensor:
        """The generator state as a uint8 tensor (safe to serialise with safetensors)."""
        return self.generator.get_state().clone()

    def set_state(self, state: torch.Tensor) -> None:
        # a storage of its own: Generator.set_state reads the storage from its start, ignoring a view's offset (a
        # checkpoint's tensors are views of their stream's buffer)
        self.generator.set_state(state.to(torch.uint8).cpu().clone())


class RecordedNoise:
    """Replays draws in order; refuses a draw of the wrong shape or past the end."""

    def __init__(self, draws: Iterable[torch.Tensor]):
        self._draws = deque(draws)

    def draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        if not self._draws:
            raise RuntimeError("recorded noise exhausted")
        t = self._draws.popleft()
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"recorded draw has shape {tuple(t.shape)}, sampler asked for {shape}")
        return t

    def remaining(self) -> int:
        return len(self._draws)
