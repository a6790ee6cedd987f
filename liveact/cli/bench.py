"""``liveact bench ...``: benchmarks that print JSON figures (code in ``bench/``)."""

from __future__ import annotations

import argparse
import importlib
import json
from types import ModuleType

from liveact.config import get_preset
from liveact.source_tree import require


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark and print its figures as JSON",
        description="Benchmarks print JSON figures; speed targets live here, not in tests.",
    )
    bsub = p.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    m = bsub.add_parser(
        "memory",
        help="ConvKV memory flatness against the unbounded-cache baseline",
        description="Stream CHUNKS chunks with the ConvKV memory and BASELINE_CHUNKS with the unbounded "
        "baseline; print per-chunk latency medians (first and last 20 chunks, and their ratio) and "
        "resident cache bytes for each.",
    )
    m.add_argument("--preset", default="tiny", help="preset (default: tiny)")
    m.add_argument("--chunks", type=int, default=200, help="ConvKV chunks to stream (default: 200)")
    m.add_argument(
        "--baseline-chunks",
        type=int,
        default=None,
        help="unbounded-baseline chunks (default: min(chunks, 60); its cost grows quadratically)",
    )
    m.add_argument("--pixels", type=int, default=128, help="square frame size in pixels (default: 128)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    m.set_defaults(func=run_memory)

    pl = bsub.add_parser(
        "pipeline",
        help="throughput and time to first frame: in-process pipeline against the three services on loopback",
        description="In one run on the same inputs (examples/face.png and the first SECONDS of examples/speech.wav, "
        "pushed in 100 ms pieces as fast as possible): generate with AnimationSession in this process, then start "
        "audio-encoder, decoder and generator as separate processes on loopback and generate through "
        "liveact.client.animate. Each path is warmed up with one short session first; repeats are interleaved and "
        "their median reported. Prints fps, time to first frame and CPU per frame for each path, the throughput "
        "ratio services / in-process and the overhead (target: at most 10 percent; reported, not asserted). "
        "Wall-clock figures on a shared machine are noisy: compare runs taken under the same load.",
    )
    pl.add_argument("--preset", default="tiny", help="preset (default: tiny)")
    pl.add_argument("--seconds", type=float, default=10.0, help="seconds of speech (default: 10; the clip repeats)")
    size = pl.add_mutually_exclusive_group()
    size.add_argument("--size", default=None, help="frame size WxH, multiples of 16 (default: the preset's)")
    size.add_argument("--pixels", type=int, default=None, help="square frame size in pixels (same as --size NxN)")
    pl.add_argument(
        "--format",
        type=str.upper,
        choices=("JPEG", "RAW_RGB"),
        default="JPEG",
        help="frames the services return (default: JPEG); the in-process path always yields uint8 arrays",
    )
    pl.add_argument(
        "--repeats", type=int, default=3, help="timed runs per path, interleaved; the median is reported (default: 3)"
    )
    pl.add_argument("--realtime", action="store_true", help="also run both paths with audio sent at real-time pace")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads in this process and in each service process (default: torch's, one per core)",
    )
    pl.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    pl.set_defaults(func=run_pipeline)

    ck = bsub.add_parser(
        "checkpoint",
        help="durable sessions: checkpoint bytes and Redis write/read time, fps with checkpoints on/off, resume time",
        description="In one run with a private redis-server, one audio encoder, one decoder and several generators: "
        "the bytes of a real session checkpoint per part and the median SessionStore write/read time of it; "
        "throughput for the first SECONDS of examples/speech.wav (as fast as possible) on a generator that "
        "checkpoints every EVERY_CHUNKS chunks against one without Redis (and one with the default policy), "
        "interleaved, medians (target: at most 3 % slower; reported, not asserted), and CPU per frame with the audio "
        "sent at real-time pace; the time from an EXACT "
        "ResumeRequest to the first FrameChunk and to SessionEnd after the session's generator got SIGKILL; and "
        "the computed checkpoint size of liveact-18b (416x720 and 512x512, bf16 and fp8, TP 1, 2, 4).",
    )
    ck.add_argument("--preset", default="tiny", help="preset (default: tiny)")
    ck.add_argument("--seconds", type=float, default=10.0, help="seconds of speech per fps run (default: 10)")
    ck.add_argument("--size", default=None, help="frame size WxH, multiples of 16 (default: the preset's)")
    ck.add_argument(
        "--format", type=str.upper, choices=("JPEG", "RAW_RGB"), default="JPEG",
        help="frames the decoder returns (default: JPEG)",
    )  # fmt: skip
    ck.add_argument("--repeats", type=int, default=5, help="fps runs per generator, interleaved (default: 5)")
    ck.add_argument(
        "--every-chunks", type=int, default=1, help="--checkpoint-every-chunks of the 'on' generator (default: 1)"
    )
    ck.add_argument(
        "--default-policy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure a generator with the default checkpoint policy (default: yes)",
    )
    ck.add_argument(
        "--realtime-repeats",
        type=int,
        default=5,
        help="runs per generator (on, off) with audio sent at real-time pace, interleaved, for CPU per frame "
        "(default: 5; 0 skips)",
    )
    ck.add_argument(
        "--resume-seconds",
        type=float,
        default=8.0,
        help="seconds of speech of the real-time session that is killed and resumed (default: 8, at least 6)",
    )
    ck.add_argument("--store-repeats", type=int, default=7, help="write/read calls timed against Redis (default: 7)")
    ck.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    ck.set_defaults(func=run_checkpoint)

    rh = bsub.add_parser(
        "rehearsal",
        help="checkpoints at liveact-18b's real tensor layout, scaled down, through the real store and a real Redis",
        description="A synthetic DiT loop holds every tensor of liveact-18b's checkpoint (--size, --tp, --kv-cache; "
        "from liveact plan's dry run) at 1/N of its bytes and checkpoints it as the generator does: a copy into "
        "preallocated buffers (the stall), then every rank's parts written in the background through SessionStore "
        "into a private redis-server, spaced by a per-rank --budget-mbps. Phases with and without checkpoints "
        "alternate. Prints the stall (p50, max), the loop's throughput ratio, bytes per version (first, later), the "
        "write bandwidth against the budget, Redis memory per session, the read-back time, and each figure "
        "extrapolated to full size for TP 1, 2 and 4.",
    )
    rh.add_argument("--scale", default="1/32", help="tensor size as a fraction 1/N of the real one (default 1/32)")
    rh.add_argument("--tp", type=int, default=2, help="tensor-parallel ranks whose shards are written (default 2)")
    rh.add_argument("--size", default="416x720", help="session size WxH (default 416x720)")
    rh.add_argument("--kv-cache", choices=("bf16", "fp8"), default="bf16", help="cache storage (default bf16)")
    rh.add_argument(
        "--budget-mbps", type=float, default=500.0,
        help="per-rank write budget at full size, MB/s (default 500); the scaled writes get 1/N of it",
    )  # fmt: skip
    rh.add_argument("--seconds", type=float, default=15.0, help="seconds per phase (default 15)")
    rh.add_argument("--repeats", type=int, default=3, help="phases with and without checkpoints each (default 3)")
    rh.add_argument(
        "--pin", action=argparse.BooleanOptionalAction, default=True,
        help="the loop thread on a CPU of its own, the writes and redis-server on the others, as on a GPU host "
        "whose DiT thread waits on the GPU while other cores write (default: yes; --no-pin shares every CPU)",
    )  # fmt: skip
    rh.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    rh.set_defaults(func=run_rehearsal)

    tp = bsub.add_parser(
        "tp",
        help="tensor-parallel rollout on CPU ranks (gloo) against one process: latents equal within fp32 tolerance",
        description="Stream CHUNKS chunks of a small seeded model in this process and as RANKS torchrun processes "
        "with the DiT sharded by attention heads (DeepSpeed, gloo); print the largest latent difference per chunk "
        "(tolerance 1e-4), ConvKV cache bytes per rank and seconds per chunk.",
    )
    tp.add_argument("--ranks", type=int, default=2, help="tensor-parallel ranks (must divide 4 heads; default: 2)")
    tp.add_argument("--chunks", type=int, default=5, help="chunks to stream (default: 5)")
    tp.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    tp.set_defaults(func=run_tp)

    ld = bsub.add_parser(
        "loading",
        help="peak host memory while loading the DiT at real widths (TP=1 and each TP rank) vs its weights' bytes",
        description="Write a liveact-18b-width model with LAYERS blocks as sharded bf16 safetensors, load it in a "
        "fresh process per case into bf16 on the CPU (TP=1, and each rank of each --tp reading only its slices) "
        "and print each case's peak RSS growth over its weights' bytes (target: at most 1.15), plus liveact-18b's "
        "weights bytes per rank for TP 1/2/4/8.",
    )
    ld.add_argument("--layers", type=int, default=1, help="DiT blocks (default: 1, 1.45 GiB of bf16 weights)")
    ld.add_argument("--tp", default="1,2", help="tensor-parallel sizes, comma-separated (default: 1,2)")
    ld.add_argument("--shard-mb", type=int, default=256, help="checkpoint shard size in MiB (default: 256)")
    ld.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    ld.set_defaults(func=run_loading)

    gpu = bsub.add_parser(
        "gpu",
        help="the real 3-step loop of liveact-18b on one GPU: ms per chunk, fps, TFLOP/s, peak memory",
        description="Build PRESET with random weights directly on DEVICE in DTYPE and stream WARMUP + CHUNKS chunks "
        "per resolution through the real StreamingSampler (3 denoising steps per chunk against the per-step ConvKV "
        "caches); the warm-up chunks are not timed (with --warmup 2 or more every timed chunk is in the steady state: "
        "full cache, update rule running). Prints per resolution: ms per chunk (median, p90), fps (video frames of the "
        "timed chunks / their seconds), TFLOP/s (FLOPs of those chunks from liveact.model.flops / their seconds), "
        "peak GPU memory (torch.cuda.max_memory_allocated, weights included) and cache bytes; and the attention "
        "kernel F.scaled_dot_product_attention runs, the dtype and whether the FP8 KV cache is on. Without CUDA, "
        '--device cuda prints {"skipped": true, "reason": ...} and exits 0; --device cpu --preset tiny runs on '
        "the CPU (the TFLOP/s is then the CPU's). liveact-18b needs 35.5 GiB of bf16 weights plus its caches "
        "(37.5 GiB at 416x720 in bf16, 19.3 GiB with --fp8-kv): use --fp8-kv on an 80 GB GPU.",
    )
    gpu.add_argument("--preset", default="liveact-18b", help="preset (default: liveact-18b)")
    gpu.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    gpu.add_argument(
        "--resolutions",
        default=None,
        help="comma-separated WxH frame sizes in pixels, multiples of 16 "
        "(default: 416x720,512x512 for liveact-18b, the preset's size otherwise)",
    )
    gpu.add_argument("--chunks", type=int, default=10, help="timed chunks per resolution (default: 10)")
    gpu.add_argument("--warmup", type=int, default=2, help="untimed chunks before them (default: 2)")
    gpu.add_argument(
        "--dtype",
        choices=("bf16", "fp32"),
        default=None,
        help="weights and caches (default: bf16 on cuda, fp32 on cpu)",
    )
    gpu.add_argument(
        "--sdpa-backend",
        choices=("auto", "flash", "efficient", "math"),
        default="auto",
        help="restrict F.scaled_dot_product_attention to this kernel (torch.nn.attention.sdpa_kernel; default: auto)",
    )
    gpu.add_argument(
        "--fp8-kv",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="store the ConvKV caches as float8 e4m3 with per-(token, head) scales (default: the preset's setting)",
    )
    gpu.add_argument("--seed", type=int, default=0, help="weights, conditioning and noise seed (default: 0)")
    gpu.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")

    tel = bsub.add_parser(
        "telemetry",
        help="what traces, metrics and log correlation cost per chunk, off (the default) and on",
        description="Run the telemetry calls the three services make for one chunk (trace context on every PCM "
        "piece and on the latents, the chunk's root and child spans, the encoder's and decoder's spans, every "
        "metric) CHUNKS times in this process, with telemetry off (no endpoint, no metrics port) and then on "
        "(a real TracerProvider and BatchSpanProcessor whose exporter drops the batches, a MeterProvider). Prints "
        "microseconds per chunk (median of REPEATS) and that as a percentage of a chunk's real-time duration.",
    )
    tel.add_argument("--chunks", type=int, default=2000, help="chunks per timed run (default: 2000)")
    tel.add_argument("--pieces", type=int, default=16, help="PCM pieces per chunk (default: 16, 100 ms AudioChunks)")
    tel.add_argument("--repeats", type=int, default=5, help="timed runs per mode; the median is reported (default: 5)")
    tel.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    tel.set_defaults(func=run_telemetry)
    gpu.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    gpu.set_defaults(func=run_gpu)


def _bench_module(name: str) -> ModuleType:
    """``bench.<name>`` from the source tree (the benchmarks start the services too; neither is in the wheel)."""
    require("bench", "bench")
    require("services", "bench")
    return importlib.import_module(f"bench.{name}")


def run_memory(args: argparse.Namespace) -> int:
    memory = _bench_module("memory")

    if args.chunks < 2 * memory.WINDOW:
        raise ValueError(f"--chunks must be at least {2 * memory.WINDOW} to compare first and last {memory.WINDOW}")
    baseline = args.baseline_chunks if args.baseline_chunks is not None else min(args.chunks, 60)
    result = memory.run(get_preset(args.preset), args.pixels, args.chunks, baseline, args.seed)
    print(json.dumps(result, indent=2))
    return 0


def run_pipeline(args: argparse.Namespace) -> int:
    pipeline = _bench_module("pipeline")
    from liveact.cli.animate import parse_size

    size = f"{args.pixels}x{args.pixels}" if args.pixels is not None else args.size
    width, height = parse_size(size, args.preset)
    result = pipeline.run(
        args.preset, args.seconds, width, height, args.format, args.repeats, args.realtime, args.seed, args.threads
    )  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


def run_rehearsal(args: argparse.Namespace) -> int:
    rehearsal = _bench_module("rehearsal")
    from liveact.cli.animate import parse_wxh

    one, _, n = args.scale.partition("/")
    if one != "1" or not n.isdigit() or int(n) < 1:
        raise ValueError(f"--scale {args.scale!r}: expected 1/N, e.g. 1/32")
    width, height = parse_wxh(args.size)
    bench = rehearsal.Rehearsal(
        scale=int(n), tp=args.tp, width=width, height=height, kv_cache=args.kv_cache,
        budget_mbps=args.budget_mbps, seconds=args.seconds, repeats=args.repeats, pin=args.pin,
    )  # fmt: skip
    print(json.dumps(rehearsal.run(bench), indent=2))
    return 0


def run_tp(args: argparse.Namespace) -> int:
    tp = _bench_module("tp")

    print(json.dumps(tp.run(args.ranks, args.chunks), indent=2))
    return 0


def run_loading(args: argparse.Namespace) -> int:
    loading = _bench_module("loading")
    tps = tuple(int(t) for t in args.tp.split(",") if t.strip())
    print(json.dumps(loading.run(args.layers, tps, args.shard_mb), indent=2))
    return 0


def run_gpu(args: argparse.Namespace) -> int:
    gpu = _bench_module("gpu")
    from liveact.cli.animate import parse_wxh

    sizes = None if args.resolutions is None else [parse_wxh(r) for r in args.resolutions.split(",") if r.strip()]
    result = gpu.run(
        args.preset, args.device, sizes, args.chunks, args.warmup, args.dtype, args.sdpa_backend, args.fp8_kv,
        args.seed, args.threads,
    )  # fmt: skip
    print(json.dumps(result, indent=2))
    return 1 if any("error" in r for r in result.get("resolutions", [])) else 0


def run_telemetry(args: argparse.Namespace) -> int:
    telemetry = _bench_module("telemetry")

    print(json.dumps(telemetry.run(args.chunks, args.pieces, args.repeats), indent=2))
    return 0


def run_checkpoint(args: argparse.Namespace) -> int:
    checkpoint = _bench_module("checkpoint")
    from liveact.cli.animate import parse_size

    width, height = parse_size(args.size, args.preset)
    result = checkpoint.run(
        checkpoint.CheckpointBench(
            preset=args.preset, seconds=args.seconds, width=width, height=height, output_format=args.format,
            repeats=args.repeats, every_chunks=args.every_chunks, default_policy=args.default_policy,
            realtime_repeats=args.realtime_repeats, resume_seconds=args.resume_seconds,
            store_repeats=args.store_repeats,
        )
    )  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0
