"""``scripts/gpu-check``: what a lent H100/H200 runs in one go, written to one JSON file for ``docs/benchmarks/``.

Each step runs in a process of its own under a time limit; a step that fails or runs out of time is
recorded with its error and the next one still runs:

1. ``machine``: torch, CUDA, the device's name, total and free memory;
2. ``tests``: the CUDA-marked tests (``pytest -m gpu``);
3. ``bench``: ``liveact bench gpu`` with bf16 caches and with FP8 caches, at 416x720 and 512x512;
4. ``plan``: ``liveact plan``'s dry run of each of those sessions (``dry_run_dit``) against the measured
   ``torch.cuda.max_memory_allocated``: the ratio, and whether it is within 10 %;
5. ``load``: a liveact-18b-width DiT (one block, sharded bf16 safetensors) loaded onto the device: the peak
   device bytes while loading against the weights' bytes;
6. ``repeat``: the same chunk generated twice from the same state (the sampler restored from its own export):
   bitwise equal, or the largest difference (what "EXACT resume" can promise on this GPU);
7. ``capture``: a checkpoint's capture as the generator takes it (``StateCapture``: pinned host buffers filled
   on a side stream, the chunk that next compacts waiting for the event) while two more chunks run; the
   buffers must equal ``export_sampler``'s bytes taken at the capture, and the DiT thread's stall is reported.

``--cpu`` runs the same steps with the tiny preset on the CPU (64x64 and 128x128; device peaks are null), so CI
runs the script (``tests/benchmarks/test_gpu_check.py``) and it cannot rot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from liveact.config import get_preset

if TYPE_CHECKING:
    from liveact.model.dit import LiveActDiT
    from liveact.sampling.stream import StreamingSampler

ROOT = Path(__file__).resolve().parents[1]
PLAN_TOLERANCE = 0.10  # the plan's peak against the measured one (issue 22)
STEP_TIMEOUT_S = {"machine": 60, "tests": 240, "bench": 300, "plan": 180, "load": 180, "repeat": 240, "capture": 240}
BENCH_CHUNKS, BENCH_WARMUP = 3, 2
KV_MODES = ("model", "fp8")  # caches in the DiT's dtype (bf16 on CUDA, fp32 on the CPU), or float8
REPEAT_CHUNK = 2  # the first chunk that runs the cache update: the state before it is exported, then it runs twice
CAPTURE_CHUNKS_AFTER = 2  # chunks run while a capture's copy may still be in flight (the second compacts)


@dataclass(frozen=True)
class Mode:
    """What a run checks: liveact-18b on CUDA, or the tiny preset on the CPU."""

    preset: str
    device: str
    sizes: tuple[tuple[int, int], ...]
    dtype: str
    load_layers: int

    @staticmethod
    def of(cpu: bool) -> Mode:
        if cpu:
            return Mode("tiny", "cpu", ((64, 64), (128, 128)), "fp32", 0)
        return Mode("liveact-18b", "cuda", ((416, 720), (512, 512)), "bf16", 1)


# -- steps (each runs in its own process: python -m bench.gpu_check --step NAME) -------------------------
def step_machine(mode: Mode) -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": mode.device}
    if mode.device == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        props = torch.cuda.get_device_properties(0)
        out |= {"device_name": props.name, "total_bytes": total, "free_bytes": free,
                "capability": [props.major, props.minor], "cudnn": torch.backends.cudnn.version()}  # fmt: skip
    else:
        out |= {"device_name": "cpu", "cuda_available": torch.cuda.is_available()}
    return out


def step_tests(mode: Mode) -> dict:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py") if "mark.gpu" in p.read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *files],
        cwd=ROOT, capture_output=True, text=True, timeout=STEP_TIMEOUT_S["tests"] - 10, check=False,
    )  # fmt: skip
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"files": files, "returncode": proc.returncode, "summary": summary, "ok": proc.returncode in (0, 5)}


def step_bench(mode: Mode) -> dict:
    from bench import gpu

    return {
        kv: gpu.run(
            mode.preset, mode.device, list(mode.sizes), BENCH_CHUNKS, BENCH_WARMUP, mode.dtype, fp8_kv=kv == "fp8"
        )
        for kv in KV_MODES
    }


def step_plan(mode: Mode, bench: dict) -> dict:
    from liveact.plan.dryrun import PlanCase, dry_run_dit

    rows = []
    for kv in KV_MODES:
        for width, height in mode.sizes:
            case = PlanCase(mode.preset, 1, width, height, "fp8" if kv == "fp8" else mode.dtype, mode.dtype)
            predicted = dry_run_dit(case, BENCH_CHUNKS + BENCH_WARMUP)
            measured = _measured_peak(bench, kv, width, height)
            ratio = None if measured is None else measured / predicted
            rows.append({"kv_cache": kv, "size": f"{width}x{height}", "predicted_peak_bytes": predicted,
                         "measured_peak_bytes": measured, "measured_over_predicted": ratio,
                         "within_tolerance": None if ratio is None else abs(ratio - 1) <= PLAN_TOLERANCE})  # fmt: skip
    return {"tolerance": PLAN_TOLERANCE, "sessions": rows}


def _measured_peak(bench: dict, kv: str, width: int, height: int) -> int | None:
    run = bench.get(kv) or {}
    for res in run.get("resolutions", []):
        if (res.get("width"), res.get("height")) == (width, height):
            return res.get("peak_memory_bytes")
    return None


def step_load(mode: Mode) -> dict:
    from bench.loading import mid_config, write_checkpoint
    from liveact.model.loading import build_model, load_checkpoint_dir

    config = mid_config(mode.load_layers) if mode.load_layers else get_preset(mode.preset)
    dtype = torch.bfloat16 if mode.dtype == "bf16" else torch.float32
    device = torch.device(mode.device)
    with tempfile.TemporaryDirectory() as tmp:
        write_checkpoint(config, Path(tmp), shard_mb=256)
        meta = build_model(config, device="meta").to_runtime_dtype(dtype)
        weights = sum(p.numel() * p.element_size() for p in meta.parameters())
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        load_checkpoint_dir(meta, Path(tmp), device, dtype)
        seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"layers": config.model.num_layers, "weights_bytes": weights, "peak_device_bytes": peak,
            "peak_over_weights": None if peak is None else peak / weights, "seconds": seconds}  # fmt: skip


@dataclass
class Running:
    """A session's sampler after REPEAT_CHUNK chunks, with features for more."""

    model: LiveActDiT
    sampler: StreamingSampler
    feats: torch.Tensor
    device: torch.device
    size: str


