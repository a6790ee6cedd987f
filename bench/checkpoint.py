"""Durable-session costs: checkpoint size and Redis speed, throughput with checkpoints on, resume time.

One run; what it reports:

* ``checkpoint``: one real session checkpoint of ``preset`` at its default size. A session with
  ``examples/face.png`` and the first ``resume_seconds`` of ``examples/speech.wav``, sent at
  real-time pace (so the checkpoint holds what a live session's does: the encoder stream's state and
  only the rows received so far), runs on a generator that checkpoints every ``every_chunks``; its newest
  checkpoint is read back from Redis once the generator has been killed (below). ``bytes`` sums the
  tensors' bytes by name prefix: ``dit.memory.*`` K/V (``dit_memory``), ``dit.cond.*``
  (``conditioning``), ``audio.rows``, ``encoder.state``, ``decoder.state``, and ``other`` (RNG state
  and the chunk counter). ``stored_bytes`` is what Redis holds (safetensors blobs with headers).
  ``write_ms`` / ``read_ms`` are medians of ``store_repeats`` interleaved ``SessionStore.write_checkpoint``
  / ``read_checkpoint`` calls with those tensors against a second private ``redis-server``
  (``liveact.launch.redis_process``), nothing else running on it; ``*_cpu_ms`` add this
  process's and redis-server's CPU time. ``computed`` repeats the DiT parts from the config
  (``liveact.memory.sizing`` and the conditioning shapes below) as a check of the 18B figures.
* ``fps_checkpoints_on`` / ``fps_checkpoints_off``: generation throughput through the three services
  for the first ``seconds`` of the speech, sent as fast as possible, on a generator with
  ``--checkpoint-every-chunks every_chunks`` (1: the worst case) and on one without Redis; with
  ``default_policy`` also on one with the generator's default policy (``fps_checkpoints_on_default``).
  All generators share one audio encoder and one decoder and are started once; sessions run one at a
  time, interleaved (on, off, default, on, off, ...), each generator warmed up with one short session
  first; medians are reported. ``cpu_ms_per_frame`` counts this process, the encoder, the decoder,
  the generator in use and redis-server (from ``/proc``). ``slowdown_percent`` =
  100 * (1 - fps on / fps off); the target (``target_slowdown_percent``) is reported as
  ``meets_target``, never asserted. ``checkpoints_per_session`` counts the CheckpointNotices a
  session received: a checkpoint due while the previous one is still being written is skipped, and
  with a client faster than real time the DiT runs up to ``--chunk-queue`` chunks ahead of the
  decoder, whose in-band marker a checkpoint waits for, so far fewer checkpoints than chunks are
  written; compare ``chunks_per_session``.
* ``realtime_checkpoints_on`` / ``_off`` (``realtime_repeats`` > 0): the same audio sent at real-time
  pace to the 'on' and 'off' generators, interleaved. Throughput is then the audio's, so the figure
  is ``cpu_ms_per_frame`` and ``realtime_cpu_overhead_percent``: the CPU a live session's
  checkpoints cost.
* ``resume`` (scenario ``sigkill_mid_session``): the real-time session above is on a generator of
  its own; once it has received ``KILL_AFTER_CHECKPOINTS`` CheckpointNotices that generator is sent
  SIGKILL. An EXACT ``ResumeRequest`` with ``next_frame`` = the newest stored checkpoint's goes to
  the every-chunk generator (same Redis, encoder and decoder), the client sending the rest of the
  audio as fast as possible. Reported: seconds from opening the stream to the first FrameChunk and
  to the end of the stream (SessionEnd), once (not a median: one kill per run).
* ``liveact_18b_state``: computed, not measured: the per-session checkpoint of ``liveact-18b`` at
  416x720 and 512x512, bf16 and fp8 K/V, tensor parallel 1, 2 and 4. The K/V part comes from
  ``liveact.memory.sizing.session_state`` (persistent slots only, K and V, fp8 with one fp32 scale per
  token and head) and is split across ranks by heads; conditioning (``y`` and the embedded text+CLIP
  ``context``, model dtype bf16) and the audio rows (at most ``ROWS_KEPT`` float32 rows) are per
  session, counted once (on rank 0). The decoder's VAE-cache state is NOT in these totals: for the
  wan2.1 VAE with the current streaming decoder it is GB-scale and an open design problem; its size
  is estimated separately by running the wan2.1 ``StreamingDecoder`` on the meta device (no memory,
  no compute). The audio encoder's state (PCM history, about 0.1 MB) is not included either.

The machine is small and shared: ``machine`` records load averages before and after; compare
figures taken under the same load, and the CPU figures before the wall-clock ones.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import secrets
import signal
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import TypeVar

import grpc
import numpy as np
import redis
import torch

from bench.pipeline import CHUNK_MS, FORMATS, IMAGE, VIDEO_FPS, CpuClock, load_speech
from liveact.audio.config import AudioConfig
from liveact.audio.frames import frame_count
from liveact.client import animate
from liveact.client.animate import AnimateResult
from liveact.config import LiveActConfig, get_preset
from liveact.launch import redis_process, service_process
from liveact.memory import sizing
from liveact.pipeline import chunks_needed
from liveact.state.keys import SessionKeys
from liveact.state.schema import (
    AUDIO_ROWS,
    COND,
    COND_CONTEXT,
    COND_NULL_AUDIO,
    COND_Y,
    DECODER_STATE,
    DIT,
    ENCODER_STATE,
    MEMORY,
    MEMORY_KV_SUFFIXES,
    CheckpointMeta,
    Manifest,
    SessionInfo,
)
from liveact.state.settings import DEFAULT_PART_BYTES, StoreSettings
from liveact.state.store import Checkpoint, SessionStore
from liveact.v1 import generator_pb2
from liveact.vae.config import get_vae_preset
from liveact.vae.loading import build_vae
from liveact.vae.streaming import StreamingDecoder
from liveact.weight_files import builtin_dir
from services.generator.checkpoint import CheckpointPolicy
from services.generator.scheduler import ROWS_KEPT

WARMUP_SECONDS = 2.0  # per generator: a first (21-frame) and a later chunk, and a checkpoint
KILL_AFTER_CHECKPOINTS = 2  # the killed session has received this many CheckpointNotices
MIN_RESUME_SECONDS = 6.0  # the killed session must still have chunks to go after its second checkpoint
TARGET_SLOWDOWN_PERCENT = 3.0
POLL_S = 0.01
SESSION_TIMEOUT_BASE_S = 120.0
SESSION_TIMEOUT_PER_AUDIO_S = 20.0
BENCH_KEY_PREFIX = "bench"  # keys of the store timing, apart from the generators' ("liveact")
BENCH_OWNER = "bench-checkpoint"
MB = 1_000_000

# checkpoint parts by tensor name (liveact.state.schema)
MEMORY_PREFIX = DIT + MEMORY
COND_PREFIX = DIT + COND
PARTS = ("dit_memory", "conditioning", "audio_rows", "encoder_state", "decoder_state", "other")

# the computed liveact-18b figures
PRESET_18B = "liveact-18b"
SIZES_18B = ((416, 720), (512, 512))
KV_DTYPES_18B = ("bf16", "fp8")
TP_18B = (1, 2, 4)
MODEL_DTYPE_18B = "bf16"  # y and context are kept in the model's dtype
ROW_BYTES = 4  # audio feature rows are float32
DECODER_STATE_DTYPE = torch.float32  # the decoder service runs the VAE in float32
TORCH_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float8_e4m3fn: "fp8"}


T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    frames: int
    seconds: float  # opening the stream to its end
    first_chunk_s: float | None  # opening the stream to the first FrameChunk
    cpu_seconds: float | None
    checkpoints: int  # CheckpointNotices received

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Inputs:
    """What every session sends besides its audio."""

    image: bytes
    rate: int  # audio sample rate
    fmt: int  # common_pb2 output format
    width: int
    height: int


@dataclass(frozen=True)
class Generator:
    name: str
    target: str
    proc: subprocess.Popen


# -- helpers -----------------------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000.0 * seconds, 3)


def _load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _rate(nbytes: int, seconds: float | None) -> float | None:
    """Megabytes (10^6 bytes) per second."""
    return None if not seconds else round(nbytes / seconds / MB, 1)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _redis_pid(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def _session_timeout(pcm: np.ndarray, rate: int) -> float:
    return SESSION_TIMEOUT_BASE_S + SESSION_TIMEOUT_PER_AUDIO_S * len(pcm) / rate


def part_of(name: str) -> str:
    """Which checkpoint part a stored tensor belongs to (see ``PARTS``)."""
    if name.startswith(MEMORY_PREFIX) and name.endswith(MEMORY_KV_SUFFIXES):
        return "dit_memory"
    if name.startswith(COND_PREFIX):
        return "conditioning"
    return {AUDIO_ROWS: "audio_rows", ENCODER_STATE: "encoder_state", DECODER_STATE: "decoder_state"}.get(name, "other")


def part_bytes(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    out = dict.fromkeys(PARTS, 0)
    for name, t in tensors.items():
        out[part_of(name)] += _nbytes(t)
    return {"total": sum(out.values()), **out}


# -- computed sizes ----------------------------------------------------------------------------------


def conditioning_bytes(config: LiveActConfig, width: int, height: int, dtype_bytes: int) -> dict[str, int]:
    """``cond.y`` (1, cond_channels, window latent frames, h, w) and ``cond.context`` (1, clip + text tokens, dim)."""
    m, mem = config.model, config.memory
    stride = get_vae_preset(config.vae).spatial_stride
    y = m.cond_channels * mem.window_latent_frames * (height // stride) * (width // stride) * dtype_bytes
    context = (m.clip_tokens + m.text_len) * m.dim * dtype_bytes
    return {"y": y, "context": context}


def audio_row_bytes(config: LiveActConfig) -> int:
    return config.model.audio_layers * config.model.audio_channels * ROW_BYTES


def decoder_state_estimate(vae_name: str, config: LiveActConfig, width: int, height: int) -> int:
    """Tensor bytes of the decoder stream's VAE cache after chunks 0 and 1, from a meta-device run."""
    vae_cfg = get_vae_preset(vae_name)
    decoder = StreamingDecoder(build_vae(vae_cfg, device="meta"), vae_cfg)
    h, w = height // vae_cfg.spatial_stride, width // vae_cfg.spatial_stride
    state = None
    for chunk in (0, 1):
        frames = config.memory.chunk_latent_frames(chunk)
        latents = torch.zeros(1, vae_cfg.z_dim, frames, h, w, device="meta", dtype=DECODER_STATE_DTYPE)
        _, state = decoder.decode(latents, state)
    assert state is not None
    return state.nbytes()


