"""Whole synthetic clips, and datasets of them on disk.

``synth_clip(seed, seconds)`` samples an identity and a speaking style, speaks random sentences with
short pauses (espeak-ng), derives the mouth from the audio, head motion from its prosody and blinks
from a Poisson process, and renders every frame. Everything comes from one
``numpy.random.Generator`` seeded by ``seed``, and espeak-ng is deterministic, so a seed always
gives the same arrays.

A dataset directory (``write_dataset``)::

    dataset.json        {"format": ..., "size", "fps", "sample_rate", "seconds", "seed", "clips"}
    manifest.jsonl      one line per clip: file, seed, seconds, frames, text, voice, identity
    clip_00000.npz      frames (T, H, W, 3) uint8, audio (S,) float32, mouth (T, 2), blink (T,),
    clip_00001.npz      head (T, 3), reference (H, W, 3) uint8, meta (a JSON string); no pickle
    ...

Clip i's seed is derived from (dataset seed, i) alone, so writing more clips into the same
directory with the same settings keeps the clips already there and adds the rest.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from liveact.data.face import NEUTRAL, FaceRenderer, FaceState, Identity
from liveact.data.motion import blink_track, head_motion
from liveact.data.speech import (
    SAMPLE_RATE,
    TARGET_PEAK,
    SpeechStyle,
    frame_count,
    frame_pitch,
    frame_rms,
    mouth_from_audio,
    random_sentence,
    speak,
)

__all__ = [
    "DATASET_FORMAT",
    "Clip",
    "clip_seed",
    "read_clip",
    "read_dataset_info",
    "speech_pieces",
    "synth_clip",
    "write_dataset",
]

DATASET_FORMAT = 1  # bump when the files' layout or meaning changes
LEADING_SILENCE_S = (0.1, 0.5)  # before the first sentence
PAUSE_S = (0.15, 0.6)  # between sentences
MAX_SENTENCES = 1000  # a guard: espeak producing no audio must not loop forever
ARRAYS = ("frames", "audio", "mouth", "blink", "head", "reference")
DATASET_JSON, MANIFEST = "dataset.json", "manifest.jsonl"


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class Clip:
    """One synthetic talking-head clip with its ground truth. T frames at ``fps``, S audio samples."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    audio: np.ndarray  # (S,) float32 mono at sample_rate
    mouth: np.ndarray  # (T, 2) float32: opening, width in [0, 1]
    blink: np.ndarray  # (T,) float32, 1 = closed
    head: np.ndarray  # (T, 3) float32: dx, dy (fractions of the image), tilt (radians)
    reference: np.ndarray  # (H, W, 3) uint8, the neutral render (mouth closed, eyes open, centred)
    identity: Identity
    text: str
    seed: int
    fps: float
    sample_rate: int = SAMPLE_RATE
    voice: str = ""

    def states(self) -> list[FaceState]:
        """The per-frame renderer states the frames were drawn from."""
        return [
            FaceState(float(m[0]), float(m[1]), float(b), float(h[0]), float(h[1]), float(h[2]))
            for m, b, h in zip(self.mouth, self.blink, self.head, strict=True)
        ]

    def meta(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "fps": self.fps,
            "sample_rate": self.sample_rate,
            "seconds": len(self.audio) / self.sample_rate,
            "frames": len(self.frames),
            "text": self.text,
            "voice": self.voice,
            "identity": self.identity.to_dict(),
        }


def clip_seed(dataset_seed: int, index: int) -> int:
    """Clip ``index``'s seed: a hash of (dataset seed, index), independent of how many clips there are."""
    return int(np.random.SeedSequence([dataset_seed, index]).generate_state(1, np.uint32)[0])


def speech_pieces(rng: np.random.Generator, style: SpeechStyle) -> Iterator[tuple[np.ndarray, str]]:
    """Endless speech, unnormalised: a leading silence, then (sentence, its text), (pause, "") alternating."""
    yield np.zeros(round(rng.uniform(*LEADING_SILENCE_S) * SAMPLE_RATE), np.float32), ""
    while True:
        sentence = random_sentence(rng)
        yield speak(sentence, style.voice, style.words_per_minute, style.pitch, SAMPLE_RATE), sentence
        yield np.zeros(round(rng.uniform(*PAUSE_S) * SAMPLE_RATE), np.float32), ""


def _speech(rng: np.random.Generator, style: SpeechStyle, n_samples: int) -> tuple[np.ndarray, str]:
    """(n_samples,) float32: sentences and pauses, cut to length; and the text of the sentences begun."""
    pieces: list[np.ndarray] = []
    sentences: list[str] = []
    total = 0
    for pcm, text in speech_pieces(rng, style):
        pieces.append(pcm)
        sentences += [text] if text else []
        total += len(pcm)
        # stop once long enough, only ever after a silence (the leading one, or a sentence's pause)
        if not text and (total >= n_samples or len(sentences) >= MAX_SENTENCES):
            break
    pcm = np.concatenate(pieces)[:n_samples]
    pcm = np.pad(pcm, (0, n_samples - len(pcm)))
    peak = float(np.abs(pcm).max())
    if peak > 0:
        pcm = pcm * (TARGET_PEAK / peak * 10 ** (style.gain_db / 20))
    return pcm.astype(np.float32), " ".join(sentences)


