"""Tempo change without pitch change (WSOLA), offline and streaming, bit-identical.

The public code runs sox ``tempo 25/fps`` on the audio so that a session at ``fps`` video frames
per second feeds the model ``model_fps`` frames per second of (stretched) audio. This is our own
waveform-similarity overlap-add (WSOLA, Verhelst & Roelands 1993):

* Output frames of ``window`` samples are placed every ``hop = window / 2`` samples and summed
  under a periodic Hann window (which sums to exactly 1 at 50 % overlap). Frame 0 uses a window
  that is flat on its first half, so the output starts at full level rather than fading in.
* Output frame m is read from the input near its nominal position ``floor(m * hop * factor)``,
  shifted by up to +- ``search`` samples to the position whose first half best matches (normalised
  cross-correlation) the natural continuation of the previous frame, i.e. the input that followed
  the previous frame's first half. This keeps pitch periods aligned across the overlap.
* ``factor`` > 1 shortens the audio (the tempo rises); the output has ``floor(n_in / factor)``
  samples. ``factor`` == 1 is the identity: samples pass through untouched, with no delay.

Exactness: ``tempo_stretch`` *is* ``StreamingTempo`` fed the whole signal at once. A frame is
processed only when all input it reads has arrived (during ``push``) or, in ``finish``, with the
unreceived tail read as zeros, so the concatenated output of any sequence of pushes equals the
offline output bit for bit, final flush included. Buffers are bounded: the unconsumed input (about
``window + 2 * search`` samples plus the latest push) and one ``window`` of output accumulator.
Latency: output up to ``(m + 1) * hop`` is final once input reaches ``nominal(m) + search + window``.

State: ``state_dict()`` is the stream's whole position (the unconsumed input, the output
accumulator and the frame counters) as named tensors; ``load_state_dict`` puts a new stretcher with
the same factor and sizes there, and it continues bit for bit (the split stream equals the whole
one). Its entries are built and read with ``liveact.state.tensors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import numpy as np
import torch

from liveact.audio.config import AudioConfig
from liveact.state.tensors import StateReader, array_tensor, check_state, int_tensor

__all__ = ["StreamingTempo", "tempo_for", "tempo_stretch"]

_SCORE_EPS = 1e-12  # keeps the normalised correlation finite over digital silence


class StreamingTempo:
    """Feed PCM of any size with ``push``; each call returns the output samples that became final."""

    def __init__(self, factor: Fraction | float, window: int, search: int) -> None:
        self.factor = Fraction(factor).limit_denominator(10**6)
        if self.factor <= 0:
            raise ValueError(f"tempo factor must be > 0, got {factor}")
        if window < 2 or window % 2:
            raise ValueError(f"WSOLA window must be an even number of samples >= 2, got {window}")
        if search < 0:
            raise ValueError(f"WSOLA search must be >= 0 samples, got {search}")
        self.identity = self.factor == 1
        self.window, self.hop, self.search = window, window // 2, search
        n = np.arange(window)
        self._win = (0.5 - 0.5 * np.cos(2 * np.pi * n / window)).astype(np.float32)  # periodic Hann
        self._first_win = self._win.copy()
        self._first_win[: self.hop] = 1.0
        self._buf = np.zeros(0, dtype=np.float32)  # input samples [buf_start, received)
        self._buf_start = 0
        self._received = 0
        self._frame = 0  # next output frame m
        self._prev = 0  # input position of frame m-1
        self._acc = np.zeros(window, dtype=np.float32)  # output [m*hop, m*hop + window)
        self._emitted = 0
        self._finished = False

    # -- public ---------------------------------------------------------------------------------

    def push(self, pcm: np.ndarray) -> np.ndarray:
        x = self._check(pcm)
        self._received += x.size
        if self.identity:
            self._emitted += x.size
            return x.copy()
        self._buf = np.concatenate([self._buf, x])
        out = self._run(final_len=None)
        self._trim()
        return out

    def finish(self) -> np.ndarray:
        """Flush: the remaining output, up to ``floor(received / factor)`` samples in all."""
        if self._finished:
            raise RuntimeError("finish() was already called on this stream")
        self._finished = True
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        n_out = self.output_length(self._received)
        remaining = max(n_out - self._emitted, 0)
        return self._run(final_len=n_out)[:remaining]

    def output_length(self, n_in: int) -> int:
        return n_in * self.factor.denominator // self.factor.numerator

    @property
    def buffered_samples(self) -> int:
        """Input samples held (bounded: independent of how much has been pushed)."""
        return int(self._buf.size)

    @property
    def finished(self) -> bool:
        return self._finished

    # -- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stream's position as named tensors (settings included, to be checked on load)."""
        if self._finished:
            raise RuntimeError("state_dict() after finish(): a finished stream has nothing to continue")
        return {
            "factor_num": int_tensor(self.factor.numerator),
            "factor_den": int_tensor(self.factor.denominator),
            "window": int_tensor(self.window),
            "search": int_tensor(self.search),
            "buf": array_tensor(self._buf),  # (received - buf_start,) input not yet consumed
            "buf_start": int_tensor(self._buf_start),
            "received": int_tensor(self._received),
            "frame": int_tensor(self._frame),
            "prev": int_tensor(self._prev),
            "acc": array_tensor(self._acc),  # (window,) output accumulator
            "emitted": int_tensor(self._emitted),
        }

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Continue from ``state_dict()`` of a stretcher with the same factor, window and search."""
        r = StateReader(tensors, "tempo state")
        r.same("factor_num", self.factor.numerator)
        r.same("factor_den", self.factor.denominator)
        r.same("window", self.window, " samples")
        r.same("search", self.search, " samples")
        buf, acc = r.read_array("buf"), r.read_array("acc")
        start, received, frame = r.read_int("buf_start"), r.read_int("received"), r.read_int("frame")
        prev, emitted = r.read_int("prev"), r.read_int("emitted")
        r.close()
        what = r.what
        check_state(acc.size == self.window, what, f"acc has {acc.size} samples, the window is {self.window}")
        check_state(min(start, received, frame, prev) >= 0, what, "negative position")
        if self.identity:
            check_state(buf.size == 0 and frame == 0 and emitted == received, what, "identity stretch with a buffer")
        else:
            check_state(start + buf.size == received, what, "buffer does not end at the received sample")
            check_state(emitted == frame * self.hop, what, "emitted samples are not whole hops")
            first_read = min(prev + self.hop, max(self._nominal(frame) - self.search, 0)) if frame else 0
            check_state(start <= first_read, what, "buffer starts after the next read")
        self._buf, self._acc = buf, acc
        self._buf_start, self._received, self._frame, self._prev, self._emitted = start, received, frame, prev, emitted
        self._finished = False

    # -- internals ------------------------------------------------------------------------------

    def _check(self, pcm: np.ndarray) -> np.ndarray:
        if self._finished:
            raise RuntimeError("push() after finish(): start a new stream")
        x = np.asarray(pcm, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"push mono PCM of shape (S,), got {x.shape}")
        return x

    def _nominal(self, m: int) -> int:
        return m * self.hop * self.factor.numerator // self.factor.denominator

    def _ready(self, m: int, final_len: int | None) -> bool:
        if final_len is not None:
            return m * self.hop < final_len
        enough_input = self._nominal(m) + self.search + self.window <= self._received
        return enough_input and (m + 1) * self.hop <= self.output_length(self._received)

    def _slice(self, start: int, stop: int) -> np.ndarray:
        """Input [start, stop) by absolute index; samples past the received end read as zeros."""
        a, b = start - self._buf_start, stop - self._buf_start
        if a < 0:
            raise AssertionError(f"WSOLA read at {start} before the buffer start {self._buf_start}")
        seg = self._buf[a:b]
        if seg.size < stop - start:
            seg = np.concatenate([seg, np.zeros(stop - start - seg.size, dtype=np.float32)])
        return seg

    def _position(self, m: int) -> int:
        """Input position of output frame m: the best match near the nominal position."""
        if m == 0:
            return 0
        nominal = self._nominal(m)
        lo, hi = max(nominal - self.search, 0), nominal + self.search
        template = self._slice(self._prev + self.hop, self._prev + 2 * self.hop).astype(np.float64)
        region = self._slice(lo, hi + self.hop).astype(np.float64)
        corr = np.correlate(region, template, mode="valid")  # (hi - lo + 1,)
        energy = np.concatenate([[0.0], np.cumsum(region * region)])
        energy = energy[self.hop :] - energy[: -self.hop]  # (hi - lo + 1,) candidate energies
        score = corr / np.sqrt(energy + _SCORE_EPS)
        best = int(np.argmax(score))
        return lo + best if score[best] > 0 else nominal

    def _run(self, final_len: int | None) -> np.ndarray:
        out: list[np.ndarray] = []
        while self._ready(self._frame, final_len):
            m = self._frame
            pos = self._position(m)
            window = self._first_win if m == 0 else self._win
            self._acc += self._slice(pos, pos + self.window) * window
            out.append(self._acc[: self.hop].copy())
            self._acc[: self.hop] = self._acc[self.hop :]
            self._acc[self.hop :] = 0.0
            self._prev, self._frame = pos, m + 1
        if not out:
            return np.zeros(0, dtype=np.float32)
        chunk = np.concatenate(out)
        self._emitted += chunk.size
        return chunk

    def _trim(self) -> None:
        """Drop input no later frame reads: before the next template and the next search region."""
        if self._frame == 0:
            return
        keep = min(self._prev + self.hop, max(self._nominal(self._frame) - self.search, 0))
        drop = keep - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start = keep


def tempo_stretch(pcm: np.ndarray, factor: Fraction | float, window: int, search: int) -> np.ndarray:
    """Offline tempo change: (S,) -> (floor(S / factor),) float32, pitch kept. Identity at 1."""
    stream = StreamingTempo(factor, window, search)
    return np.concatenate([stream.push(pcm), stream.finish()])


def tempo_for(config: AudioConfig, fps: float | None = None) -> StreamingTempo:
    """The session's stretcher: factor ``model_fps / fps``, WSOLA sizes from ``config.tempo``."""
    half = round(config.tempo.window_s * config.sample_rate / 2)
    return StreamingTempo(config.tempo_factor(fps), 2 * half, round(config.tempo.search_s * config.sample_rate))
