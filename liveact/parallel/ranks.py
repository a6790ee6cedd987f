"""Where a session's DiT runs: in this process (``LocalRanks``) or on N tensor-parallel ranks (``TensorParallelRanks``).

The generator talks to a ``SessionDiT`` per session (step a chunk, export its state, close) and
does not care how many ranks compute it.

``TensorParallelRanks`` is rank 0 of a ``--tp N`` generator pod. It starts ranks 1..N-1 as child
processes (``liveact.parallel.worker``), joins them in one process group (gloo on CPU, NCCL on GPU)
and shards its own model like theirs (``shard_dit``). Every operation (open, restore, step, export,
close, ping) runs on one executor thread, in order: rank 0 sends it to every worker over its
control link (``link.py``), does its own part (the collectives pair up because every rank executes
the same operations in the same order), then collects each worker's reply. Sessions are handles; a
worker keeps a sampler per handle. For a checkpoint every rank captures its state into the session's
host buffers (``liveact.sampling.capture``: the only stall) and writes its own parts to Redis in the
background (``part_writer.py``, one connection per rank, named ``...-rank<r>``); rank 0 ``collect``s
the workers' reports and commits the manifest. No shard crosses the control link.

DeepSpeed's CPU all-reduce segments in /dev/shm are unlinked as soon as every rank has mapped them
(the mappings stay valid), so a crashed pod leaves none behind.

Failure: a rank whose process exits, whose link breaks, or whose operation runs longer than
``timeout_s`` (a hang: DeepSpeed's shared-memory all-reduce spins forever on a dead peer) makes
``problem()`` return a reason within ``check_s``; the generator then turns NOT_SERVING, ends its
sessions with UNAVAILABLE so that clients resume them elsewhere, and exits. While no operation is
running, a ping every ``timeout_s / PINGS_PER_TIMEOUT`` proves the workers still answer. Idle
sessions hold no collective open, so they never trip a collective timeout.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import functools
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import torch

from liveact.config import LiveActConfig
from liveact.model.dit import LiveActDiT
from liveact.parallel import shm
from liveact.parallel.link import Link, Message
from liveact.parallel.part_writer import DONE, FAILED, WriteState
from liveact.parallel.tp import TPComm
from liveact.pipeline.engine import runtime_config, runtime_dtype
from liveact.sampling.capture import Captured, StateCapture
from liveact.sampling.state import SamplerStateError, export_start, restore_sampler
from liveact.sampling.stream import StreamingSampler
from liveact.state.errors import StoreError, StoreUnavailable
from liveact.state.settings import StoreSettings
from liveact.state.store import RankWrite
from liveact.weight_files import weights_root

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]
PINGS_PER_TIMEOUT = 4  # idle workers are pinged this often per timeout_s
MASTER_ADDR = "127.0.0.1"  # the ranks of one generator share its pod (host)
STOP_WAIT_S = 5.0  # graceful stop: how long workers get to exit before they are killed
COLLECT_POLL_S = 0.05  # how often rank 0 asks the workers whether their checkpoint parts are written


class RankFailure(RuntimeError):
    """A rank died, hung or lost its link: the group cannot compute any more."""


@dataclass(frozen=True)
class DitSnapshot:
    """A chunk's DiT state for a checkpoint: rank 0's capture here; every other rank captured its own
    heads and writes their parts to Redis itself (``collect`` gathers their reports once written)."""

    rank0: Captured  # rank 0's host buffers: read them (after ``rank0.wait()``) before the session's next capture
    ranks: int  # tensor-parallel degree: one shard per rank
    stall_s: float  # the longest any rank's DiT thread spent capturing
    collect: Callable[[], Awaitable[list[RankWrite]]] | None = None  # ranks 1..N-1's writes (None at tp 1)


class SessionDiT(Protocol):
    async def step(self, window: torch.Tensor, snapshot: bool) -> tuple[torch.Tensor, DitSnapshot | None]:
        """Chunk k's clean latents; with ``snapshot`` also every rank's state after it, captured for a checkpoint
        (None when a rank is still writing the previous one: the checkpoint is skipped)."""
        ...

    async def export(self) -> DitSnapshot | None: ...

    def close(self) -> None: ...


class DitRanks(Protocol):
    size: int

    async def open(self, sampler: StreamingSampler, session_id: str, durable: bool = False) -> SessionDiT:
        """A new session on every rank; ``durable`` (it will checkpoint): capture buffers allocated from now."""
        ...

    async def restore(self, states: list[State], session_id: str) -> SessionDiT: ...

    def problem(self) -> str | None: ...


def _step(
    sampler: StreamingSampler, window: torch.Tensor, capture: StateCapture | None
) -> tuple[torch.Tensor, Captured | None]:
    """Chunk k's latents on this rank, and with ``capture`` the sampler's state after it in its buffers."""
    latent = sampler.next_chunk(window).latent
    return latent, (capture.capture(sampler) if capture is not None else None)


# -- one process ----------------------------------------------------------------------------------
class LocalDiT:
    def __init__(self, sampler: StreamingSampler, durable: bool) -> None:
        self.sampler = sampler
        # a durable session's capture buffers are allocated in the background from now, not at its first checkpoint
        self.capture = StateCapture.for_sampler(sampler) if durable else StateCapture()

    async def step(self, window: torch.Tensor, snapshot: bool) -> tuple[torch.Tensor, DitSnapshot | None]:
        latent, captured = await asyncio.to_thread(_step, self.sampler, window, self.capture if snapshot else None)
        return latent, (None if captured is None else DitSnapshot(captured, 1, captured.stall_s))

    async def export(self) -> DitSnapshot | None:
        captured = await asyncio.to_thread(self.capture.capture, self.sampler)
        return DitSnapshot(captured, 1, captured.stall_s)

    def close(self) -> None:
        pass


class LocalRanks:
    """tp = 1: sessions step concurrently in threads of this process."""

    size = 1

    def __init__(self, model: LiveActDiT, device: torch.device) -> None:
        self.model, self.device = model, device

    async def open(self, sampler: StreamingSampler, session_id: str, durable: bool = False) -> SessionDiT:
        return LocalDiT(sampler, durable)

    async def restore(self, states: list[State], session_id: str) -> SessionDiT:
        if len(states) != 1:
            raise SamplerStateError(f"{len(states)} rank states for one rank")
        return LocalDiT(await asyncio.to_thread(restore_sampler, self.model, states[0], self.device), durable=True)

    def problem(self) -> str | None:
        return None


# -- tensor-parallel ranks ------------------------------------------------------------------------
@dataclass(frozen=True)
class RankSpec:
    """How every rank builds its shard of the model (the same weights on every rank)."""

    tp: int
    preset: str
    model_dir: str = ""  # '' = the preset's built-in weights (fresh ones from ``seed`` for tiny)
    device: str = "cpu"  # cpu, or cuda: rank r uses cuda:r
    seed: int = 0
    timeout_s: float = 30.0  # longest one rank operation (a chunk for every session) may take
    startup_timeout_s: float = 600.0  # workers loading weights and sharding
    threads: int = 0  # torch threads per rank on CPU; 0 = this machine's cores / tp
    dtype: str = "auto"  # the DiT's runtime dtype (``liveact.pipeline.engine.runtime_dtype``)
    kv_cache: str = "auto"  # ConvKV storage (``liveact.pipeline.engine.runtime_config``)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def backend(self) -> str:
        return "nccl" if self.cuda else "gloo"

    def rank_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.tp)

    def config(self) -> LiveActConfig:
        return runtime_config(self.preset, self.kv_cache)

    def load_shard(self, device: torch.device, comm: TPComm) -> LiveActDiT:
        """This rank's shard of the DiT on ``device`` (``load_dit_shard``): what rank 0 and every worker load."""
        from liveact.parallel.loading import load_dit_shard

        root = weights_root(self.preset, self.model_dir or None)
        return load_dit_shard(self.config(), root, device, runtime_dtype(device, self.dtype), comm, self.seed)