def liveact_18b_state() -> dict:
    config = get_preset(PRESET_18B)
    dtype_bytes = sizing.BYTES[MODEL_DTYPE_18B]
    rows = ROWS_KEPT * audio_row_bytes(config)
    cases = []
    for width, height in SIZES_18B:
        cond = conditioning_bytes(config, width, height, dtype_bytes)
        for kv_dtype in KV_DTYPES_18B:
            for tp in TP_18B:
                s = sizing.session_state(config, width, height, kv_dtype=kv_dtype, tp=tp)
                per_session = cond["y"] + cond["context"] + rows
                rank0 = s.per_rank_checkpoint_bytes + per_session
                cases.append(
                    {
                        "size": f"{width}x{height}",
                        "kv_dtype": kv_dtype,
                        "tp": tp,
                        "frame_tokens": s.frame_tokens,
                        "dit_memory_bytes_per_rank": s.per_rank_checkpoint_bytes,
                        "dit_memory_bytes_all_ranks": s.checkpoint_cache_bytes,
                        "conditioning_y_bytes": cond["y"],
                        "conditioning_context_bytes": cond["context"],
                        "audio_rows_max_bytes": rows,
                        "rank0_bytes": rank0,  # its K/V share + the per-session parts
                        "total_bytes": s.checkpoint_cache_bytes + per_session,
                        "redis_parts_per_rank0": math.ceil(rank0 / DEFAULT_PART_BYTES),
                    }
                )
    decoder = {
        f"{w}x{h}": decoder_state_estimate(config.vae, config, w, h) for w, h in SIZES_18B
    }  # fmt: skip
    w0, h0 = SIZES_18B[0]
    m, mem, sc = config.model, config.memory, config.sampler
    return {
        "computed": True,
        "model_dtype": MODEL_DTYPE_18B,
        "persistent_slots": mem.persistent_slots,
        "total_slots": mem.total_slots,
        "caches": sc.num_steps + len(sc.cfg_steps()),  # one per denoising step (+ null-audio steps with CFG)
        "layers": m.num_layers,
        "kv_width": m.dim,
        "fp8_scale_bytes_per_token_head": sizing.SCALE_BYTES,
        "audio_rows_max": ROWS_KEPT,
        "audio_row_bytes": audio_row_bytes(config),
        "redis_part_bytes": DEFAULT_PART_BYTES,
        "cases": cases,
        "included": "dit_memory (K/V of the persistent slots, per rank), conditioning y + context (once), "
        f"audio rows (upper bound: {ROWS_KEPT} rows, once)",
        "not_included": "the decoder stream's VAE cache (see decoder_stream_state_estimate_bytes: GB-scale for "
        "wan2.1 with the current streaming decoder, an open design problem), the audio encoder stream's state "
        "(wav2vec2 PCM history, about 0.1 MB), the RNG state and counters (a few KB)",
        "decoder_stream_state_included": False,
        "decoder_stream_state_estimate_bytes": decoder,
        "decoder_stream_state_dtype": TORCH_DTYPE_NAMES[DECODER_STATE_DTYPE],
        "decoder_stream_state_bytes_per_output_pixel": round(decoder[f"{w0}x{h0}"] / (w0 * h0), 1),
        "decoder_stream_state_how": "wan2.1 StreamingDecoder on the meta device after chunks 0 and 1 (tensor bytes)",
        "decoder_context_alternative_bytes": {
            f"{w}x{h}": sizing.session_state(config, w, h).decoder_context_bytes for w, h in SIZES_18B
        },  # the public decode_with_context keeps only the last 3 clean latents (bf16)
        "note": "sizing's conditioning_bytes counts the raw text/CLIP encoder outputs; a checkpoint stores the "
        "embedded context ((clip_tokens + text_len) x dim), which is what is counted here",
    }


