"""Where a checkpoint's DiT state is copied: once, into host buffers kept for the session.

The only checkpoint work in the DiT thread is ``StateCapture.capture``: the sampler's state
(``sampler_views``: its ConvKV persistent slots after the eager compression, RNG state,
conditioning) copied into host buffers kept for the session (one block per ``schema.layout_group``,
which the store writes as one stream: ``liveact.state.streams``). ``StateCapture.for_sampler``
allocates them when the session starts, in a background thread (pinning and faulting in 8 GiB per
rank takes seconds: not the DiT thread's); a capture made without it allocates them at the first
checkpoint. From the second capture on, the tensors no chunk after chunk 0 changes (the sink slots,
the conditioning) are not copied again. On CUDA the buffers are pinned and filled on a side stream that first waits for
the chunk's work; an event marks the end of the copy. The DiT thread goes on at once: the next chunk
writes only the chunk slots, and the chunk after it, which rewrites the persistent slots, waits for
the event on the device (``StreamingSampler.read_until``). On the CPU the same code copies plainly.

The buffers are read (hashed, sent to Redis) in the background after ``Captured.wait``; the
caller must not capture again before that has finished (one checkpoint in flight per session).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from liveact.sampling.state import sampler_specs, sampler_views
from liveact.sampling.stream import StreamingSampler
from liveact.state.schema import by_layout_group, fixed_after_first_chunk
from liveact.state.streams import layout

__all__ = ["Captured", "StateCapture"]


@dataclass(frozen=True)
class Captured:
    """One capture: the buffers by ``export_sampler`` name, the end of the copy, and the DiT thread's stall."""

    tensors: dict[str, torch.Tensor]  # the session's host buffers: valid until the next capture
    done: torch.cuda.Event | None  # CUDA: recorded after the last copy; None when the copy was synchronous
    stall_s: float  # seconds the capture held the DiT thread (views + buffer setup + enqueueing the copies)

    def wait(self) -> None:
        """Block until the copy has landed in the buffers (a background thread calls it before reading them)."""
        if self.done is not None:
            self.done.synchronize()


class StateCapture:
    """One session's preallocated host buffers (on one rank); see the module docstring."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}
        self._stream: torch.cuda.Stream | None = None
        self._fixed: frozenset[str] = frozenset()  # names the buffers hold as no later chunk changes them
        self._preparing: threading.Thread | None = None

    @classmethod
    def for_sampler(cls, sampler: StreamingSampler) -> StateCapture:
        """A capture whose buffers are allocated now, in the background (``prepare``), for ``sampler``'s state."""
        capture = cls()
        specs, device = sampler_specs(sampler)
        capture.prepare(specs, pin=device.type == "cuda")
        return capture

    def prepare(self, specs: Mapping[str, tuple[torch.Size, torch.dtype]], pin: bool) -> None:
        """Allocate (pinned if ``pin``) and touch the buffers for tensors of these names, shapes and dtypes in a
        background thread, so that the session's first capture only copies (``capture_views`` waits for it)."""
        self._preparing = threading.Thread(target=self._prepare, args=(dict(specs), pin), daemon=True,
                                           name="liveact-capture-buffers")  # fmt: skip
        self._preparing.start()

    def _prepare(self, specs: dict[str, tuple[torch.Size, torch.dtype]], pin: bool) -> None:
        shaped = {n: torch.empty(shape, dtype=dtype, device="meta") for n, (shape, dtype) in specs.items()}
        self.buffers = _allocate(shaped, pin, touch=True)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.buffers.values())

    @torch.no_grad()
    def capture(self, sampler: StreamingSampler) -> Captured:
        """The sampler's state (``sampler_views``) into the buffers; the stall counts the views' compaction too."""
        start = time.perf_counter()
        views = sampler_views(sampler)
        captured = self.capture_views(views, skip=self._fixed)
        if captured.done is not None:
            sampler.read_until(captured.done)
        # from chunk 0 on, the sink slots and the conditioning stay as they are: later captures keep these copies
        after_chunk0 = sampler.memory.chunks_written >= 1
        self._fixed = frozenset(n for n in views if fixed_after_first_chunk(n)) if after_chunk0 else frozenset()
        return Captured(captured.tensors, captured.done, time.perf_counter() - start)

    @torch.no_grad()
    def capture_views(self, views: dict[str, torch.Tensor], skip: frozenset[str] = frozenset()) -> Captured:
        """Copy ``views`` (all on one device) into the buffers: pinned and on a side stream on CUDA, plainly on CPU.

        Names in ``skip`` keep what the buffers hold (the caller knows they did not change), unless the buffers
        had to be allocated anew."""
        start = time.perf_counter()
        devices = {v.device for v in views.values() if v.device.type != "cpu"}
        device = next(iter(devices)) if devices else torch.device("cpu")
        cuda = device.type == "cuda"
        if self._fit(views, pin=cuda):
            skip = frozenset()
        views = {n: v for n, v in views.items() if n not in skip}
        done: torch.cuda.Event | None = None
        if cuda:
            main = torch.cuda.current_stream(device)
            side = self._stream = self._stream or torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
            side.wait_stream(main)  # the chunk (and the compaction) that wrote the caches comes first
            with torch.cuda.stream(side):
                for name, view in views.items():
                    self.buffers[name].copy_(view, non_blocking=True)
            done = torch.cuda.Event()  # type: ignore[no-untyped-call]
            done.record(side)
        else:
            for name, view in views.items():
                self.buffers[name].copy_(view)
        return Captured(self.buffers, done, time.perf_counter() - start)

    def _fit(self, views: dict[str, torch.Tensor], pin: bool) -> bool:
        """(Re)allocate the buffers when the names, shapes or dtypes differ from the last capture's; whether it did
        (buffers ``prepare`` allocated count as the last capture's, so the first capture keeps nothing)."""
        fresh = self._preparing is not None  # prepared buffers hold nothing yet: every tensor is copied
        if self._preparing is not None:
            self._preparing.join()  # at once, unless the session's first chunk was faster than the allocation
            self._preparing = None
        same = views.keys() == self.buffers.keys() and all(
            self.buffers[n].shape == v.shape and self.buffers[n].dtype == v.dtype for n, v in views.items()
        )
        if not same:
            self.buffers = _allocate(views, pin)
        return fresh or not same


def _allocate(views: Mapping[str, torch.Tensor], pin: bool, touch: bool = False) -> dict[str, torch.Tensor]:
    """Host buffers shaped like ``views``: one block per ``layout_group`` (pinned if ``pin``), each tensor a view at
    its ``streams.layout`` offset, so the store writes a group as one stream of few parts (the padding zeroed, so
    that an unchanged group keeps its bytes, and its parts). ``touch``: zero the whole blocks (faults every page
    in)."""
    out = {}
    for names in by_layout_group(views).values():
        offsets, total = layout([views[n].nbytes for n in names])
        block = torch.empty(total, dtype=torch.uint8, pin_memory=pin)
        if touch:
            block.zero_()  # every page faulted in now (in the background), not by the first copy
        end = 0
        for name, at in zip(names, offsets, strict=True):
            v = views[name]
            block[end:at].zero_()  # the padding: the same bytes in every version
            out[name] = block[at : at + v.nbytes].view(v.dtype).view(v.shape)
            end = at + v.nbytes
    return out