@torch.no_grad()
def running_session(mode: Mode, chunks_after: int) -> Running:
    """Mode's model with random weights and conditioning; REPEAT_CHUNK chunks generated, ``chunks_after`` to go."""
    from bench import gpu
    from liveact.sampling.noise import SeededNoise
    from liveact.sampling.stream import StreamingSampler

    device = torch.device(mode.device)
    width, height = mode.sizes[0]
    model = gpu.build(get_preset(mode.preset), device, gpu.DTYPES[mode.dtype], seed=0)
    cond, feats = gpu.session(model, width, height, REPEAT_CHUNK + chunks_after, 0, device)
    sampler = StreamingSampler(model, cond, SeededNoise(0, device))
    for _ in range(REPEAT_CHUNK):
        sampler.next_chunk(feats)
    return Running(model, sampler, feats, device, f"{width}x{height}")


def step_repeat(mode: Mode) -> dict:
    from liveact.determinism import apply
    from liveact.sampling.state import export_sampler, restore_sampler

    policy = apply(torch.device(mode.device))
    run = running_session(mode, 1)
    with torch.no_grad():
        state = export_sampler(run.sampler)
        first = run.sampler.next_chunk(run.feats).latent.float().cpu()
        again = restore_sampler(run.model, state, run.device).next_chunk(run.feats).latent.float().cpu()
    return {"size": run.size, "chunk": REPEAT_CHUNK, "bitwise_equal": bool(torch.equal(first, again)),
            "max_abs_diff": float((first - again).abs().max()), "determinism": dataclasses.asdict(policy) if policy
            else None}  # fmt: skip


