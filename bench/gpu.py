"""``liveact bench gpu``: the real 3-step loop of a preset (``liveact-18b`` by default) on one GPU.

The model is built with fresh random weights (``init_weights(seed)``), directly on the device in the
run dtype (the default dtype is switched while the modules are constructed, so 18B float32 parameters
are never materialised, neither on the CPU nor on the GPU; ``init_weights`` draws one module at a
time). The parameters ``FP32_PARAMETERS`` names stay float32, as at inference. For liveact-18b the
CPU generator of ``init_weights`` is the slow part of the set-up (about a minute); ``build_s`` says.

Per resolution (width x height in pixels; the latent grid follows from the VAE preset's stride and the
patch), a synthetic session (random conditioning ``y``, context and audio features) streams
``warmup + chunks`` chunks through ``StreamingSampler`` (the real per-step ConvKV caches, 3 forwards
per chunk); the ``warmup`` first chunks are not timed. With ``warmup >= 2`` every timed chunk is in the
steady state (full cache, update rule running). Each chunk is timed between device synchronisations.

Printed per resolution: ms per chunk (median, p90, each), ``fps`` = video frames of the timed chunks /
their seconds, ``tflops`` = the FLOPs of the timed chunks (``liveact.model.flops``: matmuls and
attention products, counted as ``FlopCounterMode`` counts) / their seconds / 1e12, peak device memory
(``torch.cuda.max_memory_allocated``, weights included; null on CPU) and the ConvKV cache bytes.
Also: the attention kernel that ``F.scaled_dot_product_attention`` picks under the requested
``--sdpa-backend`` (probed with the model's dtype and head size), dtype, and whether the FP8 KV cache
is on.

Without CUDA, ``--device cuda`` prints ``{"skipped": true, "reason": ...}`` and nothing is built.
``--device cpu`` with a small preset (``tiny``) runs for real; its TFLOP/s is then the CPU's.
A resolution that runs out of device memory (or has no attention kernel for the request) reports
``error`` and the next one still runs.

Memory of ``liveact-18b`` (from ``liveact info``): 35.5 GiB of bf16 weights plus the resident caches,
37.5 GiB at 416x720 and 32.8 GiB at 512x512 in bf16 (19.3 / 16.9 GiB with ``--fp8-kv``).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from liveact.config import LiveActConfig, get_preset
from liveact.model.attention import attend
from liveact.model.dit import LiveActDiT
from liveact.model.flops import FIRST_COMPACTING_CHUNK, chunk_flops_at, frame_tokens, latent_grid
from liveact.model.loading import build_model
from liveact.sampling.chunking import total_video_frames, video_frames_per_chunk
from liveact.sampling.denoise import Conditioning
from liveact.sampling.noise import SeededNoise
from liveact.sampling.stream import StreamingSampler

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
SDPA_BACKENDS: dict[str, list[SDPBackend] | None] = {
    "auto": None,  # let torch choose
    "flash": [SDPBackend.FLASH_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
}
# the aten op F.scaled_dot_product_attention dispatches to -> the kernel's name; the math kernel
# is a composite and shows up as its bmm products
_KERNEL_OPS = {
    "_scaled_dot_product_flash_attention": "flash",
    "_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "_scaled_dot_product_efficient_attention": "efficient",
    "_scaled_dot_product_cudnn_attention": "cudnn",
    "bmm": "math",
}
PROBE_TOKENS = 64  # query and key tokens of the backend probe
P90 = 90.0
TERA = 1e12
MS = 1000.0
MEMORY_HEADROOM = 0.9  # a preset whose weights exceed this share of the device's memory is not attempted


# ---------------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------------


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Construct modules with parameters in ``dtype`` (restores the previous default)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build(config: LiveActConfig, device: torch.device, dtype: torch.dtype, seed: int) -> LiveActDiT:
    """The DiT with fresh weights, built on ``device`` in ``dtype`` (``FP32_PARAMETERS`` in float32)."""
    with default_dtype(dtype):
        model = build_model(config, device=device, dtype=dtype)
    return model.to_runtime_dtype(dtype).init_weights(seed).eval()


def weight_bytes(config: LiveActConfig, dtype: torch.dtype) -> int:
    """Bytes of the parameters at run time, computed on the meta device (nothing allocated)."""
    meta = build_model(config, device="meta").to_runtime_dtype(dtype)
    return sum(p.numel() * p.element_size() for p in meta.parameters())


def device_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def session(
    model: LiveActDiT, width: int, height: int, chunks: int, seed: int, device: torch.device
) -> tuple[Conditioning, torch.Tensor]:
    """Random conditioning for a width x height stream and audio features for ``chunks`` chunks."""
    cfg = model.config
    m = cfg.model
    lat_h, lat_w = latent_grid(cfg, width, height)
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(1, m.cond_channels, cfg.memory.window_latent_frames, lat_h, lat_w, generator=g)
    text = torch.randn(m.text_len // 2, m.text_dim, generator=g)
    clip = torch.randn(1, m.clip_tokens, m.clip_dim, generator=g)
    feats = torch.randn(total_video_frames(cfg, chunks), m.audio_layers, m.audio_channels, generator=g)
    context = model.encode_context([text.to(device)], clip.to(device))
    return Conditioning(y=y.to(device), context=context), feats.to(device)


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------


def sdpa_context(backend: str):
    kernels = SDPA_BACKENDS[backend]
    return nullcontext() if kernels is None else sdpa_kernel(kernels)


def probe_attention_kernel(model: LiveActDiT, backend: str) -> str:
    """The kernel ``F.scaled_dot_product_attention`` runs for this model's dtype, head size and device."""
    heads, head_dim = model.local_heads, model.config.model.head_dim
    device = model.patch_embedding.weight.device
    q = torch.randn(1, PROBE_TOKENS, heads, head_dim, device=device, dtype=model.dtype)  # (B, S, H, D)
    cpu_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    try:
        with sdpa_context(backend), FlopCounterMode(display=False, custom_mapping={cpu_flash: _no_flops}) as counter:
            attend(q, q, q)
    except RuntimeError as exc:  # e.g. the flash kernel asked for float32 on a GPU
        return f"none ({_first_line(exc)})"
    seen = {getattr(op, "__name__", str(op)) for op in counter.get_flop_counts().get("Global", {})}
    names = [name for op, name in _KERNEL_OPS.items() if op in seen]
    return names[0] if names else "unknown"


