"""The checkpoint benchmark's settings and its one run (what it reports: ``bench/checkpoint/__init__.py``)."""

from __future__ import annotations

import asyncio
import os
import platform
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import torch

from bench.checkpoint.common import load_average, redis_pid
from bench.checkpoint.sessions import (
    KILL_AFTER_CHECKPOINTS,
    WARMUP_SECONDS,
    Generator,
    Inputs,
    Peers,
    Run,
    enter_concurrently,
    generator_process,
    kill_and_resume,
    slowdown,
    summarise,
    timed_session,
    warm_up,
)
from bench.checkpoint.sizes import checkpoint_figures, liveact_18b_state
from bench.checkpoint.store_timing import bench_info, time_store
from bench.pipeline import FORMATS, IMAGE, VIDEO_FPS, load_speech
from liveact.audio.config import AudioConfig
from liveact.config import get_preset
from liveact.launch import redis_process, service_process
from liveact.state.store import Checkpoint
from liveact.weight_files import builtin_dir
from services.generator.checkpoint import CheckpointPolicy

MIN_RESUME_SECONDS = 6.0  # the killed session must still have chunks to go after its second checkpoint
TARGET_SLOWDOWN_PERCENT = 3.0


@dataclass(frozen=True)
class CheckpointBench:
    """One run's settings (``liveact bench checkpoint --help`` explains each)."""

    preset: str = "tiny"
    seconds: float = 10.0  # of speech per timed session
    width: int | None = None  # None: the preset's
    height: int | None = None
    output_format: str = "JPEG"
    repeats: int = 5  # timed sessions per generator, interleaved
    every_chunks: int = 1  # the 'on' generator's --checkpoint-every-chunks
    default_policy: bool = True  # also a generator with the default policy
    realtime_repeats: int = 5  # sessions at real-time pace per generator ('on' and 'off'), interleaved
    resume_seconds: float = 8.0  # of speech in the killed and resumed session
    store_repeats: int = 7  # write/read pairs of the store timing

    def problems(self) -> list[str]:
        out = []
        if not self.seconds > 0:
            out.append(f"--seconds must be positive, got {self.seconds}")
        if self.repeats < 1 or self.store_repeats < 1 or self.realtime_repeats < 0:
            out.append(
                f"--repeats and --store-repeats must be >= 1 and --realtime-repeats >= 0, "
                f"got {self.repeats}, {self.store_repeats}, {self.realtime_repeats}"
            )
        if self.every_chunks < 1:
            out.append(f"--every-chunks must be >= 1, got {self.every_chunks}")
        if self.resume_seconds < MIN_RESUME_SECONDS:
            out.append(f"--resume-seconds must be >= {MIN_RESUME_SECONDS} (the session is killed after its "
                       f"{KILL_AFTER_CHECKPOINTS}th checkpoint), got {self.resume_seconds}")  # fmt: skip
        if self.output_format.upper() not in FORMATS:
            out.append(f"--format must be one of {sorted(FORMATS)}, got {self.output_format!r}")
        return out


@dataclass
class SessionFigures:
    """What the sessions through the services measured (the store timing needs the checkpoint)."""

    runs: dict[str, list[Run]]  # per generator ('on', 'off', 'on_default'): timed sessions
    paced: dict[str, list[Run]]  # per generator ('on', 'off'): real-time sessions
    resume: dict
    checkpoint: Checkpoint


