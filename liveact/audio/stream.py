"""``StreamingAudioFeatures``: PCM pushed in pieces of any size -> final feature rows, bounded memory.

Legend: N rows (one per output video frame), L layers, C channels, B rows per block, H history
rows, A lookahead rows, spf stretched samples per row, Fv window frames, W taps.

Pipeline per push: tempo stretch (``StreamingTempo``, bit-identical to offline) -> x gain ->
stretched PCM buffer -> rows, a block at a time. Rows are extracted in fixed blocks
``[jB, (j+1)B)`` (whatever the push sizes, so results never depend on how audio was chopped); the
block is computed from the window of rows ``[max(0, jB - H), (j+1)B - 1 + A)`` and its own B rows
are kept. Row i is *final* once stretched audio up to frame ``i + A`` has arrived (A = 3: for the
last row of a chunk that is the public ``--steam_audio`` slice end ``(end + 2) / fps``), so a block
is emitted when its last row is final. ``finish()`` flushes the tempo and emits the rest, the last
window ending at the clip's end exactly like the offline window.

H is the backend's ``context_frames`` when it has one (mel: 1 row, and streamed rows equal offline
rows) and ``config.history_frames`` (21) otherwise (wav2vec2: rows differ within a tolerance; see
``wav2vec2.py``).

Memory is bounded: the tempo's input buffer, the stretched PCM from ``(next block - H) * spf`` on,
and a ``FrameRing`` of the latest ``retain_frames`` rows. Rows stay addressable by absolute frame
index: ``rows(start, stop)`` and ``chunk_window(config, k)``, the latter the streaming counterpart
of ``liveact.sampling.audio_window.gather_window`` (rows past the end clamp to the last row once
the stream is finished, as offline).

State: ``state_dict()`` holds what the rows still to come depend on: the tempo's state, the
stretched PCM buffer and the counters, plus the settings it must be loaded with (checked). The
ring's rows are not in it, only its position ``frames_final``: they were already returned, and no
later row is computed from them. ``load_state_dict`` into a new stream with the same backend
layout, ``AudioConfig`` and fps continues bit for bit: its pushes and ``finish()`` return exactly
the rows (and ``total_frames``) the original stream would have; rows before ``frames_final`` are
not held by it (``rows`` / ``chunk_window`` raise ``RowsUnavailable("dropped")`` for them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from liveact.audio.backend import FeatureBackend
from liveact.audio.config import AudioConfig
from liveact.audio.errors import AudioError
from liveact.audio.frames import frame_count
from liveact.audio.rows import ChunkWindows
from liveact.audio.tempo import tempo_for
from liveact.config import ConfigError, LiveActConfig
from liveact.state.tensors import StateReader, array_tensor, check_state, float_tensor, int_tensor, with_prefix

__all__ = ["FeatureRows", "StreamingAudioFeatures"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureRows:
    """Rows that became final: frames ``start .. start + len(rows) - 1``."""

    start: int
    rows: torch.Tensor  # (n, L, C)

    @property
    def stop(self) -> int:
        return self.start + self.rows.shape[0]


class StreamingAudioFeatures:
    def __init__(self, backend: FeatureBackend, config: AudioConfig, fps: float | None = None) -> None:
        self.backend, self.config = backend, config
        self.fps = config.default_fps if fps is None else fps
        self._tempo = tempo_for(config, self.fps)
        self._gain = np.float32(config.gain)
        self._spf = config.samples_per_frame
        self._block = config.stream_block_frames
        self._lookahead = config.lookahead_frames
        context = backend.context_frames
        if context is not None and config.lookahead_frames - 1 < context:
            raise ConfigError(
                f"the {config.backend} backend needs {context} row(s) of context after a row but lookahead_frames="
                f"{config.lookahead_frames} gives {config.lookahead_frames - 1}: raise lookahead_frames"
            )
        self._history = config.history_frames if context is None else context
        self._windows = ChunkWindows(config.retain_frames, backend.layers, backend.channels)
        self._ring = self._windows.ring
        self._pcm = np.zeros(0, dtype=np.float32)  # stretched samples [pcm_start, stretched)
        self._pcm_start = 0
        self._stretched = 0
        self._received = 0
        self.total_frames: int | None = None  # N, known after finish()

    # -- feeding --------------------------------------------------------------------------------

    def push(self, pcm: np.ndarray) -> FeatureRows:
        """pcm (S,) float32 mono at ``config.sample_rate``, any S >= 0 -> the rows that became final."""
        if self.finished:
            raise RuntimeError("push() after finish(): start a new stream for a new session")
        x = np.asarray(pcm, dtype=np.float32)
        if x.ndim != 1:
            raise AudioError(f"push mono PCM of shape (S,), got {x.shape}: downmix first (io.pcm_from_bytes does)")
        if not np.isfinite(x).all():
            raise AudioError("pushed PCM holds NaN or infinite samples: send finite float samples in [-1, 1]")
        self._received += x.size
        self._append(self._tempo.push(x) * self._gain)
        final = max(0, self._stretched // self._spf - self._lookahead + 1)
        start, blocks = self._ring.end, []
        while self._ring.end + self._block <= final:
            blocks.append(self._extract(self._ring.end + self._block, window_end=None))
        return FeatureRows(start, torch.cat(blocks) if blocks else self._empty())

    def finish(self) -> FeatureRows:
        """Flush: every remaining row; afterwards ``total_frames`` is N and windows clamp at N - 1."""
        if self.finished:
            raise RuntimeError("finish() was already called")
        self._append(self._tempo.finish() * self._gain)
        n_rows = frame_count(self._received, self.config.sample_rate, self.fps)
        if n_rows < 1:
            raise AudioError(
                f"the session's {self._received / self.config.sample_rate * 1000:.0f} ms of audio is shorter than "
                f"one video frame at {self.fps} fps: push more audio before finishing"
            )
        if self._stretched < n_rows * self._spf:  # guard; the tempo emits floor(S / factor) >= N * spf
            self._append(np.zeros(n_rows * self._spf - self._stretched, dtype=np.float32))
        start, blocks = self._ring.end, []
        while self._ring.end < n_rows:
            blocks.append(self._extract(min(self._ring.end + self._block, n_rows), window_end=n_rows))
        self.total_frames = n_rows
        self._windows.finish(n_rows)
        return FeatureRows(start, torch.cat(blocks) if blocks else self._empty())

    # -- reading --------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.total_frames is not None

    @property
    def frames_final(self) -> int:
        """Rows final so far: frames 0 .. frames_final - 1 (the oldest may have been dropped)."""
        return self._ring.end

    @property
    def oldest_frame(self) -> int:
        return self._ring.start

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows of absolute frames [start, stop) -> (stop - start, L, C); ``RowsUnavailable`` if not held."""
        return self._ring.get(start, stop)

    def chunk_window(self, config: LiveActConfig, chunk_index: int) -> torch.Tensor:
        """Chunk k's audio window (1, Fv, W, L, C), equal to ``gather_window(config, offline_rows, k)``."""
        return self._windows.window(config, chunk_index)

    def chunk_ready(self, config: LiveActConfig, chunk_index: int) -> bool:
        """Whether chunk k's window is final; ``RowsUnavailable("dropped")`` if it left the buffer."""
        return self._windows.ready(config, chunk_index)

    def buffer_sizes(self) -> dict[str, int]:
        """Elements held per buffer; none grows with the session length."""
        return {
            "tempo_input_samples": self._tempo.buffered_samples,
            "stretched_samples": int(self._pcm.size),
            "ring_rows": self._ring.capacity,
        }

    # -- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Named tensors: the settings (checked on load), ``tempo.*``, the PCM buffer and counters."""
        if self.finished:
            raise RuntimeError("state_dict() after finish(): a finished stream has nothing to continue")
        return {
            **self._settings(),
            **with_prefix("tempo", self._tempo.state_dict()),
            "pcm": array_tensor(self._pcm),  # (stretched - pcm_start,) stretched samples x gain
            "pcm_start": int_tensor(self._pcm_start),
            "stretched": int_tensor(self._stretched),
            "received": int_tensor(self._received),
            "frames_final": int_tensor(self._ring.end),
        }

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Continue from another stream's ``state_dict()`` (same layout, config and fps; checked)."""
        r = StateReader(tensors, "audio features state")
        for name, value in self._settings().items():
            r.same(name, value.item())
        pcm, pcm_start, stretched = r.read_array("pcm"), r.read_int("pcm_start"), r.read_int("stretched")
        received, end = r.read_int("received"), r.read_int("frames_final")
        tempo = r.sub("tempo")
        r.close()
        what, spf = r.what, self._spf
        check_state(min(pcm_start, received, end) >= 0, what, "negative position")
        check_state(pcm_start + pcm.size == stretched, what, "PCM buffer does not end at the stretched sample")
        check_state(pcm_start == max(0, end - self._history) * spf, what, "PCM buffer does not start at the history")
        check_state(end % self._block == 0, what, f"{end} final rows is not whole blocks of {self._block}")
        check_state(end <= max(0, stretched // spf - self._lookahead + 1), what, "more final rows than audio")
        check_state(self._tempo.output_length(received) >= stretched, what, "more stretched samples than input")
        self._tempo.load_state_dict(tempo)  # checks its part; nothing is changed if it refuses
        self._pcm, self._pcm_start, self._stretched, self._received = pcm, pcm_start, stretched, received
        self._ring.restart_at(end)

    def _settings(self) -> dict[str, torch.Tensor]:
        """What the saved buffers mean: a state loads only into a stream with the same values."""
        c = self.config
        return {
            "sample_rate": int_tensor(c.sample_rate),
            "samples_per_frame": int_tensor(self._spf),
            "fps": float_tensor(self.fps),
            "gain": float_tensor(float(self._gain)),
            "history_frames": int_tensor(self._history),
            "lookahead_frames": int_tensor(self._lookahead),
            "block_frames": int_tensor(self._block),
            "layers": int_tensor(self.backend.layers),
            "channels": int_tensor(self.backend.channels),
        }

    # -- internals ------------------------------------------------------------------------------

    def _empty(self) -> torch.Tensor:
        return torch.zeros(0, self.backend.layers, self.backend.channels)

    def _append(self, stretched: np.ndarray) -> None:
        self._pcm = np.concatenate([self._pcm, stretched.astype(np.float32, copy=False)])
        self._stretched += stretched.size

    def _extract(self, stop: int, window_end: int | None) -> torch.Tensor:
        """Rows [ring.end, stop) from the window [start - H, stop - 1 + A) (cut at ``window_end``)."""
        start = self._ring.end
        lo = max(0, start - self._history)
        hi = stop - 1 + self._lookahead
        hi = hi if window_end is None else min(hi, window_end)
        pcm = self._pcm[lo * self._spf - self._pcm_start : hi * self._spf - self._pcm_start]
        rows = self.backend.window_features(pcm, hi - lo)[start - lo : stop - lo]
        self._ring.append(rows)
        keep = max(0, stop - self._history) * self._spf
        if keep > self._pcm_start:
            self._pcm = self._pcm[keep - self._pcm_start :]
            self._pcm_start = keep
        return rows