# -- sessions ----------------------------------------------------------------------------------------


async def session(
    gen: Generator,
    inputs: Inputs,
    pcm: np.ndarray,
    *,
    realtime: bool = False,
    result: AnimateResult | None = None,
    resume: generator_pb2.ResumeRequest | None = None,
) -> tuple[AnimateResult, float | None]:
    """One Animate stream; (result, seconds from opening it to the first FrameChunk)."""
    t0 = time.perf_counter()
    first: list[float] = []

    def on_chunk(_: generator_pb2.FrameChunk) -> None:
        if not first:
            first.append(time.perf_counter() - t0)

    result = await animate(
        gen.target, inputs.image, pcm, inputs.rate, fps=VIDEO_FPS, output_format=inputs.fmt, width=inputs.width,
        height=inputs.height, chunk_ms=CHUNK_MS, realtime=realtime, on_chunk=on_chunk,
        timeout_s=_session_timeout(pcm, inputs.rate), resume=resume, result=result,
    )  # fmt: skip
    return result, first[0] if first else None


def timed_session(gen: Generator, pids: list[int], inputs: Inputs, pcm: np.ndarray, realtime: bool = False) -> Run:
    clock = CpuClock([*pids, gen.proc.pid])
    c0 = clock.read()
    result, first = asyncio.run(session(gen, inputs, pcm, realtime=realtime))
    c1 = clock.read()
    if result.end is None or result.end.frames != result.frame_count:
        raise RuntimeError(f"the session on {gen.name} ended without a complete SessionEnd: {result.end}")
    cpu = None if c0 is None or c1 is None else c1 - c0
    return Run(result.frame_count, result.seconds, first, cpu, len(result.checkpoints))


