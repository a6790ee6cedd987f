"""``StreamingResampler``: PCM at the client's rate -> the encoder's rate, push by push.

Legend: S input samples, U/D the reduced rate ratio (out = in * U / D), n an output index, h the
filter's half width in input samples.

Band-limited interpolation with a Kaiser-windowed sinc: output sample n is the filter centred on
input position ``n * D / U`` (exact integer arithmetic), cut at ``rolloff`` x the lower Nyquist
rate. The filter is symmetric (no delay), input before sample 0 and after the last is zero, and an
output is computed once all h input samples after its centre have arrived, from the same samples
and weights whatever the push sizes: the output does not depend on how the input was split (bit
for bit). ``finish()`` emits the rest, ``ceil(S * U / D)`` outputs in all.

Memory: the input from the next output's first tap on (2h samples plus one push) and a tap table
of U phases x 2h taps shared by all streams with the same rates (U = 1 for 48 kHz -> 16 kHz, 160
for 44.1 kHz -> 16 kHz).

State: ``state_dict()`` is the rates, the held input and the counters (the taps are derived from
the rates); ``load_state_dict`` puts a new resampler with the same rates there, and its outputs
continue bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import torch

from liveact.state.tensors import StateReader, array_tensor, check_state, int_tensor

__all__ = ["StreamingResampler"]

_ZERO_CROSSINGS = 16  # sinc lobes on each side of the centre, at the cutoff rate
_ROLLOFF = 0.95  # cutoff as a fraction of the lower Nyquist rate
_KAISER_BETA = 8.6  # ~ -80 dB side lobes
_BLOCK_OUTPUTS = 4096  # outputs computed per vectorised step (bounds the temporary (n, 2h) arrays)


@lru_cache(maxsize=16)
def _taps(up: int, down: int) -> tuple[np.ndarray, int]:
    """(U, 2h) float64 weights, row p for centre fraction p / U, each row summing to 1; and h."""
    cutoff = _ROLLOFF * min(1.0, up / down)  # in cycles per input sample x 2
    half = math.ceil(_ZERO_CROSSINGS / cutoff)
    j = np.arange(-half + 1, half + 1)  # tap k = floor(centre) + j
    x = np.arange(up)[:, None] / up - j[None, :]  # centre - k, in (-h, h)
    window = np.i0(_KAISER_BETA * np.sqrt(np.clip(1.0 - (x / half) ** 2, 0.0, None))) / np.i0(_KAISER_BETA)
    weights = cutoff * np.sinc(cutoff * x) * window
    weights /= weights.sum(axis=1, keepdims=True)  # unit DC gain for every phase
    weights.setflags(write=False)
    return weights, half


class StreamingResampler:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate < 1 or out_rate < 1:
            raise ValueError(f"sample rates must be >= 1, got {in_rate} -> {out_rate}")
        g = math.gcd(in_rate, out_rate)
        self.in_rate, self.out_rate = in_rate, out_rate
        self.up, self.down = out_rate // g, in_rate // g
        self._weights, self._half = _taps(self.up, self.down)
        self._offsets = np.arange(-self._half + 1, self._half + 1)  # (2h,)
        self._buf = np.zeros(self._half - 1, dtype=np.float32)  # zeros before sample 0
        self._buf_start = -(self._half - 1)  # absolute input index of _buf[0]
        self._received = 0
        self._next = 0  # next output index
        self.finished = False

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """pcm (S,) float32 at ``in_rate`` -> the outputs that became computable (float32)."""
        if self.finished:
            raise RuntimeError("push() after finish()")
        x = np.asarray(pcm, dtype=np.float32)
        self._buf = np.concatenate([self._buf, x])
        self._received += x.size
        # output n needs input up to floor(n * D / U) + h: ready while that is < received
        ready = -(-(self._received - self._half) * self.up // self.down) if self._received >= self._half else 0
        return self._emit(ready)

    def finish(self) -> np.ndarray:
        """The remaining outputs (the input after the end is zero)."""
        if self.finished:
            raise RuntimeError("finish() was already called")
        self.finished = True
        total = self.output_length(self._received)
        self._buf = np.concatenate([self._buf, np.zeros(self._half, dtype=np.float32)])
        return self._emit(total)

    def output_length(self, n_in: int) -> int:
        """Outputs for ``n_in`` input samples: those whose centre lies before the end, ceil(S * U / D)."""
        return -(-n_in * self.up // self.down)

    @property
    def buffered_samples(self) -> int:
        return int(self._buf.size)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Named tensors: the rates (checked on load), the held input and the counters."""
        if self.finished:
            raise RuntimeError("state_dict() after finish(): a finished stream has nothing to continue")
        return {
            "in_rate": int_tensor(self.in_rate),
            "out_rate": int_tensor(self.out_rate),
            "buf": array_tensor(self._buf),  # (received - buf_start,) input from the next output's first tap
            "buf_start": int_tensor(self._buf_start),
            "received": int_tensor(self._received),
            "next": int_tensor(self._next),
        }

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Continue from the ``state_dict()`` of a resampler with the same rates (checked)."""
        r = StateReader(tensors, "resampler state")
        r.same("in_rate", self.in_rate, " Hz")
        r.same("out_rate", self.out_rate, " Hz")
        buf, start = r.read_array("buf"), r.read_int("buf_start")
        received, nxt = r.read_int("received"), r.read_int("next")
        r.close()
        what, half = r.what, self._half
        check_state(received >= 0 and 0 <= nxt <= self.output_length(received), what, "position out of range")
        check_state(start + buf.size == received, what, "buffer does not end at the received sample")
        check_state(-(half - 1) <= start <= nxt * self.down // self.up - half + 1, what, "buffer misses taps")
        self._buf, self._buf_start, self._received, self._next = buf, start, received, nxt
        self.finished = False

    def _emit(self, stop: int) -> np.ndarray:
        parts = []
        while self._next < stop:
            n = np.arange(self._next, min(stop, self._next + _BLOCK_OUTPUTS), dtype=np.int64)
            pos = n * self.down
            base, phase = pos // self.up, pos % self.up
            index = base[:, None] + self._offsets[None, :] - self._buf_start  # (n, 2h) into _buf
            parts.append((self._buf[index] * self._weights[phase]).sum(axis=1).astype(np.float32))
            self._next = int(n[-1]) + 1
        keep = self._next * self.down // self.up - self._half + 1  # first tap of the next output
        if keep > self._buf_start:
            self._buf = self._buf[keep - self._buf_start :]
            self._buf_start = keep
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
