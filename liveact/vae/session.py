"""``DecodeSession``: one video stream's VAE decode, a chunk at a time, in one of two modes.

* ``"stream"``: ``StreamingDecoder.decode`` against the VAE's causal cache (``DecoderState``), kept
  across chunks; the frames equal one decode of the whole latent sequence, bit for bit. The cache
  grows with width x height (tiny: ~560 bytes per output pixel; wan2.1: ~9.5 KB per pixel, fp32).
* ``"context"`` (``DEFAULT_DECODE_MODE``, the public implementation's approximation):
  ``StreamingDecoder.decode_with_context`` decodes each chunk from a fresh cache together with the
  previous chunk's last ``VaeConfig.decode_context_latents`` (3) clean latents, whose frames are
  dropped; the state is only those latents, ``16 x 3 x H/8 x W/8`` elements (``context_state_nbytes``).

Both decode 1 + 4(F-1) frames from a stream's first chunk and 4F from each later one. The state
travels as named tensors (``state_dict`` / ``load_state_dict``): ``vae.*`` (the cache) in stream
mode, ``context`` (absent before the first chunk; bfloat16 when that holds it exactly) in context
mode. ``load_state_dict`` checks what ``DecoderState.load`` does not (slot count, dtypes, shapes,
finiteness) and raises ``ValueError`` saying what is wrong. ``AnimationSession`` (one process) and
the decoder service (``services/decoder``) both decode through this class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

from liveact.state.tensors import StateReader, with_prefix
from liveact.vae.config import VaeConfig
from liveact.vae.streaming import FIRST_KEY, SLOTS_KEY, DecoderState, StreamingDecoder

__all__ = [
    "CONTEXT_KEY",
    "DECODE_MODES",
    "DEFAULT_DECODE_MODE",
    "DecodeMode",
    "DecodeSession",
    "context_state_nbytes",
]

DecodeMode = Literal["stream", "context"]
DECODE_MODES: tuple[DecodeMode, ...] = ("stream", "context")
DEFAULT_DECODE_MODE: DecodeMode = "context"  # what a session decodes with unless asked otherwise

CACHE_PREFIX = "vae"  # stream mode's state: the causal cache's entries under "vae."
CONTEXT_KEY = "context"  # context mode's state: the last clean latents, (1, Cz, Tc, h, w)
_CONTEXT_SNAPSHOT_DTYPE = torch.bfloat16  # a context's stored dtype when it holds the values exactly
_CONTEXT_DTYPES = (torch.bfloat16, torch.float32)  # what a stored context may hold
_CACHE_DIMS = 5  # a causal conv's cache entry: (1, C, t, h, w)
_CONTEXT_DIMS = 5  # the context latents: (1, Cz, Tc, h, w)


def context_state_nbytes(vae: VaeConfig, width: int, height: int, dtype: torch.dtype = _CONTEXT_SNAPSHOT_DTYPE) -> int:
    """Bytes of a context-mode state once it holds a full context: ``decode_context_latents`` latent
    frames of ``(z_dim, H/stride, W/stride)`` in ``dtype`` (wan2.1 at 416x720, bfloat16: 449,280)."""
    s = vae.spatial_stride
    elements = vae.z_dim * vae.decode_context_latents * (height // s) * (width // s)
    return elements * torch.empty((), dtype=dtype).element_size()


class DecodeSession:
    def __init__(self, decoder: StreamingDecoder, mode: DecodeMode, width: int, height: int) -> None:
        if mode not in DECODE_MODES:
            raise ValueError(f"decode mode must be one of {DECODE_MODES}, got {mode!r}")
        self.decoder, self.mode = decoder, mode
        cfg = decoder.cfg
        s = cfg.spatial_stride
        self.latent_shape = (1, cfg.z_dim, height // s, width // s)  # (1, Cz, h, w): a chunk's, without F
        self.cache: DecoderState | None = decoder.initial_state() if mode == "stream" else None
        self.context: torch.Tensor | None = None  # (1, Cz, Tc, h, w) float32 on the VAE's device

    @property
    def at_start(self) -> bool:
        """Whether the next chunk starts the video (its first latent decodes to 1 frame, not 4)."""
        return self.context is None if self.cache is None else not self.cache.first_decoded

    def frames_of(self, latent_frames: int) -> int:
        """Video frames the next chunk of ``latent_frames`` latent frames decodes to."""
        return self.decoder.cfg.video_frames(latent_frames, first=self.at_start)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (1, Cz, F, h, w) -> frames (1, 3, Tv, H, W) in [-1, 1]; the state moves on past them."""
        latents = latents.to(device=self.decoder.vae.device, dtype=self.decoder.vae.dtype)
        if self.cache is None:
            frames, self.context = self.decoder.decode_with_context(self.context, latents)
        else:
            frames, self.cache = self.decoder.decode(latents, self.cache)
        return frames

    def nbytes(self) -> int:
        """Bytes the state holds now (before ``state_dict`` copies it)."""
        if self.cache is not None:
            return self.cache.nbytes()
        return 0 if self.context is None else self.context.nbytes

    def close(self) -> None:
        self.cache = self.context = None

    # -- state ---------------------------------------------------------------------------------------
    @staticmethod
    def owns(name: str) -> bool:
        """Whether a state entry is a decode session's (its owner keeps the others)."""
        return name == CONTEXT_KEY or name.startswith(CACHE_PREFIX + ".")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Stream mode: ``vae.*`` (the causal cache); context mode: ``context`` once a chunk was decoded."""
        if self.cache is not None:
            return with_prefix(CACHE_PREFIX, self.cache.export())
        return {} if self.context is None else {CONTEXT_KEY: _compact(self.context)}

    def saved_mode(self, tensors: Mapping[str, torch.Tensor]) -> DecodeMode | None:
        """The mode a state was taken in, where its entries tell (None: an empty context state)."""
        if any(name.startswith(CACHE_PREFIX + ".") for name in tensors):
            return "stream"
        return "context" if CONTEXT_KEY in tensors else None

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor], started: bool) -> None:
        """Continue from ``state_dict()`` of a session of this VAE, size and mode; ``started``: whether
        a chunk had been decoded. ``ValueError`` says what is wrong; nothing changes then."""
        r = StateReader(tensors, "the decode state")
        if self.cache is None:
            context = self._read_context(tensors, r, started)
            r.close()
            self.context = context
        else:
            cache = r.sub(CACHE_PREFIX)
            r.close()
            self.cache = self._load_cache(cache)

    def _read_context(self, tensors: Mapping[str, torch.Tensor], r: StateReader, started: bool) -> torch.Tensor | None:
        """``context`` (float32, on the VAE's device): there once a chunk was decoded, finite,
        ``(1, Cz, Tc, h, w)`` of this VAE and size with 1 <= Tc <= ``decode_context_latents``."""
        t = tensors.get(CONTEXT_KEY)
        if (t is not None) != started:
            has = "has" if t is not None else "has no"
            raise ValueError(
                f"the snapshot is inconsistent: it {has} {CONTEXT_KEY!r} latents, but "
                f"{'a chunk was' if started else 'no chunk was yet'} decoded: it was not written by state_dict()"
            )
        if t is None:
            return None
        if not isinstance(t, torch.Tensor) or t.dtype not in _CONTEXT_DTYPES:
            got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"the {CONTEXT_KEY!r} latents must be one of {list(_CONTEXT_DTYPES)}, got {got}")
        r.tensor(CONTEXT_KEY, t.dtype, _CONTEXT_DIMS)  # the number of dims, and t counts as read
        n, c, h, w = self.latent_shape
        most = self.decoder.cfg.decode_context_latents
        if (t.shape[0], t.shape[1], t.shape[3], t.shape[4]) != (n, c, h, w) or not 1 <= t.shape[2] <= most:
            raise ValueError(
                f"the {CONTEXT_KEY!r} latents must have shape ({n}, {c}, 1..{most}, {h}, {w}) for this VAE and "
                f"size, got {tuple(t.shape)}"
            )
        if not torch.isfinite(t).all():
            raise ValueError(f"the {CONTEXT_KEY!r} latents contain NaN or infinite values")
        return t.to(device=self.decoder.vae.device, dtype=torch.float32)

    def _load_cache(self, tensors: dict[str, torch.Tensor]) -> DecoderState:
        """``DecoderState.load`` after the checks it does not make: slot count, dtypes, shapes, finiteness."""
        slots, first = tensors.get(SLOTS_KEY), tensors.get(FIRST_KEY)
        if not (isinstance(slots, torch.Tensor) and slots.dtype == torch.int64 and slots.numel() == 1):
            raise ValueError(f"the VAE cache's {SLOTS_KEY!r} is missing or not one int64")
        if int(slots.item()) != self.decoder.num_slots:
            raise ValueError(f"the VAE cache has {int(slots.item())} slots, this VAE has {self.decoder.num_slots}")
        if not (isinstance(first, torch.Tensor) and first.dtype == torch.bool and first.numel() == 1):
            raise ValueError(f"the VAE cache's {FIRST_KEY!r} is missing or not one bool")
        vae = self.decoder.vae
        for name, t in tensors.items():
            if name in (SLOTS_KEY, FIRST_KEY) or t.numel() == 0:  # empty: a REPEAT marker
                continue
            if t.dtype != vae.dtype or t.dim() != _CACHE_DIMS or t.shape[0] != 1 or not torch.isfinite(t).all():
                raise ValueError(
                    f"VAE cache entry {name!r} must be finite {vae.dtype} of shape (1, C, t, h, w), "
                    f"got {t.dtype} {tuple(t.shape)}"
                )
        return DecoderState.load(tensors, device=vae.device)  # ValueError for a name it does not know


def _compact(context: torch.Tensor) -> torch.Tensor:
    """A context in bfloat16 when that holds it exactly (latents sent as bfloat16 always are), else as it is."""
    narrow = context.to(_CONTEXT_SNAPSHOT_DTYPE)
    return narrow if torch.equal(narrow.to(context.dtype), context) else context