async def warm_up(gen: Generator, inputs: Inputs, pcm: np.ndarray) -> None:
    """One short session; on a checkpointing generator also a resume of it (loads the resume path)."""
    done, _ = await session(gen, inputs, pcm)
    if done.checkpoints:
        last = done.checkpoints[-1]
        request = generator_pb2.ResumeRequest(
            session_id=last.session_id, resume_secret=last.resume_secret, next_frame=last.next_frame,
            mode=generator_pb2.ResumeRequest.EXACT,
        )  # fmt: skip
        await session(gen, inputs, pcm, resume=request)


async def kill_and_resume(
    victim: Generator, target: Generator, redis_url: str, inputs: Inputs, pcm: np.ndarray
) -> tuple[dict, Checkpoint]:
    """A real-time session on ``victim``, SIGKILLed after a checkpoint; resumed EXACT on ``target``."""
    first = AnimateResult()
    task = asyncio.ensure_future(session(victim, inputs, pcm, realtime=True, result=first))
    while len(first.checkpoints) < KILL_AFTER_CHECKPOINTS and not task.done():
        await asyncio.sleep(POLL_S)
    if task.done():
        task.result()  # raises the session's error, if it failed
        raise RuntimeError(
            f"the session ended before its {KILL_AFTER_CHECKPOINTS}th checkpoint: use a longer --resume-seconds"
        )
    os.kill(victim.proc.pid, signal.SIGKILL)
    received = first.frame_count
    try:
        await task
    except grpc.aio.AioRpcError:
        pass  # the connection to the killed generator is gone, as expected
    else:
        raise RuntimeError("the killed generator's session ended normally")
    await asyncio.to_thread(victim.proc.wait)
    sid, secret = first.header.session_id, first.header.resume_secret

    store = SessionStore(StoreSettings(url=redis_url))
    try:
        checkpoint = await store.read_checkpoint(sid)
    finally:
        await store.close()
    next_frame = checkpoint.meta.next_frame
    request = generator_pb2.ResumeRequest(
        session_id=sid, resume_secret=secret, next_frame=next_frame, mode=generator_pb2.ResumeRequest.EXACT
    )
    total = frame_count(len(pcm), inputs.rate, VIDEO_FPS)
    if next_frame >= total:
        raise RuntimeError(f"the newest checkpoint starts at frame {next_frame} of {total}: longer --resume-seconds")
    second, first_chunk = await session(target, inputs, pcm, resume=request)
    figures = {
        "scenario": "sigkill_mid_session",
        "how": f"a real-time session's generator got SIGKILL after {KILL_AFTER_CHECKPOINTS} CheckpointNotices; "
        "EXACT ResumeRequest (next_frame = the newest stored checkpoint's) on another generator sharing Redis, "
        "encoder and decoder; the rest of the audio sent as fast as possible",
        "audio_seconds": round(len(pcm) / inputs.rate, 3),
        "frames_received_before_kill": received,
        "checkpoint_version": checkpoint.version,
        "next_frame": next_frame,
        "next_audio_seq": second.header.next_audio_seq if second.header is not None else None,
        "time_to_first_chunk_s": _round(first_chunk, 3),
        "time_to_session_end_s": round(second.seconds, 3),
        "frames_after_resume": second.frame_count,
        "frames_complete": second.end is not None and next_frame + second.frame_count == total,
    }
    return figures, checkpoint


