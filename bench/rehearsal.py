"""``liveact bench rehearsal``: checkpoints at liveact-18b's real layout, scaled down, through the real store.

What runs, in one process against a private ``redis-server``:

* **the layout**: ``liveact plan``'s dry run of one liveact-18b session (``--size``, ``--tp``, ``--kv-cache``)
  gives every tensor a rank's checkpoint holds, with its bytes; each becomes a host tensor of 1/``scale`` of
  them, per rank (each rank's own content), plus rank 0's audio rows and decoder state, scaled alike;
* **a synthetic DiT loop** on one thread (one torch thread): per chunk a fixed matmul workload and an update
  of every tensor but the sink slots and the conditioning (one byte per part, so every changed part's
  digest changes, as the real caches' do);
* **checkpoints** as the generator takes them: when ``CheckpointPolicy`` (every chunk, spaced by
  ``--budget-mbps`` per rank) says one is due, the loop copies every rank's tensors into preallocated
  buffers (``StateCapture.capture_views``: the stall) and a background event loop writes each rank's parts
  (``SessionStore.write_rank``, ranks concurrently) and commits the manifest; one in flight at a time.

Phases without and with checkpoints alternate (``repeats`` each, ``seconds`` long; a phase with checkpoints
goes on, taking no new one, until its last write has committed, so every write's cost lands in a phase that
counts it). With ``pin`` (the default where there are 2 CPUs or more) the loop thread has the first CPU to itself
and the writes and redis-server share the others, as on a GPU host, where the DiT thread's CPU work is
launching kernels and the pod has cores to spare (``cpu_layout`` says which ran); the figure then measures
what checkpoints take from the DiT thread itself (the stall, the GIL, memory bandwidth), not a 2-core
machine's shortage of cores (``--no-pin`` measures that too). Reported: the DiT-thread
stall per checkpoint (p50, max), the loop thread's wall and CPU time per chunk without checkpoints, with them
and with a write in flight (the wait between: the GIL), the loop's throughput with / without (median chunks per
second, ratio), bytes
sent per version (first, later), the write bandwidth achieved per rank (bytes sent / the phase's time) against
the budget, Redis memory per session (``MEMORY USAGE`` of its part keys and ``INFO`` used_memory), the time to
read the newest checkpoint back; and each figure extrapolated to full size for TP 1, 2 and 4 (bytes and
intervals from ``liveact plan``'s figures; the stall as this machine's host copy rate, not a GPU's). The budget
is given at full size and the scaled writes get 1/scale of it, so checkpoints come as far apart as at full
size; from the second capture on the sink slots and conditioning are not copied again (they do not change).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.checkpoint.common import load_average, redis_pid
from liveact.launch import redis_process
from liveact.plan.dryrun import PlanCase, dry_run
from liveact.plan.redis_plan import rank_share, redis_plan, shared
from liveact.sampling.audio_window import held_rows_bytes
from liveact.sampling.capture import Captured, StateCapture
from liveact.state.redis_memory import TAIL_BYTES
from liveact.state.schema import AUDIO_ROWS, DECODER_STATE, CheckpointMeta, SessionInfo
from liveact.state.settings import StoreSettings
from liveact.state.store import CheckpointWrite, SessionStore
from liveact.vae.config import get_vae_preset
from liveact.vae.session import context_state_nbytes
from services.generator.checkpoint import CheckpointPolicy

__all__ = ["Rehearsal", "run"]

PRESET = "liveact-18b"
MB = 1_000_000
MATMUL = 384  # the synthetic chunk's square matmul side
MATMULS_PER_CHUNK = 40  # about 0.1 s of one core here
EXTRAPOLATE_TPS = (1, 2, 4)
KEY_PREFIX = "rehearsal"
BUDGET_SLACK = 1.001  # timer resolution between the policy's clock and these stamps
ALL_CPUS = frozenset(os.sched_getaffinity(0))
SHARED_LAYOUT = "every thread and redis-server share every CPU"


@dataclass(frozen=True)
class Rehearsal:
    """One run's settings (``liveact bench rehearsal --help`` explains each)."""

    scale: int = 32  # every tensor at 1/scale of its bytes
    tp: int = 2
    width: int = 416
    height: int = 720
    kv_cache: str = "bf16"
    budget_mbps: float = 500.0  # per rank at full size; the writes here get budget / scale (the same intervals)
    seconds: float = 15.0  # per phase
    repeats: int = 3  # phases of each kind, interleaved
    pin: bool = True  # the loop thread on a CPU of its own, the writes and redis-server on the others

    @property
    def scaled_budget_mbps(self) -> float:
        """The budget the scaled writes get: checkpoints as far apart as at full size."""
        return self.budget_mbps / self.scale

    def problems(self) -> list[str]:
        out = []
        if self.scale < 1:
            out.append(f"--scale must be 1/N with N >= 1, got 1/{self.scale}")
        if self.budget_mbps <= 0 or self.seconds <= 0 or self.repeats < 1:
            out.append("--budget-mbps and --seconds must be positive and --repeats >= 1")
        return out


