"""A tensor-parallel worker rank (1..N-1) of a generator pod, started by ``TensorParallelRanks``.

It joins the process group, builds the same model as rank 0 (same preset, weights and seed),
keeps its shard, says ``ready`` on its control link and then executes rank 0's operations in
order, one sampler per session handle:

* ``open`` (conditioning + noise state) / ``restore`` (this rank's checkpoint shard) -> a sampler;
* ``step`` (the chunk's audio window) -> the chunk on this rank's heads; with ``snapshot`` the rank
  captures its sampler state into the session's host buffers (``liveact.sampling.capture``) and writes
  its checkpoint parts to Redis itself in the background (``part_writer.PartWriter``; ``store`` gave it
  the connection settings); ``collect`` answers whether that write is done, with its table for the
  manifest rank 0 commits; ``export`` is the same capture without a chunk (a hand-off);
* ``close``, ``ping``, ``stop``.

It exits when rank 0 says ``stop`` or closes the link, and is killed with rank 0 (``die_with_parent``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import timedelta

import torch

from liveact import determinism
from liveact.model.dit import LiveActDiT
from liveact.parallel.link import Link, LinkClosed, Message
from liveact.parallel.part_writer import PartWriter
from liveact.parallel.ranks import RankSpec, die_with_parent
from liveact.sampling.capture import StateCapture
from liveact.sampling.state import SamplerStateError, restore_sampler, start_sampler
from liveact.sampling.stream import StreamingSampler
from liveact.state.settings import StoreSettings

log = logging.getLogger("liveact.parallel.worker")


def serve(link: Link, model: LiveActDiT, device: torch.device) -> None:
    """Execute operations until ``stop`` or the link closes."""
    samplers: dict[int, StreamingSampler] = {}
    captures: dict[int, StateCapture] = {}
    sessions: dict[int, str] = {}
    writer: PartWriter | None = None
    try:
        while True:
            try:
                msg = link.recv()
            except LinkClosed:
                return
            reply = Message("ok", msg.handle)
            try:
                if msg.op in ("open", "restore"):
                    make = start_sampler if msg.op == "open" else restore_sampler
                    samplers[msg.handle] = make(model, msg.tensors, device)
                    sessions[msg.handle] = str(msg.fields.get("session", ""))
                    if writer is not None and int(msg.fields.get("durable", 0)):  # its buffers: from now
                        captures[msg.handle] = StateCapture.for_sampler(samplers[msg.handle])
                elif msg.op == "step":
                    sampler = samplers[msg.handle]
                    sampler.next_chunk(msg.tensors["window"].to(device))
                    if number := int(msg.fields.get("snapshot", 0)):
                        reply.fields = _snapshot(writer, captures, sessions, samplers, msg.handle, number)
                elif msg.op == "export":
                    number = int(msg.fields["snapshot"])
                    reply.fields = _snapshot(writer, captures, sessions, samplers, msg.handle, number)
                elif msg.op == "collect":
                    if writer is None:
                        raise RuntimeError("no session store: rank 0 never attached one")
                    reply.fields = writer.poll(msg.handle, int(msg.fields["snapshot"])).to_fields()
                elif msg.op == "store":
                    if writer is not None:
                        writer.close()
                    writer = PartWriter(StoreSettings(**msg.fields["settings"]))
                elif msg.op == "close":
                    samplers.pop(msg.handle, None)
                    captures.pop(msg.handle, None)
                    sessions.pop(msg.handle, None)
                    if writer is not None:
                        writer.drop(msg.handle)
                elif msg.op == "stop":
                    link.send(reply)
                    return
                elif msg.op != "ping":
                    raise ValueError(f"unknown operation {msg.op!r}")
            except SamplerStateError as exc:
                reply = Message("error", msg.handle, {"error": str(exc), "kind": "state"})
            except Exception as exc:  # reported to rank 0, which decides; this rank keeps serving
                log.exception("operation failed", extra={"op": msg.op})
                reply = Message("error", msg.handle, {"error": f"{type(exc).__name__}: {exc}"})
            link.send(reply)
    finally:
        if writer is not None:
            writer.close()


def _snapshot(
    writer: PartWriter | None,
    captures: dict[int, StateCapture],
    sessions: dict[int, str],
    samplers: dict[int, StreamingSampler],
    handle: int,
    number: int,
) -> dict:
    """Capture this rank's state into the session's buffers and write its parts in the background; the reply's
    fields: the capture's stall, or ``busy`` when the previous checkpoint's parts are still being written."""
    if writer is None:
        raise RuntimeError("a checkpoint was asked for but rank 0 attached no session store")
    if writer.busy(handle):
        return {"busy": True}
    captured = captures.setdefault(handle, StateCapture()).capture(samplers[handle])
    writer.submit(handle, number, sessions[handle], captured)
    return {"stall_s": captured.stall_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--tp", type=int, required=True)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--model-dir", default="")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout-s", type=float, default=30.0)
    ap.add_argument("--link-fd", type=int, required=True, help="inherited socket to rank 0")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--kv-cache", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{args.rank} %(levelname)s %(name)s: %(message)s")
    link = Link.from_fd(args.link_fd)
    spec = RankSpec(
        tp=args.tp, preset=args.preset, model_dir=args.model_dir, device=args.device, seed=args.seed,
        threads=args.threads, dtype=args.dtype, kv_cache=args.kv_cache,
    )  # fmt: skip
    try:
        import deepspeed
        import deepspeed.comm as dist

        from liveact.parallel.tp import DeepSpeedComm

        torch.set_num_threads(spec.rank_threads())
        device = torch.device(f"cuda:{args.rank}" if spec.cuda else args.device)
        determinism.apply(device)  # every rank as rank 0: before its first CUDA work
        if spec.cuda:
            torch.cuda.set_device(device)
        rendezvous = timedelta(seconds=max(args.timeout_s, spec.startup_timeout_s))  # as rank 0 (ranks.py)
        deepspeed.init_distributed(dist_backend=spec.backend, timeout=rendezvous)
        dist.barrier()  # rank 0 then unlinks the /dev/shm all-reduce segments every rank has mapped
        group = dist.new_group(list(range(args.tp)))
        model = spec.load_shard(device, DeepSpeedComm(group))
    except Exception as exc:
        log.exception("rank failed to start")
        link.send(Message("error", fields={"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    link.send(Message("ready"))
    log.info("rank ready: serving rank 0's operations (pid %d)", os.getpid())
    serve(link, model, device)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown of the process group (rank 0 removes the shm buffers)


if __name__ == "__main__":
    raise SystemExit(main())