# -- checkpoint store timing -------------------------------------------------------------------------


def bench_info(preset: str, width: int, height: int) -> SessionInfo:
    """The record of the store timing's session (its contents do not change the timing)."""
    return SessionInfo(
        preset=preset, fps=VIDEO_FPS, width=width, height=height, seed=0, output_format=0, jpeg_quality=0,
        prompt="", audio_encoding=0, audio_sample_rate=0, audio_channels=0, decode_mode="context",
    )  # fmt: skip


async def time_store(
    url: str, info: SessionInfo, meta: CheckpointMeta, shards: list[dict[str, torch.Tensor]], repeats: int
) -> dict:
    """Interleaved write_checkpoint / read_checkpoint calls with ``shards`` on an otherwise idle Redis."""
    store = SessionStore(StoreSettings(url=url, key_prefix=BENCH_KEY_PREFIX))
    clock = CpuClock([_redis_pid(url)])
    sid = f"bench-{secrets.token_hex(8)}"
    writes: list[tuple[float, float | None]] = []
    reads: list[tuple[float, float | None]] = []

    async def timed(op) -> tuple[float, float | None]:
        c0, t0 = clock.read(), time.perf_counter()
        await op()
        seconds, c1 = time.perf_counter() - t0, clock.read()
        return seconds, None if c0 is None or c1 is None else c1 - c0

    try:
        await store.create_session(sid, secrets.token_hex(16), info)
        lease = await store.acquire(sid, BENCH_OWNER)
        for _ in range(repeats):
            writes.append(await timed(lambda: store.write_checkpoint(lease, meta, shards)))
            reads.append(await timed(lambda: store.read_checkpoint(sid)))
        keys = SessionKeys(BENCH_KEY_PREFIX, sid)
        raw_manifest = (await store.client.lrange(keys.history, 0, 0))[0]
        manifest = Manifest.from_json(json.loads(raw_manifest))
        parts = [p.bytes for rank in manifest.shards for p in rank]
        session_keys = [k async for k in store.client.scan_iter(match=f"*{sid}*")]
        await store.delete_session(sid)
    finally:
        await store.close()
    return {
        "write_ms": _ms(_median([s for s, _ in writes])),
        "read_ms": _ms(_median([s for s, _ in reads])),
        "write_cpu_ms": _ms(_median([c for _, c in writes])),
        "read_cpu_ms": _ms(_median([c for _, c in reads])),
        "store_repeats": repeats,
        "write_ms_runs": [_ms(s) for s, _ in writes],
        "read_ms_runs": [_ms(s) for s, _ in reads],
        "stored_bytes": sum(parts),
        "write_mb_per_s": _rate(sum(parts), _median([s for s, _ in writes])),
        "read_mb_per_s": _rate(sum(parts), _median([s for s, _ in reads])),
        "redis_part_values": len(parts),
        "redis_values_per_checkpoint": len(parts) + 1,  # the parts + the manifest (an entry of the history list)
        "largest_value_bytes": max(parts),
        "manifest_bytes": len(raw_manifest),
        "part_bytes_limit": store.settings.part_bytes,
        "session_keys_in_redis": len(session_keys),  # small keys + parts of the versions kept
    }