@dataclass
class Worker:
    rank: int
    proc: subprocess.Popen
    link: Link


class TPDiT:
    """One session on every rank: the handle names its sampler (and its capture buffers) on the workers."""

    def __init__(self, ranks: TensorParallelRanks, handle: int, sampler: StreamingSampler, durable: bool) -> None:
        self.ranks, self.handle, self.sampler = ranks, handle, sampler
        self.capture = StateCapture.for_sampler(sampler) if durable else StateCapture()  # as LocalDiT's
        self._snapshots = itertools.count(1)

    async def step(self, window: torch.Tensor, snapshot: bool) -> tuple[torch.Tensor, DitSnapshot | None]:
        number = next(self._snapshots) if snapshot else 0
        local = functools.partial(_step, self.sampler, window, self.capture if snapshot else None)
        (latent, mine), replies = await self.ranks.call(
            "step", self.handle, local, fields={"snapshot": number}, tensors={"window": window}
        )
        return latent, (self._snapshot(number, mine, replies) if snapshot else None)

    async def export(self) -> DitSnapshot | None:
        number = next(self._snapshots)
        mine, replies = await self.ranks.call(
            "export", self.handle, functools.partial(self.capture.capture, self.sampler), fields={"snapshot": number}
        )
        return self._snapshot(number, mine, replies)

    def _snapshot(self, number: int, mine: object, replies: list[Message]) -> DitSnapshot | None:
        assert isinstance(mine, Captured)
        if any(r.fields.get("busy") for r in replies):  # a rank still writes the previous checkpoint's parts
            return None
        stall = max([mine.stall_s, *(float(r.fields.get("stall_s", 0.0)) for r in replies)])
        return DitSnapshot(mine, self.ranks.size, stall, functools.partial(self.ranks.collect, self.handle, number))

    def close(self) -> None:
        self.ranks.release(self.handle)