def step_capture(mode: Mode) -> dict:
    from liveact.sampling.capture import StateCapture
    from liveact.sampling.state import export_sampler

    run = running_session(mode, CAPTURE_CHUNKS_AFTER)
    with torch.no_grad():
        capture = StateCapture()
        captured = capture.capture(run.sampler)  # the copy is enqueued; the DiT thread goes on
        reference = export_sampler(run.sampler)  # the same state, copied synchronously (the compaction ran already)
        for _ in range(CAPTURE_CHUNKS_AFTER):  # the second rewrites the persistent slots: it waits for the copy
            run.sampler.next_chunk(run.feats)
        captured.wait()
        differ = [n for n, t in reference.items() if not torch.equal(captured.tensors[n].view(torch.uint8),
                                                                     t.view(torch.uint8))]  # fmt: skip
    return {"size": run.size, "bytes": capture.nbytes, "tensors": len(reference),
            "stall_ms": round(captured.stall_s * 1000, 3), "asynchronous": captured.done is not None,
            "pinned": all(t.is_pinned() for t in captured.tensors.values()) if run.device.type == "cuda" else None,
            "equal_export": not differ, "differing": differ[:5], "ok": not differ}  # fmt: skip


STEPS = ("machine", "tests", "bench", "plan", "load", "repeat", "capture")


def run_step(name: str, mode: Mode, bench: dict) -> dict:
    if name == "plan":
        return step_plan(mode, bench)
    return {"machine": step_machine, "tests": step_tests, "bench": step_bench, "load": step_load,
            "repeat": step_repeat, "capture": step_capture}[name](mode)  # fmt: skip


# -- the orchestrator ------------------------------------------------------------------------------------
def _in_process(name: str, cpu: bool, bench_file: Path) -> dict:
    """One step in a child process under its time limit: its JSON, or its error."""
    cmd = [sys.executable, "-m", "bench.gpu_check", "--step", name, "--bench-json", str(bench_file)]
    cmd += ["--cpu"] if cpu else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S[name])
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {STEP_TIMEOUT_S[name]} s", "seconds": STEP_TIMEOUT_S[name]}
    seconds = round(time.perf_counter() - t0, 2)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        return {"ok": False, "error": " | ".join(tail) or f"exit {proc.returncode}", "seconds": seconds}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"ok": result.pop("ok", True), **result, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/gpu-check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--cpu", action="store_true", help="the same steps with the tiny preset on the CPU (CI)")
    where = "default: $OUT/gpu-check.json where $OUT is set, else stdout only"
    ap.add_argument("--out", type=Path, default=None, help=f"JSON file to write ({where})")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    ap.add_argument("--bench-json", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    mode = Mode.of(args.cpu)

    if args.step:  # a child: one step, one JSON line
        bench = json.loads(args.bench_json.read_text()) if args.bench_json and args.bench_json.exists() else {}
        print(json.dumps(run_step(args.step, mode, bench)))
        return 0

    steps = args.steps.split(",")
    if unknown := [s for s in steps if s not in STEPS]:
        ap.error(f"unknown step(s) {unknown}; choose from {','.join(STEPS)}")
    report: dict = {"check": "gpu-check", "mode": "cpu" if args.cpu else "gpu", "preset": mode.preset,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        bench_file = Path(tmp) / "bench.json"
        for name in steps:
            print(f"gpu-check: {name} ...", file=sys.stderr, flush=True)
            result = _in_process(name, args.cpu, bench_file)
            report["steps"][name] = result
            if name == "bench" and result.get("ok"):
                bench_file.write_text(json.dumps(result))
            print(f"gpu-check: {name} {'ok' if result.get('ok') else 'FAILED'} in {result['seconds']} s",
                  file=sys.stderr, flush=True)  # fmt: skip
    report["ok"] = all(s.get("ok") for s in report["steps"].values())
    text = json.dumps(report, indent=1)
    out = args.out or (Path(os.environ["OUT"]) / "gpu-check.json" if os.environ.get("OUT") else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