def checkpoint_figures(config: LiveActConfig, width: int, height: int, checkpoint: Checkpoint, store: dict) -> dict:
    shard = checkpoint.shards[0]
    measured = part_bytes(shard)
    kv = shard[f"{MEMORY_PREFIX}step0.layer0.k"]
    kv_dtype = TORCH_DTYPE_NAMES[kv.dtype]
    model_dtype = shard[DIT + COND_Y].dtype
    cond = conditioning_bytes(config, width, height, model_dtype.itemsize)
    computed = {
        "dit_memory": sizing.session_state(config, width, height, kv_dtype=kv_dtype).checkpoint_cache_bytes,
        "conditioning": cond["y"] + cond["context"],
        "decoder_state_estimate": decoder_state_estimate(config.vae, config, width, height),
    }
    rows = shard[AUDIO_ROWS]
    return {
        "source": "newest checkpoint of the killed real-time session (see resume), read back from Redis",
        "version": checkpoint.version,
        "chunk_index": checkpoint.meta.chunk_index,
        "next_frame": checkpoint.meta.next_frame,
        "kv_dtype": kv_dtype,
        "model_dtype": TORCH_DTYPE_NAMES.get(model_dtype, str(model_dtype)),
        "bytes": measured,
        "tensors": len(shard),
        "audio_rows": int(rows.shape[0]) if rows.dim() == 3 else 0,
        "has_encoder_state": shard[ENCODER_STATE].numel() > 0,
        "has_null_audio": DIT + COND_NULL_AUDIO in shard,
        "computed": computed,
        "computed_matches_measured": {
            "dit_memory": computed["dit_memory"] == measured["dit_memory"],
            "conditioning": computed["conditioning"]
            == _nbytes(shard[DIT + COND_Y]) + _nbytes(shard[DIT + COND_CONTEXT]),
        },
        **store,
    }


# -- throughput --------------------------------------------------------------------------------------


