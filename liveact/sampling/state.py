"""A ``StreamingSampler``'s complete state as named tensors, and a sampler rebuilt from them.

What a resumed session needs from the DiT side (``liveact-method.md`` section 9), all plain tensors
so they serialise with safetensors:

* ``memory.*``: the ConvKV persistent slots of every step and layer (``ConvKVMemory.export``, after
  an eager compression: 6 of 14 slots) and ``memory.chunks_written`` (the chunk index k);
* ``noise.state``: the session generator's state (uint8), so the next draw is the one an
  uninterrupted run would take;
* ``cond.y``, ``cond.context`` and, with audio CFG, ``cond.null_audio``: the conditioning computed
  once at session start. A resumed session uses these instead of re-running the VAE, CLIP and umT5
  encoders, whose outputs may differ in the last bits across processes.

``export_sampler`` copies (the caches it reads are overwritten by the next chunk), so the caller
can serialise in the background while the sampler goes on. ``restore_sampler`` refuses tensors that
do not fit the engine's model: missing or unknown names, other shapes.
"""

from __future__ import annotations

import torch

from liveact.model.dit import LiveActDiT
from liveact.sampling.denoise import Conditioning
from liveact.sampling.noise import SeededNoise
from liveact.sampling.stream import StreamingSampler
from liveact.state.schema import COND_CONTEXT, COND_NULL_AUDIO, COND_Y, MEMORY, NOISE_STATE

__all__ = [
    "SamplerStateError",
    "export_sampler",
    "export_start",
    "restore_sampler",
    "sampler_specs",
    "sampler_views",
    "start_sampler",
]


class SamplerStateError(ValueError):
    """Sampler state that does not fit this model (another preset, size or a damaged checkpoint)."""


def export_start(sampler: StreamingSampler) -> dict[str, torch.Tensor]:
    """The sampler's conditioning and noise state, without its memory, as detached CPU copies.

    With ``start_sampler`` another rank starts the same session: before the first chunk the memory
    is empty, so sending it (the size of the whole cache) is skipped.
    """
    return {name: t.detach().to("cpu", copy=True).contiguous() for name, t in _start_views(sampler).items()}


def _start_views(sampler: StreamingSampler) -> dict[str, torch.Tensor]:
    """The noise state (a fresh host tensor) and the conditioning (as the sampler holds it)."""
    if not isinstance(sampler.noise, SeededNoise):
        raise SamplerStateError(f"only a SeededNoise sampler can be checkpointed, not {type(sampler.noise).__name__}")
    out = {NOISE_STATE: sampler.noise.get_state(), COND_Y: sampler.cond.y, COND_CONTEXT: sampler.cond.context}
    if sampler.cond.null_audio is not None:
        out[COND_NULL_AUDIO] = sampler.cond.null_audio
    return out


def export_sampler(sampler: StreamingSampler) -> dict[str, torch.Tensor]:
    """The sampler's state after its last chunk, as detached CPU copies."""
    out = export_start(sampler)
    for name, t in sampler.export_memory("cpu").items():  # fresh host copies already: no device copy first
        out[MEMORY + name] = t.contiguous()
    return out


def sampler_views(sampler: StreamingSampler) -> dict[str, torch.Tensor]:
    """``export_sampler``'s names, as views where the tensors live (no copy; ``liveact.sampling.capture``
    copies them into preallocated host buffers). The memory views change when a later chunk compacts."""
    return _start_views(sampler) | {MEMORY + name: t for name, t in sampler.memory_views().items()}


def sampler_specs(sampler: StreamingSampler) -> tuple[dict[str, tuple[torch.Size, torch.dtype]], torch.device]:
    """``sampler_views``' names, shapes and dtypes, and the device they live on, at any time (nothing compacts):
    for capture buffers allocated ahead of the first checkpoint."""
    start = _start_views(sampler)
    specs = {n: (t.shape, t.dtype) for n, t in start.items()}
    specs |= {MEMORY + name: spec for name, spec in sampler.memory_specs().items()}
    return specs, start[COND_Y].device


def start_sampler(model: LiveActDiT, tensors: dict[str, torch.Tensor], device: torch.device) -> StreamingSampler:
    """A sampler before its first chunk, from ``export_start``'s tensors (memory tensors are refused)."""
    if memory := sorted(n for n in tensors if n.startswith(MEMORY)):
        raise SamplerStateError(f"a starting sampler has no memory yet, got {memory[:3]}: use restore_sampler")
    return _sampler(model, tensors, device)


def restore_sampler(model: LiveActDiT, tensors: dict[str, torch.Tensor], device: torch.device) -> StreamingSampler:
    """A sampler that continues exactly where the exported one stopped."""
    sampler = _sampler(model, tensors, device)
    try:
        memory = {name[len(MEMORY) :]: t.to(device) for name, t in tensors.items() if name.startswith(MEMORY)}
        sampler.import_memory(memory)
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, SamplerStateError):
            raise
        raise SamplerStateError(f"sampler state does not fit this model: {exc}") from exc
    return sampler


def _sampler(model: LiveActDiT, tensors: dict[str, torch.Tensor], device: torch.device) -> StreamingSampler:
    """Conditioning and noise from ``tensors``; the memory is left empty."""
    for name in (NOISE_STATE, COND_Y, COND_CONTEXT):
        if name not in tensors:
            raise SamplerStateError(f"sampler state has no {name!r}")
    known = {NOISE_STATE, COND_Y, COND_CONTEXT, COND_NULL_AUDIO}
    if extra := sorted(n for n in tensors if n not in known and not n.startswith(MEMORY)):
        raise SamplerStateError(f"sampler state has unknown tensors {extra[:5]}")
    null_audio = tensors.get(COND_NULL_AUDIO)
    cond = Conditioning(
        y=tensors[COND_Y].to(device),
        context=tensors[COND_CONTEXT].to(device),
        null_audio=None if null_audio is None else null_audio.to(device),
    )
    if cond.y.dtype != model.dtype or cond.context.dtype != model.dtype:
        raise SamplerStateError(
            f"conditioning is {cond.y.dtype}/{cond.context.dtype} but the model runs in {model.dtype}: "
            "resume on a generator with the same dtype"
        )
    noise = SeededNoise(0, device)
    noise.set_state(tensors[NOISE_STATE])
    try:
        return StreamingSampler(model, cond, noise)
    except (ValueError, RuntimeError) as exc:
        raise SamplerStateError(f"sampler state does not fit this model: {exc}") from exc
