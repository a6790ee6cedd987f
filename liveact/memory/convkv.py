"""``ConvKVMemory``: a session's caches, one per denoising step (Neighbor Forcing at inference).

Chunk n at step i writes the K/V of its *noisy* step-i tokens into cache i; chunk n+1 at step i
attends to them, at the same noise level. (The "clean" sampler context, an ablation, keeps one cache
that every step shares.) With audio CFG, the null-audio forwards of the CFG steps
keep caches of their own. Export/import moves the persistent part (slots 0..persistent after an
eager update) as plain named tensors, for checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from liveact.config import LiveActConfig
from liveact.memory.cache import LayerKV, UnboundedLayerKV

WeightPair = tuple[torch.Tensor | None, torch.Tensor | None]
CHUNKS_KEY = "chunks_written"


class ConvKVMemory:
    """Per step (and per CFG null step), per layer K/V caches of fixed size."""

    def __init__(
        self,
        config: LiveActConfig,
        frame_tokens: int,
        batch: int = 1,
        heads: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        unbounded: bool = False,
    ) -> None:
        m = config.model
        self.config = config
        self.frame_tokens = frame_tokens
        self.unbounded = unbounded
        heads = m.num_heads if heads is None else heads  # a tensor-parallel rank holds a share

        def make() -> list[LayerKV | UnboundedLayerKV]:
            if unbounded:
                return [UnboundedLayerKV(config.memory, frame_tokens) for _ in range(m.num_layers)]
            return [
                LayerKV(config.memory, batch, frame_tokens, heads, m.head_dim, dtype, device)
                for _ in range(m.num_layers)
            ]

        self.steps = [make() for _ in range(config.sampler.cache_steps)]
        self.null = {i: make() for i in config.sampler.cfg_steps()}

    def layers(self, step: int, null: bool = False) -> list[LayerKV | UnboundedLayerKV]:
        """Step ``step``'s caches (with "clean" sampler context every step shares cache 0)."""
        if null:
            return self.null[step]
        return self.steps[step if self.config.sampler.context == "neighbor" else 0]

    def _named(self) -> list[tuple[str, int, LayerKV | UnboundedLayerKV]]:
        """(name, layer index, cache) for every cache, in a stable order."""
        out = []
        for prefix, table in (("", dict(enumerate(self.steps))), ("null.", self.null)):
            for i, layers in table.items():
                out += [(f"{prefix}step{i}.layer{n}", n, kv) for n, kv in enumerate(layers)]
        return out

    @property
    def chunks_written(self) -> int:
        return self.steps[0][0].chunks_written

    @property
    def will_compact(self) -> bool:
        """Whether the next chunk rewrites the persistent slots (the update rule is pending)."""
        kv = self.steps[0][0]
        return isinstance(kv, LayerKV) and kv.needs_update

    def compact(self, weights: Sequence[WeightPair]) -> None:
        """Run the pending update rule everywhere (eager compression before a checkpoint)."""
        if self.unbounded:
            return
        for _, layer, kv in self._named():
            assert isinstance(kv, LayerKV)
            kv.compact(*weights[layer])

    def export(
        self, weights: Sequence[WeightPair], device: torch.device | str | None = None
    ) -> dict[str, torch.Tensor]:
        """Persistent state as plain named tensors: ``[null.]step{i}.layer{l}.{k,v[,k_scale,v_scale]}``.

        Each of ``views`` copied to ``device`` (None: the caches' own) directly: no device copy first.
        """
        return {
            name: t.to(t.device if device is None else device, copy=True) for name, t in self.views(weights).items()
        }

    def views(self, weights: Sequence[WeightPair]) -> dict[str, torch.Tensor]:
        """``export``'s names, as views of the caches (no copy: valid until a later chunk compacts them).

        The chunk counter is a fresh 1-element tensor. Compacts first, as ``export`` does.
        """
        if self.unbounded:
            raise RuntimeError("the unbounded baseline cache has no persistent form")
        self.compact(weights)
        out: dict[str, torch.Tensor] = {CHUNKS_KEY: torch.tensor([self.chunks_written])}
        for name, _, kv in self._named():
            assert isinstance(kv, LayerKV)
            for part, t in kv.persistent_views().items():
                out[f"{name}.{part}"] = t
        return out

    def view_specs(self) -> dict[str, tuple[torch.Size, torch.dtype]]:
        """``views``' names, shapes and dtypes without compacting (for buffers allocated ahead of the first view)."""
        if self.unbounded:
            raise RuntimeError("the unbounded baseline cache has no persistent form")
        out = {CHUNKS_KEY: (torch.Size([1]), torch.int64)}  # views' counter: torch.tensor([chunks_written])
        for name, _, kv in self._named():
            assert isinstance(kv, LayerKV)
            out |= {f"{name}.{part}": spec for part, spec in kv.persistent_specs().items()}
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Import what ``export`` produced; refuses missing or extra names."""
        expected = {CHUNKS_KEY}
        for name, _, kv in self._named():
            assert isinstance(kv, LayerKV)
            expected |= {f"{name}.{p}" for p in kv.persistent_names()}
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        if missing or extra:
            raise ValueError(f"memory state mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
        chunks = int(tensors[CHUNKS_KEY].item())
        for name, _, kv in self._named():
            assert isinstance(kv, LayerKV)
            kv.load_persistent({p: tensors[f"{name}.{p}"] for p in kv.persistent_names()}, chunks)

    def nbytes(self) -> int:
        return sum(kv.nbytes() for _, _, kv in self._named())

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for name, _, kv in self._named():
            for part in ("k", "v", "k_scale", "v_scale"):
                t = getattr(kv, part, None)
                if t is not None:
                    shapes[f"{name}.{part}"] = tuple(t.shape)
        return shapes