def summarise(config: LiveActConfig, runs: list[Run], every_chunks: int | None) -> dict:
    fps = _median([r.fps for r in runs])
    cpu = _median([r.cpu_seconds / r.frames if r.cpu_seconds is not None and r.frames else None for r in runs])
    return {
        "every_chunks": every_chunks,  # None: no Redis, no checkpoints
        "frames": runs[0].frames,
        "fps": _round(fps, 2),
        "seconds": round(statistics.median(r.seconds for r in runs), 3),
        "time_to_first_chunk_s": _round(_median([r.first_chunk_s for r in runs]), 3),
        "cpu_ms_per_frame": _round(None if cpu is None else 1000.0 * cpu, 2),
        "chunks_per_session": chunks_needed(config, runs[0].frames),
        "checkpoints_per_session": _median([r.checkpoints for r in runs]),
        "runs": [
            {
                "fps": round(r.fps, 2),
                "seconds": round(r.seconds, 3),
                "cpu_seconds": _round(r.cpu_seconds, 3),
                "checkpoints": r.checkpoints,
            }
            for r in runs
        ],
    }


def slowdown(on: dict, off: dict) -> dict:
    pct = None if not off["fps"] or on["fps"] is None else round(100.0 * (1.0 - on["fps"] / off["fps"]), 2)
    cpu = None
    if off["cpu_ms_per_frame"] and on["cpu_ms_per_frame"] is not None:
        cpu = round(100.0 * (on["cpu_ms_per_frame"] / off["cpu_ms_per_frame"] - 1.0), 2)
    return {"slowdown_percent": pct, "cpu_overhead_percent": cpu}


# -- the run -----------------------------------------------------------------------------------------


def enter_concurrently(stack: ExitStack, managers: Sequence[AbstractContextManager[T]]) -> list[T]:
    """Enter ``managers`` at once (services load their models in parallel); their exits go on ``stack``.

    If any fails, the ones that started are left on ``stack`` (stopped when it unwinds) and the
    first error is raised.
    """
    with ThreadPoolExecutor(max_workers=len(managers)) as pool:
        futures = [pool.submit(m.__enter__) for m in managers]
        wait(futures)
    values: list[T] = []
    for manager, future in zip(managers, futures, strict=True):
        if future.exception() is None:
            stack.push(manager)
            values.append(future.result())
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    return values


def generator_process(preset: str, enc: str, dec: str, *extra: str) -> AbstractContextManager:
    return service_process(
        "generator", "--preset", preset, "--max-sessions", "1", "--audio-encoder", enc, "--decoder", dec, *extra
    )


