"""``ByteLedger``: live bytes per device of everything torch allocates, op by op, without allocating.

A ``TorchDispatchMode``: every aten op the code runs passes through it. Each output's storage is
entered once in the ledger with its bytes and the device it *stands for*, and leaves when the storage
dies (a weak reference to the storage object: torch keeps one Python object per storage), so
``live`` is exactly what a caching allocator would have to hold at that moment, and ``peak`` its
maximum. On the ``meta`` device nothing is allocated, so liveact-18b at 720x1280 is accounted on
a laptop.

Two devices are told apart: ``device`` (the accelerator the meta tensors stand for) and ``host``.
A copy from the meta device to the CPU (``t.to("cpu")``, a checkpoint snapshot) cannot run on meta:
the ledger makes it a meta tensor entered as *host* bytes. Real CPU tensors (small tables built on
the CPU, a generator's state) are host bytes too.

Placement: an op that mixes device tensors with host tensors (other than 0-dim scalars, which CUDA
kernels accept) would fail on a GPU; here it raises ``PlacementError`` naming the op, the tensors and
the line of LiveAct code that ran it. Copies between the two (``_to_copy``, ``copy_``) are transfers
and allowed.
"""

from __future__ import annotations

import traceback
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

DEVICE = "device"
HOST = "host"
_TRANSFERS = {
    torch.ops.aten._to_copy.default,
    torch.ops.aten.copy_.default,
    torch.ops.aten._copy_from.default,
    torch.ops.aten._copy_from_and_resize.default,
}
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the checkout: frames under it are LiveAct's code
_TORCH_ROOT = Path(torch.__file__).resolve().parent


class PlacementError(RuntimeError):
    """A tensor on the wrong device met the model's tensors in one op (a GPU would refuse it)."""


@dataclass
class PhasePeak:
    """The highest live bytes per device while a phase ran, and what was live when it began."""

    name: str
    start: dict[str, int]
    peak: dict[str, int] = field(default_factory=dict)


class ByteLedger(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live: dict[str, int] = {DEVICE: 0, HOST: 0}
        self.peak: dict[str, int] = {DEVICE: 0, HOST: 0}
        self.phases: list[PhasePeak] = []
        self._open: list[PhasePeak] = []
        self._where: dict[int, str] = {}  # storage id (its C pointer) -> DEVICE or HOST
        self.ops = 0  # aten ops dispatched
        self._memo: dict[tuple[Any, ...], Any] = {}  # (op, input metadata) -> output metadata, see _run

    # -- entering storages ----------------------------------------------------------------------
    def track(self, tensors: Iterator[torch.Tensor] | list[torch.Tensor], where: str | None = None) -> int:
        """Enter tensors made before the ledger ran (a model's parameters); returns the bytes new to it."""
        before = sum(self.live.values())
        for t in tensors:
            self._enter(t, where)
        return sum(self.live.values()) - before

    def track_module(self, module: torch.nn.Module) -> int:
        return self.track([*module.parameters(), *module.buffers()])

    def _label(self, t: torch.Tensor) -> str:
        key = t.untyped_storage()._cdata
        if key in self._where:
            return self._where[key]
        return DEVICE if t.device.type == "meta" else HOST

    def _enter(self, t: torch.Tensor, where: str | None = None) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self._where:
            return
        label = where or (DEVICE if t.device.type == "meta" else HOST)
        nbytes = storage.nbytes()
        self._where[key] = label
        self.live[label] += nbytes
        if self.live[label] > self.peak[label]:
            self.peak[label] = self.live[label]
        for phase in self._open:
            phase.peak[label] = max(phase.peak.get(label, 0), self.live[label])
        weakref.finalize(storage, self._leave, key, label, nbytes)

    def _leave(self, key: int, label: str, nbytes: int) -> None:
        self._where.pop(key, None)
        self.live[label] -= nbytes

    # -- phases ---------------------------------------------------------------------------------
    @contextmanager
    def phase(self, name: str) -> Iterator[PhasePeak]:
        """Record the peak per device while the body runs (phases nest)."""
        p = PhasePeak(name, dict(self.live), dict(self.live))
        self._open.append(p)
        try:
            yield p
        finally:
            self._open.remove(p)
            self.phases.append(p)

    # -- the dispatch hook ----------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        self.ops += 1
        flat = _leaves((args, kwargs))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        for t in tensors:  # inputs made before the ledger ran (and not tracked) count from first use
            self._enter(t)
        to_host = func is torch.ops.aten._to_copy.default and _asks_host(kwargs) and tensors[0].device.type == "meta"
        if to_host:  # device -> host copy: runs on meta, counted as host bytes
            kwargs = {**kwargs, "device": torch.device("meta")}
        elif func not in _TRANSFERS:
            self._check_placement(func, tensors)
        out = self._run(func, args, kwargs, flat, tensors)
        outs = [t for t in _leaves(out) if isinstance(t, torch.Tensor)]
        label = HOST if to_host else (self._label(tensors[0]) if tensors and func not in _TRANSFERS else None)
        for t in outs:
            self._enter(t, label if label is not None else (DEVICE if t.device.type == "meta" else HOST))
        return out

    def _run(
        self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], flat: list[Any], tensors: list[torch.Tensor]
    ) -> Any:
        """Run the op; an allocating op on meta tensors is answered from a memo of its output metadata.

        Meta kernels compute only shapes, many of them in Python (torch._refs): a 40-layer forward repeats
        the same few hundred (op, input metadata) pairs, so each is computed once. Only ops that return
        fresh tensors (no aliasing, no mutation, all inputs on meta) are memoised: their outputs depend on
        nothing but the inputs' metadata and the other arguments.
        """
        key = _memo_key(func, kwargs, flat, tensors)
        if key is None:
            return func(*args, **kwargs)
        spec = self._memo.get(key)
        if spec is None:
            out = func(*args, **kwargs)
            single = isinstance(out, torch.Tensor)
            outs = [out] if single else list(out) if isinstance(out, (tuple, list)) else None
            inputs = {t.untyped_storage()._cdata for t in tensors}
            fresh = outs is not None and all(
                isinstance(o, torch.Tensor) and o.device.type == "meta" and o.untyped_storage()._cdata not in inputs
                for o in outs
            )  # some ops alias an input without saying so in their schema (aten._unsafe_view)
            if not fresh or outs is None:
                self._memo[key] = False
                return out
            self._memo[key] = (single, [_Made.of(o) for o in outs])
            return out
        if spec is False:
            return func(*args, **kwargs)
        single, metas = spec
        made = [m.make() for m in metas]
        return made[0] if single else tuple(made)

    def _check_placement(self, func: Any, tensors: list[torch.Tensor]) -> None:
        labels = {self._label(t) for t in tensors if t.dim() > 0}
        if len(labels) > 1:
            shapes = ", ".join(f"{self._label(t)} {tuple(t.shape)} {t.dtype}" for t in tensors if t.dim() > 0)
            raise PlacementError(f"{func} mixes device and host tensors ({shapes}) at {_caller()}")