class TensorParallelRanks:
    """Rank 0's side of a tensor-parallel group (see the module docstring)."""

    def __init__(self, spec: RankSpec) -> None:
        if spec.tp < 2:
            raise ValueError(f"TensorParallelRanks needs tp >= 2, got {spec.tp} (use LocalRanks)")
        self.spec = spec
        self.size = spec.tp
        self.workers: list[Worker] = []
        self.model: LiveActDiT | None = None
        self.device = torch.device("cuda:0" if spec.cuda else spec.device)
        self.port = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tp-ranks")
        self._handles = itertools.count()
        self._busy: tuple[str, float] | None = None  # (operation, start time) while one runs
        self._last_done = time.monotonic()
        self._failed: str | None = None
        self._ping: asyncio.Future | None = None
        self._stopped = False

    # -- start / stop ----------------------------------------------------------------------------
    def start(self) -> LiveActDiT:
        """Spawn ranks 1..N-1, join the process group, load rank 0's shard of the DiT (as the workers load
        theirs, concurrently: ``load_dit_shard``) and wait until every rank is ready. Blocking."""
        import deepspeed
        import deepspeed.comm as dist

        from liveact.parallel.tp import DeepSpeedComm, check_tp

        spec = self.spec
        check_tp(spec.config().model, spec.tp)
        self.port = _free_port()
        env = self._env()
        os.environ.update({**env, "RANK": "0", "LOCAL_RANK": "0"})
        torch.set_num_threads(spec.rank_threads())
        for rank in range(1, spec.tp):
            self.workers.append(self._spawn(rank, env))
        # the rendezvous waits for workers still importing and loading weights: the startup bound, not the hang bound
        # (hangs are caught by the busy-time monitor below, whatever gloo's own timeout)
        rendezvous = timedelta(seconds=max(spec.timeout_s, spec.startup_timeout_s))
        deepspeed.init_distributed(dist_backend=spec.backend, timeout=rendezvous)
        dist.barrier()  # every rank has mapped every rank's all-reduce segment (DeepSpeed does it in init)
        if not spec.cuda:  # so their names can go now: nothing is left in /dev/shm, even after a kill -9
            shm.remove(shm.group_buffers(MASTER_ADDR, self.port))
        group = dist.new_group(list(range(spec.tp)))
        self.model = spec.load_shard(self.device, DeepSpeedComm(group))
        for w in self.workers:
            w.link.sock.settimeout(spec.startup_timeout_s)
            reply = w.link.recv()
            w.link.sock.settimeout(None)
            if reply.op != "ready":
                raise RankFailure(f"rank {w.rank} failed to start: {reply.fields.get('error', reply.op)}")
        log.info("tensor-parallel ranks ready", extra={"tp": spec.tp, "backend": spec.backend, "port": self.port})
        return self.model

    def _env(self) -> dict[str, str]:
        spec = self.spec
        return {
            "MASTER_ADDR": MASTER_ADDR,
            "MASTER_PORT": str(self.port),
            "WORLD_SIZE": str(spec.tp),
            "LOCAL_SIZE": str(spec.tp),  # DeepSpeed's shm all-reduce segfaults unless it is the rank count
            "LOCAL_WORLD_SIZE": str(spec.tp),
            "DS_ACCELERATOR": "cuda" if spec.cuda else "cpu",
            "OMP_NUM_THREADS": str(spec.rank_threads()),
        }

    def _spawn(self, rank: int, env: dict[str, str]) -> Worker:
        spec = self.spec
        mine, theirs = socket.socketpair()
        cmd = [
            sys.executable, "-m", "liveact.parallel.worker", "--rank", str(rank), "--tp", str(spec.tp),
            "--preset", spec.preset, "--model-dir", spec.model_dir, "--device", spec.device,
            "--seed", str(spec.seed), "--timeout-s", str(spec.timeout_s), "--link-fd", str(theirs.fileno()),
            "--dtype", spec.dtype, "--kv-cache", spec.kv_cache, "--threads", str(spec.threads),
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, env={**os.environ, **env, "RANK": str(rank), "LOCAL_RANK": str(rank)}, pass_fds=(theirs.fileno(),)
        )
        theirs.close()
        return Worker(rank, proc, Link(mine))

    async def stop(self) -> None:
        """Graceful: after the operations already queued, tell workers to exit; kill what is left."""
        if self._stopped:
            return
        if self._failed is None:
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(self._pool, self._stop_workers), STOP_WAIT_S)
            except (TimeoutError, OSError, ConnectionError, RankFailure) as exc:
                log.warning("tensor-parallel ranks did not stop cleanly", extra={"error": str(exc)})
        self.kill()

    def _stop_workers(self) -> None:
        for w in self.workers:
            w.link.send(Message("stop"))
        for w in self.workers:
            w.proc.wait(STOP_WAIT_S)

    def kill(self) -> None:
        """Kill every worker and remove the group's /dev/shm buffers (any thread; also after a failure)."""
        self._stopped = True
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.kill()
        for w in self.workers:
            try:
                w.proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                log.error("tensor-parallel rank did not die", extra={"rank": w.rank, "pid": w.proc.pid})
            w.link.close()
        if self.port and not self.spec.cuda:
            shm.remove(shm.group_buffers(MASTER_ADDR, self.port))

    # -- sessions --------------------------------------------------------------------------------
    async def attach_store(self, settings: StoreSettings) -> None:
        """Give every worker rank its own Redis connection for its checkpoint parts (``settings.client_name`` with
        ``-rank0`` replaced by ``-rank<r>``)."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._attach_store, settings)

    def _attach_store(self, settings: StoreSettings) -> None:
        for w in self.workers:
            base = settings.client_name.removesuffix("-rank0") or "liveact"
            named = dataclasses.replace(settings, client_name=f"{base}-rank{w.rank}")
            w.link.send(Message("store", fields={"settings": dataclasses.asdict(named)}))
        for w in self.workers:
            reply = w.link.recv()
            if reply.op != "ok":
                raise RankFailure(f"rank {w.rank} cannot reach the session store: {reply.fields.get('error')}")

    async def collect(self, handle: int, snapshot: int) -> list[RankWrite]:
        """Ranks 1..N-1's writes of checkpoint ``snapshot``, once all are done (polled; other operations go on).

        ``StoreUnavailable`` if a rank found Redis away; ``StoreError`` if a rank's write failed otherwise.
        """
        while True:
            _, replies = await self.call("collect", handle, None, fields={"snapshot": snapshot})
            states = [WriteState.from_fields(r.fields) for r in replies]
            failed = [(w.rank, s) for w, s in zip(self.workers, states, strict=True) if s.state == FAILED]
            if failed:
                rank, state = failed[0]
                error = StoreUnavailable if state.unavailable else StoreError
                raise error(f"tensor-parallel rank {rank}: {state.error}")
            if all(s.state == DONE for s in states):
                return [s.write for s in states if s.write is not None]
            await asyncio.sleep(COLLECT_POLL_S)

    async def open(self, sampler: StreamingSampler, session_id: str, durable: bool = False) -> SessionDiT:
        handle = next(self._handles)
        start = await asyncio.to_thread(export_start, sampler)
        await self.call("open", handle, None, fields={"session": session_id, "durable": int(durable)}, tensors=start)
        return TPDiT(self, handle, sampler, durable)

    async def restore(self, states: list[State], session_id: str) -> SessionDiT:
        if len(states) != self.size:
            raise SamplerStateError(f"{len(states)} rank states for {self.size} ranks: reshard them first")
        handle = next(self._handles)
        sampler, _ = await self.call(
            "restore", handle, lambda: restore_sampler(self.model, states[0], self.device),
            fields={"session": session_id, "durable": 1}, per_rank=states[1:],
        )  # fmt: skip
        return TPDiT(self, handle, sampler, durable=True)

    def release(self, handle: int) -> None:
        """Drop a session on the workers after its queued operations (not awaited)."""
        if self._failed is None and not self._stopped:
            asyncio.get_running_loop().run_in_executor(self._pool, self._call_quietly, "close", handle)

    async def call(
        self,
        op: str,
        handle: int,
        local: Callable[[], object] | None,
        fields: dict | None = None,
        tensors: State | None = None,
        per_rank: list[State] | None = None,
    ) -> tuple[object, list[Message]]:
        """Run ``op`` on every rank, in order with every other operation; (rank 0's result, worker replies)."""
        if self._failed is not None:
            raise RankFailure(self._failed)
        loop = asyncio.get_running_loop()
        work = functools.partial(self._call, op, handle, local, fields or {}, tensors or {}, per_rank)
        return await loop.run_in_executor(self._pool, work)

    def _call(self, op, handle, local, fields, tensors, per_rank) -> tuple[object, list[Message]]:
        if self._failed is not None:
            raise RankFailure(self._failed)
        self._busy = (op, time.monotonic())
        error: Exception | None = None
        try:
            for i, w in enumerate(self.workers):
                w.link.send(Message(op, handle, fields, per_rank[i] if per_rank is not None else tensors))
            result = None
            try:
                result = local() if local is not None else None
            except Exception as exc:  # the workers' replies are still read: the links stay in step
                error = exc
            replies = [w.link.recv() for w in self.workers]
        except (OSError, ConnectionError) as exc:
            self._failed = f"the control link to a tensor-parallel rank broke during {op!r}: {exc}"
            raise RankFailure(self._failed) from exc
        finally:
            self._busy = None
            self._last_done = time.monotonic()
        if error is not None:
            raise error
        for w, reply in zip(self.workers, replies, strict=True):
            if reply.op == "error":
                why = f"rank {w.rank}: {reply.fields.get('error')}"
                if reply.fields.get("kind") == "state":
                    raise SamplerStateError(why)
                self._failed = f"{op!r} failed on {why}"  # the ranks may no longer agree
                raise RankFailure(self._failed)
        return result, replies

    def _call_quietly(self, op: str, handle: int) -> None:
        try:
            self._call(op, handle, None, {}, {}, None)
        except (RankFailure, SamplerStateError) as exc:
            log.warning("rank operation failed", extra={"op": op, "error": str(exc)})

    # -- health ----------------------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why the group cannot go on (None while it is healthy); cheap, for a periodic check."""
        if self._failed is not None:
            return self._failed
        for w in self.workers:
            if (code := w.proc.poll()) is not None:
                return f"tensor-parallel rank {w.rank} exited ({_describe_exit(code)})"
        busy = self._busy
        if busy is not None and (elapsed := time.monotonic() - busy[1]) > self.spec.timeout_s:
            return (
                f"rank operation {busy[0]!r} has not finished after {elapsed:.1f} s "
                f"(> --tp-timeout-s {self.spec.timeout_s:g}): a rank hangs"
            )
        return None

    def ping_if_idle(self) -> None:
        """While no operation ran for ``timeout_s / PINGS_PER_TIMEOUT``, check that every worker answers."""
        idle = time.monotonic() - self._last_done
        if self._busy is None and idle > self.spec.timeout_s / PINGS_PER_TIMEOUT and self._failed is None:
            if self._ping is None or self._ping.done():
                self._ping = asyncio.get_running_loop().run_in_executor(self._pool, self._call_quietly, "ping", -1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((MASTER_ADDR, 0))
        return s.getsockname()[1]


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent exits (a worker must not outlive rank 0,
    least of all spinning in an all-reduce whose peer is gone)."""
    if sys.platform != "linux":
        return
    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