def run(
    preset: str = "tiny",
    seconds: float = 10.0,
    width: int | None = None,
    height: int | None = None,
    output_format: str = "JPEG",
    repeats: int = 5,
    every_chunks: int = 1,
    default_policy: bool = True,
    realtime_repeats: int = 3,
    resume_seconds: float = 8.0,
    store_repeats: int = 7,
) -> dict:
    if not seconds > 0:
        raise ValueError(f"--seconds must be positive, got {seconds}")
    if repeats < 1 or store_repeats < 1 or realtime_repeats < 0:
        raise ValueError(
            f"--repeats and --store-repeats must be >= 1 and --realtime-repeats >= 0, "
            f"got {repeats}, {store_repeats}, {realtime_repeats}"
        )
    if every_chunks < 1:
        raise ValueError(f"--every-chunks must be >= 1, got {every_chunks}")
    if resume_seconds < MIN_RESUME_SECONDS:
        raise ValueError(f"--resume-seconds must be >= {MIN_RESUME_SECONDS} (the session is killed after its "
                         f"{KILL_AFTER_CHECKPOINTS}th checkpoint), got {resume_seconds}")  # fmt: skip
    fmt_name = output_format.upper()
    if fmt_name not in FORMATS:
        raise ValueError(f"--format must be one of {sorted(FORMATS)}, got {output_format!r}")
    config = get_preset(preset)
    width, height = width or config.width, height or config.height
    rate = AudioConfig.for_model(config.model).sample_rate
    inputs = Inputs(IMAGE.read_bytes(), rate, FORMATS[fmt_name], width, height)
    pcm = load_speech(seconds, rate)
    warm = pcm[: round(min(seconds, WARMUP_SECONDS) * rate)]
    live = load_speech(resume_seconds, rate)
    load_before = _load_average()

    modes: list[tuple[str, int | None]] = [("on", every_chunks), ("off", None)]
    if default_policy:
        modes.append(("on_default", CheckpointPolicy().every_chunks))
    every = dict(modes)
    paced_modes = ("on", "off") if realtime_repeats else ()
    runs: dict[str, list[Run]] = {name: [] for name, _ in modes}
    paced: dict[str, list[Run]] = {name: [] for name in paced_modes}

    with ExitStack() as stack:
        url = stack.enter_context(redis_process())
        encoder = service_process("audio-encoder", "--preset", preset)
        decoder = service_process("decoder", "--vae-preset", config.vae)
        (enc, enc_proc), (dec, dec_proc) = enter_concurrently(stack, [encoder, decoder])
        durable = ("--redis-url", url)
        specs = [(name, () if n is None else (*durable, "--checkpoint-every-chunks", str(n))) for name, n in modes]
        specs.append(("victim", (*durable, "--checkpoint-every-chunks", str(every_chunks))))
        started = enter_concurrently(stack, [generator_process(preset, enc, dec, *extra) for _, extra in specs])
        gens = {name: Generator(name, target, proc) for (name, _), (target, proc) in zip(specs, started, strict=True)}
        pids = [enc_proc.pid, dec_proc.pid, _redis_pid(url)]

        for name, _ in modes:
            asyncio.run(warm_up(gens[name], inputs, warm))
        for _ in range(repeats):
            for name, _ in modes:
                runs[name].append(timed_session(gens[name], pids, inputs, pcm))
        for _ in range(realtime_repeats):
            for name in paced_modes:
                paced[name].append(timed_session(gens[name], pids, inputs, pcm, realtime=True))
        resume, checkpoint = asyncio.run(kill_and_resume(gens["victim"], gens["on"], url, inputs, live))

    with redis_process() as store_url:
        shards = [dict(s) for s in checkpoint.shards]
        info = bench_info(preset, width, height)
        store = asyncio.run(time_store(store_url, info, checkpoint.meta, shards, store_repeats))

    summaries = {name: summarise(config, runs[name], every[name]) for name, _ in modes}
    on, off = summaries["on"], summaries["off"]
    result = {
        "benchmark": "checkpoint",
        "preset": preset,
        "trained_weights": builtin_dir(preset) is not None,
        "size": f"{width}x{height}",
        "format": fmt_name,
        "audio_seconds": round(len(pcm) / rate, 3),
        "video_fps": VIDEO_FPS,
        "repeats": repeats,
        "realtime_repeats": realtime_repeats,
        "machine": {
            "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_threads": torch.get_num_threads(),
            "load_average_before": load_before,  # 1, 5, 15 min
            "load_average_after": None,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "checkpoint": checkpoint_figures(config, width, height, checkpoint, store),
        "fps_checkpoints_on": on,
        "fps_checkpoints_off": off,
    }
    if default_policy:
        result["fps_checkpoints_on_default"] = summaries["on_default"]
    figures = slowdown(on, off)
    result |= figures
    if default_policy:
        result["slowdown_percent_default"] = slowdown(summaries["on_default"], off)["slowdown_percent"]
    result["target_slowdown_percent"] = TARGET_SLOWDOWN_PERCENT
    result["meets_target"] = figures["slowdown_percent"] is not None and (
        figures["slowdown_percent"] <= TARGET_SLOWDOWN_PERCENT
    )
    if realtime_repeats:
        rt_on, rt_off = (summarise(config, paced[name], every[name]) for name in paced_modes)
        result["realtime_checkpoints_on"] = rt_on
        result["realtime_checkpoints_off"] = rt_off
        result["realtime_cpu_overhead_percent"] = slowdown(rt_on, rt_off)["cpu_overhead_percent"]
    result["resume"] = resume | {"fresh_session_time_to_first_chunk_s": off["time_to_first_chunk_s"]}
    result["liveact_18b_state"] = liveact_18b_state()
    result["machine"]["load_average_after"] = _load_average()
    return result