def _no_flops(*args, **kwargs) -> int:
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_resolution(
    model: LiveActDiT, width: int, height: int, chunks: int, warmup: int, backend: str, seed: int
) -> dict:
    """Stream warmup + chunks chunks at width x height; figures of the timed ones."""
    config = model.config
    device = model.patch_embedding.weight.device
    fl = frame_tokens(config, width, height)
    cond, feats = session(model, width, height, warmup + chunks, seed, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    sampler = StreamingSampler(model, cond, SeededNoise(seed, device))
    seconds: list[float] = []
    with sdpa_context(backend):
        for _ in range(warmup + chunks):
            synchronize(device)
            t0 = time.perf_counter()
            sampler.next_chunk(feats)
            synchronize(device)
            seconds.append(time.perf_counter() - t0)
    timed = seconds[warmup:]
    indices = range(warmup, warmup + chunks)
    flops = [chunk_flops_at(config, fl, i).total for i in indices]
    frames = [video_frames_per_chunk(config, i) for i in indices]
    total_s = sum(timed)
    lat_h, lat_w = latent_grid(config, width, height)
    steady = chunk_flops_at(config, fl, FIRST_COMPACTING_CHUNK).total
    return {
        "width": width,
        "height": height,
        "latent_hw": [lat_h, lat_w],
        "frame_tokens": fl,
        "timed_chunk_indices": [indices.start, indices.stop - 1],
        "ms_per_chunk_median": round(MS * float(np.median(timed)), 3),
        "ms_per_chunk_p90": round(MS * float(np.percentile(timed, P90)), 3),
        "ms_per_chunk": [round(MS * s, 3) for s in timed],
        "warmup_ms": [round(MS * s, 3) for s in seconds[:warmup]],
        "video_frames_timed": sum(frames),
        "seconds_timed": total_s,
        "fps": sum(frames) / total_s,
        "flops_timed": sum(flops),
        "flops_per_steady_chunk": steady,
        "tflop_per_video_frame_steady": steady / video_frames_per_chunk(config, FIRST_COMPACTING_CHUNK) / TERA,
        "tflops": sum(flops) / total_s / TERA,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "cache_bytes": sampler.memory.nbytes(),
    }


# ---------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------


def skip_reason(device: torch.device) -> str | None:
    if device.type == "cuda" and not torch.cuda.is_available():
        return (
            f"CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "for a CPU run use --device cpu --preset tiny"
        )
    return None


def default_resolutions(config: LiveActConfig) -> list[tuple[int, int]]:
    """416x720 and 512x512 (the public recipe's sizes) for liveact-18b; the preset's own size otherwise."""
    from liveact.config import RESOLUTIONS

    return list(RESOLUTIONS) if config.name == "liveact-18b" else [(config.width, config.height)]


def run(
    preset: str = "liveact-18b",
    device: str = "cuda",
    resolutions: Sequence[tuple[int, int]] | None = None,
    chunks: int = 10,
    warmup: int = 2,
    dtype: str | None = None,
    sdpa_backend: str = "auto",
    fp8_kv: bool | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> dict:
    """Run the benchmark; see the module docstring. ``dtype`` None: bf16 on CUDA, fp32 on CPU.

    ``threads`` sets torch's intra-op threads for the run (None: torch's default, one per core).
    """
    if chunks < 1 or warmup < 0:
        raise ValueError(f"need --chunks >= 1 and --warmup >= 0, got {chunks} and {warmup}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if sdpa_backend not in SDPA_BACKENDS:
        raise ValueError(f"--sdpa-backend must be one of {sorted(SDPA_BACKENDS)}, got {sdpa_backend!r}")
    dev = torch.device(device)
    base = get_preset(preset)
    config = base if fp8_kv is None else dataclasses.replace(base, memory=dataclasses.replace(base.memory, fp8=fp8_kv))
    dtype_name = dtype or ("bf16" if dev.type == "cuda" else "fp32")
    if dtype_name not in DTYPES:
        raise ValueError(f"--dtype must be one of {sorted(DTYPES)}, got {dtype_name!r}")
    torch_dtype = DTYPES[dtype_name]
    sizes = list(resolutions) if resolutions else default_resolutions(config)
    for width, height in sizes:
        latent_grid(config, width, height)  # refuse a bad size before anything is built
        frame_tokens(config, width, height)
    head = {
        "benchmark": "gpu",
        "preset": config.name,
        "device": str(dev),
        "dtype": dtype_name,
        "fp8_kv": config.memory.fp8,
        "sdpa_backend_requested": sdpa_backend,
        "chunks": chunks,
        "warmup": warmup,
        "torch": torch.__version__,
    }
    reason = skip_reason(dev)
    if reason is None:
        weights = weight_bytes(config, torch_dtype)
        available = device_memory_bytes(dev)
        if weights > MEMORY_HEADROOM * available:
            reason = (
                f"{config.name} needs {weights / 2**30:.1f} GiB of {dtype_name} weights; "
                f"{dev} has {available / 2**30:.1f} GiB"
            )
    if reason is not None:
        return {**head, "skipped": True, "reason": reason}

    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return {
            **head,
            "skipped": False,
            **_measure(config, dev, torch_dtype, sizes, chunks, warmup, sdpa_backend, seed),
        }
    finally:
        torch.set_num_threads(previous_threads)


def _measure(
    config: LiveActConfig,
    dev: torch.device,
    torch_dtype: torch.dtype,
    sizes: Sequence[tuple[int, int]],
    chunks: int,
    warmup: int,
    sdpa_backend: str,
    seed: int,
) -> dict:
    with torch.no_grad():
        t0 = time.perf_counter()
        model = build(config, dev, torch_dtype, seed)
        synchronize(dev)
        build_s = time.perf_counter() - t0
        kernel = probe_attention_kernel(model, sdpa_backend)
        results = []
        for width, height in sizes:
            try:
                results.append(time_resolution(model, width, height, chunks, warmup, sdpa_backend, seed))
            except (torch.OutOfMemoryError, RuntimeError) as exc:  # no memory, or no kernel for the request
                results.append({"width": width, "height": height, "error": _first_line(exc)})
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return {
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "attention_backend": kernel,
        "parameters": model.num_parameters(),
        "weights_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "build_s": round(build_s, 3),
        "resolutions": results,
    }