def run(bench: CheckpointBench) -> dict:
    if problems := bench.problems():
        raise ValueError("; ".join(problems))
    config = get_preset(bench.preset)
    width, height = bench.width or config.width, bench.height or config.height
    rate = AudioConfig.for_model(config.model).sample_rate
    fmt_name = bench.output_format.upper()
    inputs = Inputs(IMAGE.read_bytes(), rate, FORMATS[fmt_name], width, height)
    pcm = load_speech(bench.seconds, rate)
    load_before = load_average()

    modes: list[tuple[str, int | None]] = [("on", bench.every_chunks), ("off", None)]
    if bench.default_policy:
        modes.append(("on_default", CheckpointPolicy().every_chunks))
    every = dict(modes)
    measured = measure_sessions(bench, inputs, pcm, modes)
    with redis_process() as store_url:
        shards = [dict(s) for s in measured.checkpoint.shards]
        info = bench_info(bench.preset, width, height)
        store = asyncio.run(time_store(store_url, info, measured.checkpoint.meta, shards, bench.store_repeats))

    summaries = {name: summarise(config, measured.runs[name], every[name]) for name, _ in modes}
    on, off = summaries["on"], summaries["off"]
    result = {
        "benchmark": "checkpoint",
        "preset": bench.preset,
        "trained_weights": builtin_dir(bench.preset) is not None,
        "size": f"{width}x{height}",
        "format": fmt_name,
        "audio_seconds": round(len(pcm) / rate, 3),
        "video_fps": VIDEO_FPS,
        "repeats": bench.repeats,
        "realtime_repeats": bench.realtime_repeats,
        "machine": machine(load_before),
        "checkpoint": checkpoint_figures(config, width, height, measured.checkpoint, store),
        "fps_checkpoints_on": on,
        "fps_checkpoints_off": off,
    }
    if bench.default_policy:
        result["fps_checkpoints_on_default"] = summaries["on_default"]
    figures = slowdown(on, off)
    result |= figures
    if bench.default_policy:
        result["slowdown_percent_default"] = slowdown(summaries["on_default"], off)["slowdown_percent"]
    result["target_slowdown_percent"] = TARGET_SLOWDOWN_PERCENT
    result["meets_target"] = figures["slowdown_percent"] is not None and (
        figures["slowdown_percent"] <= TARGET_SLOWDOWN_PERCENT
    )
    if bench.realtime_repeats:
        rt_on, rt_off = (summarise(config, measured.paced[name], every[name]) for name in ("on", "off"))
        result["realtime_checkpoints_on"] = rt_on
        result["realtime_checkpoints_off"] = rt_off
        result["realtime_cpu_overhead_percent"] = slowdown(rt_on, rt_off)["cpu_overhead_percent"]
    result["resume"] = measured.resume | {"fresh_session_time_to_first_chunk_s": off["time_to_first_chunk_s"]}
    result["liveact_18b_state"] = liveact_18b_state()
    result["machine"]["load_average_after"] = load_average()
    return result


def measure_sessions(
    bench: CheckpointBench, inputs: Inputs, pcm: np.ndarray, modes: list[tuple[str, int | None]]
) -> SessionFigures:
    """One Redis, one encoder and decoder, a generator per mode and a victim: timed sessions (interleaved),
    real-time sessions, then the victim's session killed with SIGKILL and resumed EXACT on 'on'."""
    config = get_preset(bench.preset)
    warm = pcm[: round(min(bench.seconds, WARMUP_SECONDS) * inputs.rate)]
    live = load_speech(bench.resume_seconds, inputs.rate)
    paced_modes = ("on", "off") if bench.realtime_repeats else ()
    runs: dict[str, list[Run]] = {name: [] for name, _ in modes}
    paced: dict[str, list[Run]] = {name: [] for name in paced_modes}
    with ExitStack() as stack:
        url = stack.enter_context(redis_process())
        encoder = service_process("audio-encoder", "--preset", bench.preset)
        decoder = service_process("decoder", "--vae-preset", config.vae)
        (enc, enc_proc), (dec, dec_proc) = enter_concurrently(stack, [encoder, decoder])
        durable = ("--redis-url", url)
        specs = [(name, () if n is None else (*durable, "--checkpoint-every-chunks", str(n))) for name, n in modes]
        specs.append(("victim", (*durable, "--checkpoint-every-chunks", str(bench.every_chunks))))
        processes = [generator_process(bench.preset, enc, dec, *extra) for _, extra in specs]
        started = enter_concurrently(stack, processes)
        gens = {name: Generator(name, target, proc) for (name, _), (target, proc) in zip(specs, started, strict=True)}
        peers = Peers(enc_proc.pid, dec_proc.pid, redis_pid(url))

        for name, _ in modes:
            asyncio.run(warm_up(gens[name], inputs, warm))
        for _ in range(bench.repeats):
            for name, _ in modes:
                runs[name].append(timed_session(gens[name], peers, inputs, pcm))
        for _ in range(bench.realtime_repeats):
            for name in paced_modes:
                paced[name].append(timed_session(gens[name], peers, inputs, pcm, realtime=True))
        resume, checkpoint = asyncio.run(kill_and_resume(gens["victim"], gens["on"], url, inputs, live))
    return SessionFigures(runs, paced, resume, checkpoint)


def machine(load_before: list[float] | None) -> dict:
    """Where the figures were taken (the machine is small and shared: compare runs under the same load)."""
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load_before,  # 1, 5, 15 min
        "load_average_after": None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
