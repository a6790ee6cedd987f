"""One long session, scored in windows that end at given marks (10 s, 1 min, 10 min, 60 min).

A held-out identity (``EvalSettings.identity_seed``: the renderer's neutral face, not a training
clip's) speaks endless espeak-ng sentences (``speech_pieces``) into one ``AnimationSession``, a block
of audio at a time, as a streaming client would. Only the frames and audio that fall inside a
scoring window are kept, and only until that window is scored, so memory stays flat however long
the run: the point is to measure what an hour of generation does to lip sync, identity and flicker.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from liveact.data.clip import speech_pieces
from liveact.data.face import NEUTRAL, FaceRenderer, Identity
from liveact.data.speech import SAMPLE_RATE, TARGET_PEAK, SpeechStyle
from liveact.evaluation.scores import WindowScores, score_window
from liveact.evaluation.sheets import write_sheet
from liveact.pipeline.engine import Engine
from liveact.pipeline.session import AnimationSession, VideoChunk

__all__ = ["EvalSettings", "evaluate"]


@dataclass(frozen=True)
class EvalSettings:
    marks_s: tuple[float, ...] = (10.0, 60.0, 600.0, 3600.0)
    window_s: float = 10.0  # each score covers the window_s seconds before its mark
    identity_seed: int = 11  # examples/face.png's identity
    speech_seed: int = 0
    fps: float = 20.0
    block_s: float = 1.0  # audio pushed per call, as a streaming client would
    seed: int = 0  # the session's noise seed

    def __post_init__(self) -> None:
        if not self.marks_s or any(m < self.window_s for m in self.marks_s) or self.window_s <= 0:
            raise ValueError(f"every mark must be >= window_s={self.window_s} s, got {self.marks_s}")


@dataclass
class _Window:
    end_s: float
    first: int  # frames [first, end)
    end: int
    frames: list[np.ndarray] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)


def reference_face(identity_seed: int, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the identity's neutral render (mouth closed, eyes open, centred)."""
    return FaceRenderer(Identity.sample(np.random.default_rng(identity_seed)), size)(NEUTRAL)


def _speech(seed: int):
    """Endless speech at a steady level: each sentence scaled to the training clips' peak."""
    rng = np.random.default_rng(seed)
    style = SpeechStyle.sample(rng)
    gain = TARGET_PEAK * 10 ** (style.gain_db / 20)
    for pcm, _ in speech_pieces(rng, style):
        peak = float(np.abs(pcm).max()) if pcm.size else 0.0
        yield (pcm * (gain / peak) if peak > 0 else pcm).astype(np.float32)


def evaluate(
    engine: Engine, settings: EvalSettings = EvalSettings(), progress: bool = True, sheets: Path | None = None
) -> dict[str, Any]:
    """Generate ``max(marks)`` seconds of video and score each window; returns a JSON-ready report.

    ``sheets``: also write each window's contact sheet there (``sheets.sheet_name``: the reference, then
    frames evenly spaced through the window).
    """
    s = settings
    size = engine.config.width
    reference = reference_face(s.identity_seed, size)
    session = AnimationSession(engine, reference, fps=s.fps, seed=s.seed)
    spf = SAMPLE_RATE / s.fps  # audio samples per frame
    windows = [_Window(m, round((m - s.window_s) * s.fps), round(m * s.fps)) for m in sorted(s.marks_s)]
    total_frames = windows[-1].end
    total_samples = round(total_frames * spf)
    scores: list[WindowScores] = []

    def take_audio(pcm: np.ndarray, at: int) -> None:
        for w in windows:
            a, b = max(at, round(w.first * spf)), min(at + len(pcm), round(w.end * spf))
            if a < b:
                w.audio.append(pcm[a - at : b - at])

    def take_frames(chunk: VideoChunk) -> None:
        for w in list(windows):
            a, b = max(chunk.first_frame, w.first), min(chunk.first_frame + len(chunk.frames), w.end)
            if a < b:
                w.frames.append(chunk.frames[a - chunk.first_frame : b - chunk.first_frame])
            if sum(len(f) for f in w.frames) == w.end - w.first:
                frames, audio = np.concatenate(w.frames), np.concatenate(w.audio)
                scores.append(score_window(w.end_s, frames, reference, audio, SAMPLE_RATE, s.fps))
                if sheets is not None:
                    write_sheet(sheets, w.end_s, frames, reference)
                windows.remove(w)

    start = time.monotonic()
    pushed = 0
    block = round(s.block_s * SAMPLE_RATE)
    buffer = np.zeros(0, np.float32)
    speech = _speech(s.speech_seed)
    bar = tqdm(total=total_frames, desc="eval", unit="frame", file=sys.stderr, disable=not progress)
    with bar:
        while pushed < total_samples:
            while len(buffer) < block:
                buffer = np.concatenate([buffer, next(speech)])
            pcm = buffer[: min(block, total_samples - pushed)]
            buffer = buffer[len(pcm) :]
            take_audio(pcm, pushed)
            pushed += len(pcm)
            for chunk in session.push_audio(pcm):
                take_frames(chunk)
                bar.update(len(chunk.frames))
        for chunk in session.finish():
            take_frames(chunk)
            bar.update(len(chunk.frames))
    seconds = time.monotonic() - start
    report: dict[str, Any] = {
        "preset": engine.config.name,
        "trained": engine.trained,
        "size": size,
        "fps": s.fps,
        "window_s": s.window_s,
        "identity_seed": s.identity_seed,
        "speech_seed": s.speech_seed,
        "generated_s": total_frames / s.fps,
        "wall_s": round(seconds, 1),
        "generation_fps": round(total_frames / seconds, 1),
        "windows": [w.to_dict() for w in sorted(scores, key=lambda w: w.end_s)],
    }
    by_mark = {w.end_s: w for w in scores}
    if 60.0 in by_mark and max(by_mark) > 60.0:
        last = by_mark[max(by_mark)]
        report["drift_ratio_last_vs_1min"] = round(last.identity_drift / max(by_mark[60.0].identity_drift, 1e-9), 3)
    return report