@dataclass(frozen=True)
class _Made:
    """An op output's metadata, its storage's size and its place in it included."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    dtype: torch.dtype
    storage_elements: int

    @staticmethod
    def of(t: torch.Tensor) -> _Made:
        n = t.untyped_storage().nbytes() // t.element_size()
        return _Made(tuple(t.shape), t.stride(), int(t.storage_offset()), t.dtype, n)

    def make(self) -> torch.Tensor:
        base = torch.empty(self.storage_elements, dtype=self.dtype, device="meta")
        if base.shape == self.shape and self.offset == 0 and base.stride() == self.stride:
            return base
        return base.as_strided(self.shape, self.stride, self.offset)


def _memo_key(
    func: Any, kwargs: dict[str, Any], flat: list[Any], tensors: list[torch.Tensor]
) -> tuple[Any, ...] | None:
    schema = func._schema
    if schema.is_mutable or any(r.alias_info is not None for r in schema.returns) or not tensors:
        return None
    if any(t.device.type != "meta" for t in tensors):
        return None
    parts: list[Any] = [func]
    for a in flat:
        if isinstance(a, torch.Tensor):
            parts.append((tuple(a.shape), a.stride(), a.dtype, a.storage_offset()))
        elif a is None or isinstance(
            a, (bool, int, float, str, torch.dtype, torch.device, torch.layout, torch.memory_format)
        ):
            parts.append((type(a), a))
        else:
            return None
    parts.append(tuple(kwargs))
    return tuple(parts)


def _leaves(obj: Any) -> list[Any]:
    """The leaves of an op's arguments or results: nested tuples, lists and dicts of tensors and scalars.

    (``torch.utils._pytree.tree_flatten`` does the same for any tree, several times slower: this runs per op.)
    """
    if isinstance(obj, (tuple, list)):
        return [leaf for item in obj for leaf in _leaves(item)]
    if isinstance(obj, dict):
        return [leaf for item in obj.values() for leaf in _leaves(item)]
    return [obj]


def _asks_host(kwargs: dict[str, Any]) -> bool:
    device = kwargs.get("device")
    return device is not None and torch.device(device).type == "cpu"


def _caller() -> str:
    """The innermost stack frame in the code being planned (not torch's, not the planner's own)."""
    planner = Path(__file__).resolve().parent
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(planner) or path.is_relative_to(_TORCH_ROOT) or not path.is_relative_to(_PACKAGE_ROOT):
            continue
        return f"{path.relative_to(_PACKAGE_ROOT)}:{frame.lineno} ({frame.line})"
    return "unknown code"
