"""End-to-end throughput: the pipeline in this process against the three services on loopback.

One run, the same inputs on both paths: ``examples/face.png`` and the first ``seconds`` of
``examples/speech.wav`` (repeated from its start when the clip is shorter), quantised to s16 the way
the client sends it, so both paths generate from identical samples with the same seed.

* ``in_process``: ``AnimationSession`` in this process, audio pushed in 100 ms pieces as fast as
  possible. Its frames are uint8 arrays; nothing is encoded.
* ``services``: audio encoder, decoder and generator as separate processes on loopback
  (``liveact.launch.local_cluster``, as ``liveact up`` starts them), driven by
  ``liveact.client.animate`` with the same 100 ms pieces as fast as possible; the decoder encodes
  frames to the chosen format (JPEG by default).
* ``--realtime`` adds both paths again with audio sent at real-time pace (``*_realtime``).

Per run: ``seconds`` spans the whole session as its caller sees it (in-process: decoding the
reference image, preparing the sampler, every push and the finish; services: opening the channel to
receiving SessionEnd), ``fps`` = frames / seconds, ``time_to_first_frame_s`` runs from the first
audio pushed / sent to the first chunk emitted / received. ``cpu_ms_per_frame`` is the CPU time of
every process involved (this process, plus the three services on the services path, from
``/proc``; null elsewhere) per frame: less sensitive than wall time to other tenants of a shared machine.

Each path is warmed up with one short session (first and later chunk shapes) before timing, so model
loading and first-call set-up are not in the figures. Repeats are interleaved (in-process, services,
in-process, ...) and the median of each figure is reported. ``throughput_ratio`` = services fps /
in-process fps; ``overhead_percent`` = 100 * (1 - ratio). The target (services cost at most 10 % of
the in-process throughput) is reported as ``meets_target``, never asserted.

Threads: every process uses torch's default intra-op threads (one per core) unless ``threads`` is
given, which sets them here and (through ``OMP_NUM_THREADS``) in each service process. On a small
shared machine wall-clock figures are noisy: an occasional run can be several times slower than its
neighbours while CPU time grows with it (threads waiting on a busy core); the per-run figures are in
``runs``, compare medians taken under the same load.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from liveact.audio import decode_audio
from liveact.client import animate
from liveact.client.animate import to_s16
from liveact.launch import local_cluster
from liveact.media import load_reference_image
from liveact.pipeline import AnimationSession, Engine, load_engine
from liveact.v1 import common_pb2

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
IMAGE = EXAMPLES / "face.png"
SPEECH = EXAMPLES / "speech.wav"
FORMATS = {"JPEG": common_pb2.JPEG, "RAW_RGB": common_pb2.RAW_RGB}
CHUNK_MS = 100.0  # audio piece per push / per AudioChunk message
VIDEO_FPS = 20.0
WARMUP_SECONDS = 2.0  # two chunks: the first (21 frames) and a later (32 frames) chunk shape
TARGET_OVERHEAD_PERCENT = 10.0


@dataclass(frozen=True)
class Run:
    frames: int
    seconds: float
    first_frame_s: float | None
    cpu_seconds: float | None
    digest: str | None  # sha256 of the RGB frames (in-process, and services with RAW_RGB)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def load_speech(seconds: float, sample_rate: int) -> np.ndarray:
    """The first ``seconds`` of the example speech (tiled when longer), exactly as s16le carries it."""
    pcm = decode_audio(SPEECH, sample_rate=sample_rate)
    n = max(1, round(seconds * sample_rate))
    pcm = np.tile(pcm, -(-n // len(pcm)))[:n]
    return to_s16(pcm).astype(np.float32) / 32768.0


def pieces(pcm: np.ndarray, sample_rate: int) -> Iterator[np.ndarray]:
    step = max(1, round(sample_rate * CHUNK_MS / 1000))  # as liveact.client.animate.pcm_chunks cuts it
    for i in range(0, len(pcm), step):
        yield pcm[i : i + step]


class CpuClock:
    """CPU seconds (user + system) of this process and of ``pids``, from /proc; None where unavailable."""

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def read(self) -> float | None:
        each = self.read_each()
        return None if each is None else time.process_time() + sum(each)

    def read_each(self) -> list[float] | None:
        """Each of ``pids``' CPU seconds (not this process's), in order; None if one is gone."""
        out = []
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            out.append((int(fields[11]) + int(fields[12])) / self.tick)  # utime, stime
        return out


def run_in_process(
    engine: Engine, image: bytes, width: int, height: int, pcm: np.ndarray, seed: int, realtime: bool
) -> Run:
    rate = engine.audio_config.sample_rate
    clock = CpuClock()
    digest = hashlib.sha256()
    frames = 0
    first: float | None = None
    t_audio: float | None = None

    def take(chunks) -> None:
        nonlocal frames, first
        for chunk in chunks:
            if first is None:
                first = time.perf_counter() - t_audio
            frames += chunk.frames.shape[0]
            digest.update(np.ascontiguousarray(chunk.frames).tobytes())

    c0, t0 = clock.read(), time.perf_counter()
    session = AnimationSession(engine, load_reference_image(image, width, height), fps=VIDEO_FPS, seed=seed)
    start, sent_s = time.perf_counter(), 0.0
    for piece in pieces(pcm, rate):
        if realtime and (ahead := sent_s - (time.perf_counter() - start)) > 0:
            time.sleep(ahead)
        if t_audio is None:
            t_audio = time.perf_counter()
        take(session.push_audio(piece))
        sent_s += len(piece) / rate
    take(session.finish())
    seconds, c1 = time.perf_counter() - t0, clock.read()
    return Run(frames, seconds, first, _delta(c0, c1), digest.hexdigest())


def run_services(
    target: str,
    pids: list[int],
    image: bytes,
    width: int,
    height: int,
    pcm: np.ndarray,
    sample_rate: int,
    seed: int,
    output_format: int,
    realtime: bool,
) -> Run:
    clock = CpuClock(pids)
    timeout_s = 120.0 + 20.0 * len(pcm) / sample_rate
    c0 = clock.read()
    result = asyncio.run(
        animate(target, image, pcm, sample_rate, fps=VIDEO_FPS, seed=seed, output_format=output_format,
                width=width, height=height, chunk_ms=CHUNK_MS, realtime=realtime, timeout_s=timeout_s)
    )  # fmt: skip
    c1 = clock.read()
    if result.end is None or result.end.frames != result.frame_count:
        raise RuntimeError(f"the services session ended without a complete SessionEnd: {result.end}")
    digest = None
    if output_format == common_pb2.RAW_RGB:
        digest = hashlib.sha256(np.ascontiguousarray(result.raw_frames()).tobytes()).hexdigest()
    return Run(result.frame_count, result.seconds, result.first_frame_s, _delta(c0, c1), digest)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _cpu_per_frame(runs: list[Run]) -> float | None:
    return _median([r.cpu_seconds / r.frames if r.cpu_seconds is not None and r.frames else None for r in runs])


def _load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def summarise(runs: list[Run]) -> dict:
    fps = _median([r.fps for r in runs])
    cpu = _cpu_per_frame(runs)
    return {
        "frames": runs[0].frames,
        "fps": round(fps, 2),
        "realtime_factor": round(fps / VIDEO_FPS, 3),  # video seconds generated per wall second
        "time_to_first_frame_s": _round(_median([r.first_frame_s for r in runs]), 3),
        "seconds": round(statistics.median(r.seconds for r in runs), 3),
        "cpu_ms_per_frame": _round(None if cpu is None else 1000.0 * cpu, 2),
        "runs": [
            {
                "frames": r.frames,
                "fps": round(r.fps, 2),
                "time_to_first_frame_s": _round(r.first_frame_s, 3),
                "seconds": round(r.seconds, 3),
                "cpu_seconds": _round(r.cpu_seconds, 3),
            }
            for r in runs
        ],
    }


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """This process's torch intra-op threads set to ``threads`` (None: unchanged) for the block."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def machine(service_env: dict[str, str] | None) -> dict:
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(affinity) if affinity is not None else None,
        "torch_threads": torch.get_num_threads(),  # in this process, and in each service process
        "torch_interop_threads": torch.get_num_interop_threads(),
        "processes_on_services_path": 4,  # this client + audio encoder, generator, decoder
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")} | (service_env or {}),
        "load_average_1m": _load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def run(
    preset: str = "tiny",
    seconds: float = 10.0,
    width: int | None = None,
    height: int | None = None,
    output_format: str = "JPEG",
    repeats: int = 3,
    realtime: bool = False,
    seed: int = 0,
    threads: int | None = None,
) -> dict:
    """``threads``: torch intra-op threads of this process and of each service process (None: torch's default)."""
    if not seconds > 0:
        raise ValueError(f"--seconds must be positive, got {seconds}")
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    fmt_name = output_format.upper()
    if fmt_name not in FORMATS:
        raise ValueError(f"--format must be one of {sorted(FORMATS)}, got {output_format!r}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    fmt = FORMATS[fmt_name]
    env = None if threads is None else {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    modes = [False, True] if realtime else [False]
    local: dict[bool, list[Run]] = {m: [] for m in modes}
    remote: dict[bool, list[Run]] = {m: [] for m in modes}

    with torch_threads(threads):
        facts = machine(env)
        engine = load_engine(preset, device="cpu")
        width = width or engine.config.width
        height = height or engine.config.height
        rate = engine.audio_config.sample_rate
        image = IMAGE.read_bytes()
        pcm = load_speech(seconds, rate)
        warm = pcm[: round(min(seconds, WARMUP_SECONDS) * rate)]

        with local_cluster(preset, max_sessions=1, env=env, redis_url="") as (target, procs):
            pids = [p.pid for p in procs]

            def services(audio: np.ndarray, paced: bool) -> Run:
                return run_services(target, pids, image, width, height, audio, rate, seed, fmt, paced)

            run_in_process(engine, image, width, height, warm, seed, realtime=False)
            services(warm, False)
            for _ in range(repeats):
                for paced in modes:
                    local[paced].append(run_in_process(engine, image, width, height, pcm, seed, paced))
                    remote[paced].append(services(pcm, paced))

    result = {
        "benchmark": "pipeline",
        "preset": preset,
        "trained_weights": engine.trained,
        "size": f"{width}x{height}",
        "format": fmt_name,
        "audio_seconds": round(len(pcm) / rate, 3),
        "video_fps": VIDEO_FPS,
        "chunk_ms": CHUNK_MS,
        "repeats": repeats,
        "machine": facts,
        "in_process": summarise(local[False]),
        "services": summarise(remote[False]),
    }
    if realtime:
        result["in_process_realtime"] = summarise(local[True])
        result["services_realtime"] = summarise(remote[True])
    result |= compare(local[False], remote[False], raw=fmt == common_pb2.RAW_RGB)
    result["machine"]["load_average_1m_after"] = _load_average()
    return result


def compare(local: list[Run], remote: list[Run], raw: bool) -> dict:
    """Services against in-process, from the medians of the unpaced runs."""
    fps_a, fps_b = _median([r.fps for r in local]), _median([r.fps for r in remote])
    ttff_a, ttff_b = _median([r.first_frame_s for r in local]), _median([r.first_frame_s for r in remote])
    cpu_a, cpu_b = _cpu_per_frame(local), _cpu_per_frame(remote)
    ratio = fps_b / fps_a if fps_a else float("nan")
    overhead = 100.0 * (1.0 - ratio)
    frames = {r.frames for r in local + remote}
    return {
        "frames_match": len(frames) == 1,  # every run on both paths produced the same number of frames
        "frames_identical": len({r.digest for r in local + remote}) == 1 if raw else None,  # RAW_RGB only
        "throughput_ratio": round(ratio, 4),
        "overhead_percent": round(overhead, 2),
        "first_frame_delta_s": None if ttff_a is None or ttff_b is None else round(ttff_b - ttff_a, 3),
        "cpu_overhead_percent": None if not cpu_a or cpu_b is None else round(100.0 * (cpu_b / cpu_a - 1.0), 2),
        "target_overhead_percent": TARGET_OVERHEAD_PERCENT,
        "meets_target": overhead <= TARGET_OVERHEAD_PERCENT,
    }