def synth_clip(seed: int, seconds: float, size: int = 64, fps: float = 20.0) -> Clip:
    """A clip of ``seconds`` of speech (exactly round(seconds * 16000) samples), rendered at ``size``."""
    if seconds <= 0 or fps <= 0:
        raise ValueError(f"seconds and fps must be positive, got {seconds} and {fps}")
    rng = np.random.default_rng(seed)
    identity = Identity.sample(rng)
    style = SpeechStyle.sample(rng)
    audio, text = _speech(rng, style, round(seconds * SAMPLE_RATE))
    n = frame_count(len(audio), SAMPLE_RATE, fps)
    mouth = mouth_from_audio(audio, SAMPLE_RATE, fps)  # (T, 2)
    head = head_motion(rng, frame_rms(audio, SAMPLE_RATE, fps), fps, frame_pitch(audio, SAMPLE_RATE, fps))  # (T, 3)
    blink = blink_track(rng, n, fps)  # (T,)
    renderer = FaceRenderer(identity, size)
    frames = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        state = FaceState(
            float(mouth[k, 0]),
            float(mouth[k, 1]),
            float(blink[k]),
            float(head[k, 0]),
            float(head[k, 1]),
            float(head[k, 2]),
        )
        frames[k] = renderer(state)
    reference = renderer(NEUTRAL)
    return Clip(frames, audio, mouth, blink, head, reference, identity, text, seed, fps, SAMPLE_RATE, style.voice)


def save_clip(clip: Clip, path: str | os.PathLike) -> None:
    """Write ``clip`` as a compressed npz (atomically: a temporary name, then a rename)."""
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial.npz")
    arrays = {name: getattr(clip, name) for name in ARRAYS}
    np.savez_compressed(partial, **arrays, meta=np.array(json.dumps(clip.meta())))
    os.replace(partial, path)


def read_clip(path: str | os.PathLike) -> Clip:
    """Load a clip written by ``write_dataset`` / ``save_clip`` (no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in ARRAYS}
        meta = json.loads(str(data["meta"]))
    return Clip(
        **arrays,
        identity=Identity.from_dict(meta["identity"]),
        text=meta["text"],
        seed=int(meta["seed"]),
        fps=float(meta["fps"]),
        sample_rate=int(meta["sample_rate"]),
        voice=meta.get("voice", ""),
    )


def read_dataset_info(out_dir: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(out_dir) / DATASET_JSON).read_text())


def _make(job: tuple[int, float, int, float, str]) -> dict[str, Any]:
    """Worker: synthesise one clip, save it, return its manifest line."""
    seed, seconds, size, fps, path = job
    clip = synth_clip(seed, seconds, size, fps)
    save_clip(clip, path)
    meta = clip.meta()
    return {"file": Path(path).name, **{k: meta[k] for k in ("seed", "seconds", "frames", "text", "voice", "identity")}}


def write_dataset(
    out_dir: str | os.PathLike,
    clips: int,
    seconds: float,
    size: int = 64,
    fps: float = 20.0,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Write ``clips`` clips into ``out_dir`` (see the module docstring); returns the directory.

    Clips already present from an earlier run with the same settings are kept (never rewritten, and
    never removed: a dataset only grows), so a dataset can be extended; a directory holding a dataset
    with other settings is refused.
    """
    if clips < 1 or workers < 1:
        raise ValueError(f"clips and workers must be at least 1, got {clips} and {workers}")
    if seconds <= 0 or fps <= 0 or size < 8:
        raise ValueError(f"need seconds > 0, fps > 0 and size >= 8, got {seconds}, {fps} and {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"format": DATASET_FORMAT, "size": size, "fps": fps, "sample_rate": SAMPLE_RATE}
    settings |= {"seconds": seconds, "seed": seed}
    existing: dict[str, dict[str, Any]] = {}
    if (out / DATASET_JSON).exists():
        old = read_dataset_info(out)
        if {k: old.get(k) for k in settings} != settings:
            raise ValueError(
                f"{out} already holds a dataset with other settings ({old}): "
                "use an empty directory, or the same settings to extend it"
            )
        if (out / MANIFEST).exists():
            for line in (out / MANIFEST).read_text().splitlines():
                entry = json.loads(line)
                if (out / entry["file"]).exists():
                    existing[entry["file"]] = entry
    names = [f"clip_{i:05d}.npz" for i in range(clips)]
    jobs = [(clip_seed(seed, i), seconds, size, fps, str(out / n)) for i, n in enumerate(names) if n not in existing]
    entries = dict(existing)
    bar = tqdm(total=len(jobs), desc="synth clips", unit="clip", file=sys.stderr, disable=not progress)
    with bar:
        for entry in _run(jobs, workers):
            entries[entry["file"]] = entry
            bar.update()
    with open(out / MANIFEST, "w") as f:
        for name in sorted(entries):
            f.write(json.dumps(entries[name]) + "\n")
    (out / DATASET_JSON).write_text(json.dumps(settings | {"clips": len(entries)}, indent=2) + "\n")
    return out


def _run(jobs: list[tuple[int, float, int, float, str]], workers: int) -> Iterator[dict[str, Any]]:
    if workers == 1 or len(jobs) <= 1:
        yield from map(_make, jobs)
        return
    # spawn, not fork: the parent may hold threads (torch, tqdm's monitor) that fork would copy mid-lock
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_make, jobs)