def layout(bench: Rehearsal) -> tuple[dict[str, int], int, int]:
    """(one rank's tensors: name -> bytes at full size, rank 0's audio rows, its decoder state)."""
    case = PlanCase.serving(PRESET, 1, bench.width, bench.height, "fp8" if bench.kv_cache == "fp8" else "model",
                            "bf16")  # fmt: skip
    run = dry_run(case)
    rank = rank_share(dict(run.checkpoint_tensors), bench.tp)
    config = case.config()
    return rank, held_rows_bytes(config), context_state_nbytes(get_vae_preset(config.vae), bench.width, bench.height)


class Ranks:
    """Every rank's scaled tensors (host, uint8) and what a chunk changes in them."""

    def __init__(self, rank: dict[str, int], rows: int, decoder: int, bench: Rehearsal) -> None:
        g = torch.Generator().manual_seed(0)
        self.tensors: list[dict[str, torch.Tensor]] = []
        for r in range(bench.tp):
            sizes = dict(rank) | ({AUDIO_ROWS: rows, DECODER_STATE: decoder} if r == 0 else {})
            self.tensors.append({
                n: torch.randint(0, 256, (max(1, b // bench.scale),), dtype=torch.uint8, generator=g)
                for n, b in sizes.items()
            })  # fmt: skip
        self.changing = [[t for n, t in ts.items() if not shared(n)] for ts in self.tensors]
        # bytes no part the store cuts can miss (none is shorter than TAIL_BYTES but a stream's last one)
        self.touched = [[_touched(t.numel()) for t in ts] for ts in self.changing]

    def step(self) -> None:
        """What a chunk does to the state: every changed tensor gets new bytes in every part it lies in."""
        for ts, touched in zip(self.changing, self.touched, strict=True):
            for t, at in zip(ts, touched, strict=True):
                t[at] += 1


def _touched(nbytes: int) -> torch.Tensor:
    """Every ``TAIL_BYTES``-th byte of a tensor and its last one."""
    return torch.tensor(sorted({*range(0, nbytes, TAIL_BYTES), nbytes - 1}), dtype=torch.long)


@dataclass(frozen=True)
class ChunkTime:
    """One synthetic chunk on the loop thread: wall seconds and the thread's CPU seconds (the difference: waiting,
    for the GIL above all, as the loop thread has a CPU to itself when pinned)."""

    wall_s: float
    cpu_s: float


class Loop:
    """The synthetic DiT thread and its checkpoints."""

    def __init__(self, ranks: Ranks, store: SessionStore, lease, policy: CheckpointPolicy, loop) -> None:
        self.ranks, self.store, self.lease, self.policy, self.aio = ranks, store, lease, policy, loop
        self.captures = [StateCapture() for _ in ranks.tensors]
        for capture, ts in zip(self.captures, ranks.tensors, strict=True):  # as the generator: from the start
            capture.prepare({n: (t.shape, t.dtype) for n, t in ts.items()}, pin=False)
        self.a = torch.randn(MATMUL, MATMUL)
        self.stalls: list[float] = []
        self.writes: list[CheckpointWrite] = []
        self.started: list[float] = []  # each checkpoint's capture time (perf_counter)
        self.write_s: list[float] = []  # each checkpoint's write: first part to committed
        self.skipped = 0
        self._pending = None
        self._skipping = False  # the current stretch of due-but-busy chunks was counted (as the generator does)
        self._last_time = 0.0
        self.fixed = frozenset(n for ts in ranks.tensors for n in ts if shared(n))  # copied by the first capture only
        self._checkpoints = False
        # per chunk, by phase: without checkpoints, with (none in flight), with a write in flight at its end
        self.chunk_times: dict[str, list[ChunkTime]] = {"off": [], "on": [], "writing": []}

    def chunk(self) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(MATMULS_PER_CHUNK):
            self.a = torch.tanh(self.a @ self.a * (1.0 / MATMUL))
        self.ranks.step()
        kind = "off" if not self._checkpoints else "writing" if self.writing() else "on"
        self.chunk_times[kind].append(ChunkTime(time.perf_counter() - wall, time.thread_time() - cpu))

    def phase(self, seconds: float, checkpoints: bool, chunk_index: int) -> tuple[int, float, int]:
        """(chunks, seconds, bytes sent per rank) of one phase."""
        start = time.perf_counter()
        self._checkpoints = checkpoints
        chunks, sent0 = 0, self.sent_per_rank()
        while time.perf_counter() - start < seconds:
            self.chunk()
            chunks += 1
            if checkpoints:
                self.maybe_checkpoint(chunk_index + chunks)
        while self.writing():  # the loop goes on (no new checkpoint) while the last write finishes: its cost counts
            self.chunk()
            chunks += 1
        return chunks, time.perf_counter() - start, self.sent_per_rank() - sent0

    def maybe_checkpoint(self, chunk: int) -> None:
        busy = self.writing()
        last = self.writes[-1].written_per_rank if self.writes else 0
        if busy:  # the one in flight spaces the next by its bytes at most: all it captured
            last = max(last, max(c.nbytes for c in self.captures))
        if not self.policy.due(1, time.perf_counter() - self._last_time, last):
            return
        if busy:
            self.skipped += not self._skipping  # due while the previous one is still being written: counted once
            self._skipping = True
            return
        self._skipping = False
        t0 = time.perf_counter()
        captured = [
            c.capture_views(ts, skip=self.fixed if self.writes or self._pending else frozenset())
            for c, ts in zip(self.captures, self.ranks.tensors, strict=True)
        ]  # each rank's own copy (in parallel on its own GPU in a pod; one after the other here)
        self.stalls.append(time.perf_counter() - t0)
        self._last_time = t0
        self.started.append(t0)
        self._pending = asyncio.run_coroutine_threadsafe(self.write(captured, chunk), self.aio)

    async def write(self, captured: list[Captured], chunk: int) -> None:
        t0 = time.perf_counter()
        for c in captured:
            await asyncio.to_thread(c.wait)
        shards = [c.tensors for c in captured]
        meta = CheckpointMeta(chunk_index=chunk, next_frame=0, rows_first=0, rows_end=0, audio_seq=0, audio_offset=0,
                              pcm_frames=0, audio_total=None, frame_offset=0, row_offset=0, tp=len(shards))  # fmt: skip
        await self.store.renew(self.lease)  # the generator's lease keeper renews it every lease_ttl_s / 3
        version = await self.store.begin_checkpoint(self.lease)
        ranks = await asyncio.gather(*(self.store.write_rank(self.lease.session_id, s) for s in shards))
        await self.store.commit_checkpoint(self.lease, version, meta, list(ranks))
        self.writes.append(CheckpointWrite(version, list(ranks)))
        self.write_s.append(time.perf_counter() - t0)

    def writing(self) -> bool:
        """Whether a checkpoint is still being written (raises its error once it failed)."""
        if self._pending is None:
            return False
        if self._pending.done():
            self._pending.result()
            return False
        return True

    def sent_per_rank(self) -> int:
        return max((sum(w.ranks[r].bytes_written for w in self.writes) for r in range(len(self.captures))), default=0)


def run(bench: Rehearsal) -> dict:
    if problems := bench.problems():
        raise ValueError("; ".join(problems))
    torch.set_num_threads(1)  # the DiT loop on one thread; the writes (hashing, Redis) on others
    full_rank, full_rows, full_decoder = layout(bench)
    ranks = Ranks(full_rank, full_rows, full_decoder, bench)
    aio = asyncio.new_event_loop()
    thread = threading.Thread(target=aio.run_forever, daemon=True)
    thread.start()
    load_before = load_average()
    with redis_process() as url:
        settings = StoreSettings(url=url, key_prefix=KEY_PREFIX)

        def call(coro):
            return asyncio.run_coroutine_threadsafe(coro, aio).result()

        layout_used = _pin(aio, redis_pid(url)) if bench.pin else SHARED_LAYOUT

        store = call(_open(settings))
        sid = f"rehearsal-{secrets.token_hex(8)}"
        call(store.create_session(sid, secrets.token_hex(16), _info(bench)))
        lease = call(store.acquire(sid, "bench-rehearsal"))
        policy = CheckpointPolicy(every_chunks=1, budget_mbps=bench.scaled_budget_mbps)
        loop = Loop(ranks, store, lease, policy, aio)
        used_before = call(store.client.info("memory"))["used_memory"]
        loop.phase(min(2.0, bench.seconds), checkpoints=False, chunk_index=0)  # warm-up
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        chunk = 0
        for _ in range(bench.repeats):
            for mode in ("off", "on"):
                chunks, seconds, sent = loop.phase(bench.seconds, mode == "on", chunk)
                chunk += chunks
                runs[mode].append({"chunks": chunks, "seconds": round(seconds, 3), "chunks_per_s": chunks / seconds,
                                   "sent_bytes_per_rank": sent})  # fmt: skip
        t0 = time.perf_counter()
        checkpoint = call(store.read_checkpoint(sid))
        read_s = time.perf_counter() - t0
        keys = call(_keys(store, sid))
        usage = sum(call(store.client.memory_usage(k, samples=0)) or 0 for k in keys)
        used_after = call(store.client.info("memory"))["used_memory"]
        call(store.close())
    aio.call_soon_threadsafe(aio.stop)
    thread.join()
    if bench.pin:
        os.sched_setaffinity(0, ALL_CPUS)
    report = _report(bench, loop, runs, checkpoint.version, read_s, usage, used_after - used_before, load_before,
                     full_rank, full_decoder)  # fmt: skip
    return report | {"cpu_layout": layout_used}


def _pin(aio: asyncio.AbstractEventLoop, redis: int) -> str:
    """The loop thread (this one) on the first CPU; the write thread (and the threads it starts) and every
    redis-server thread on the rest, as on a GPU host, where the DiT thread mostly waits on the GPU and other
    cores write. Returns the layout used (SHARED_LAYOUT where there is one CPU)."""
    cpus = sorted(ALL_CPUS)
    if len(cpus) < 2:
        return SHARED_LAYOUT
    loop_cpu, others = {cpus[0]}, set(cpus[1:])
    asyncio.run_coroutine_threadsafe(_set_affinity(others), aio).result()  # threads inherit it from their creator
    for task in Path(f"/proc/{redis}/task").iterdir():  # every redis-server thread (lazy free, I/O threads)
        os.sched_setaffinity(int(task.name), others)
    os.sched_setaffinity(0, loop_cpu)  # 0: the calling thread
    return f"loop thread on CPU {cpus[0]}; writes and redis-server on CPUs {','.join(map(str, cpus[1:]))}"


async def _set_affinity(cpus: set[int]) -> None:
    os.sched_setaffinity(0, cpus)


async def _open(settings: StoreSettings) -> SessionStore:
    return SessionStore(settings)


async def _keys(store: SessionStore, sid: str) -> list[bytes]:
    return [k async for k in store.client.scan_iter(match=f"{KEY_PREFIX}:part:{sid}:*", count=1000)]


def _info(bench: Rehearsal) -> SessionInfo:
    return SessionInfo(preset=PRESET, fps=20.0, width=bench.width, height=bench.height, seed=0, output_format=0,
                       jpeg_quality=0, prompt="", audio_encoding=0, audio_sample_rate=0, audio_channels=0,
                       decode_mode="context")  # fmt: skip


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _chunk_times(times: dict[str, list[ChunkTime]]) -> dict[str, dict[str, float]]:
    """Mean wall and CPU milliseconds per chunk and the wait between (wall - CPU), by kind of chunk: where a
    checkpoint's cost to the loop thread lands (the stalls come on top)."""
    out = {}
    for kind, chunks in times.items():
        if chunks:
            wall = statistics.fmean(c.wall_s for c in chunks)
            cpu = statistics.fmean(c.cpu_s for c in chunks)
            out[kind] = {"chunks": len(chunks), "wall_ms": _ms(wall), "cpu_ms": _ms(cpu), "wait_ms": _ms(wall - cpu)}
    return out


def _report(bench, loop, runs, version, read_s, usage, used_delta, load_before, full_rank, full_decoder) -> dict:
    on = statistics.median(r["chunks_per_s"] for r in runs["on"])
    off = statistics.median(r["chunks_per_s"] for r in runs["off"])
    first, later = loop.writes[0], loop.writes[1:]
    later_bytes = statistics.median(sum(r.bytes_written for r in w.ranks) for w in later) if later else 0
    first_bytes = sum(r.bytes_written for r in first.ranks)
    # the budget is an average: over each checkpoint's start to the next one's (the last: to the end of the quiet
    # time its bytes buy), the bytes the busiest rank sent
    sent = [w.written_per_rank for w in loop.writes]
    spans = [b - a for a, b in zip(loop.started, loop.started[1:], strict=False)]
    spans.append(sent[-1] / (bench.scaled_budget_mbps * MB))
    write_mb_s = sum(sent) / sum(spans) / MB
    burst_mb_s = sum(sent) / sum(loop.write_s) / MB
    config = PlanCase.serving(PRESET, 1, bench.width, bench.height, "model", "bf16").config()
    full = {}
    # a capture copies the changed tensors of every rank (one after the other here): seconds per byte copied
    changed = sum(t.nbytes for ts in loop.ranks.tensors for n, t in ts.items() if not shared(n))
    stall_per_byte = statistics.median(loop.stalls[1:] or loop.stalls) / changed
    for tp in EXTRAPOLATE_TPS:
        rank = rank_share(full_rank, tp, from_tp=bench.tp)
        plan = redis_plan(config, rank, tp, decoder_state_bytes=full_decoder)
        full[f"tp{tp}"] = {
            "bytes_per_version_per_rank": {"first": plan.first_write_per_rank, "later": plan.later_write_per_rank},
            "redis_bytes_per_session": plan.session_bytes,
            "redis_peak_bytes_per_session": plan.peak_bytes,
            "interval_s_at_budget": round(plan.interval_s(bench.budget_mbps), 2),
            "budget_mb_s": bench.budget_mbps,
            "host_copy_stall_ms": _ms(stall_per_byte * plan.later_write_per_rank),  # one rank's changed tensors
        }
    return {
        "benchmark": "rehearsal",
        "preset": PRESET,
        "scale": f"1/{bench.scale}",
        "tp": bench.tp,
        "size": f"{bench.width}x{bench.height}",
        "kv_cache": bench.kv_cache,
        "machine": {
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "torch_threads": torch.get_num_threads(),
        },
        "bytes_per_rank": [sum(t.nbytes for t in ts.values()) for ts in loop.ranks.tensors],
        "checkpoints": len(loop.writes),
        "parts_per_rank": [r.parts for r in loop.writes[-1].ranks],  # the newest version's: few, as streams
        "skipped": loop.skipped,
        "dit_stall_ms": {"p50": _ms(statistics.median(loop.stalls)), "max": _ms(max(loop.stalls))},
        "dit_thread_per_chunk": _chunk_times(loop.chunk_times),
        "throughput_ratio": round(on / off, 4),
        "chunks_per_s": {"with_checkpoints": round(on, 3), "without": round(off, 3)},
        "bytes_per_version": {
            "first": first_bytes,
            "later": int(later_bytes),
            "later_over_first": round(later_bytes / first_bytes, 4),
        },
        "write_mb_s": round(write_mb_s, 2),
        "write_burst_mb_s": round(burst_mb_s, 2),  # while writing: what Redis and the hashing sustain
        "budget_mb_s": round(bench.scaled_budget_mbps, 3),
        "budget_mb_s_full_size": bench.budget_mbps,
        "within_budget": write_mb_s <= bench.scaled_budget_mbps * BUDGET_SLACK,
        "redis_bytes_per_session": usage,
        "redis_used_memory_delta": used_delta,
        "resume_read_ms": _ms(read_s),
        "newest_version": version,
        "runs": runs,
        "full_size": full,
    }
