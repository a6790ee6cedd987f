"""Generator settings (flags, with ``LIVEACT_*`` environment fallbacks)."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from liveact.config import get_preset, preset_names
from liveact.parallel.ranks import RankSpec
from liveact.parallel.tp import check_tp
from liveact.pipeline.engine import DTYPES, KV_CACHES
from liveact.state.backoff import Backoff
from liveact.state.settings import StoreSettings
from liveact.vae.session import DECODE_MODES as SESSION_DECODE_MODES
from liveact.vae.session import DEFAULT_DECODE_MODE, DecodeMode
from services.common.settings import ServerSettings
from services.generator.checkpoint import CheckpointPolicy

DECODE_MODES = ("auto", *SESSION_DECODE_MODES)


CLIENT_NAME_CHARS = 100  # Redis client names of this generator's connections, before the "-rank<r>" suffix
RANK0_SUFFIX = "-rank0"  # rank 0's connections; worker rank r's end in "-rank<r>" (TensorParallelRanks.attach_store)


@dataclass(frozen=True)
class GeneratorSettings(ServerSettings):
    preset: str = "tiny"  # model preset: tiny (built-in weights), liveact-18b (--model-dir)
    model_dir: str = ""  # local weights directory; empty = the preset's built-in weights
    audio_encoder: str = ""  # host:port of the audio encoder service (required)
    decoder: str = ""  # host:port of the decoder service (required)
    max_sessions: int = 4  # concurrent Animate streams; more are refused with RESOURCE_EXHAUSTED
    audio_queue: int = 32  # client audio pieces (<= 64 KiB each) buffered ahead of the encoder, then back-pressure
    chunk_queue: int = 4  # chunks generated ahead of what the client has taken (decoder + queues), then back-pressure
    max_image_mb: int = 16  # reference image bytes
    seed: int = 0  # used when building fresh weights
    dtype: str = "auto"  # the DiT's runtime dtype: auto (bf16 on CUDA, fp32 on CPU), bf16 or fp32
    kv_cache: str = "auto"  # ConvKV cache storage: auto (the preset's), fp8 (e4m3 + scales: half the bytes) or model
    # durable sessions (checkpoints in Redis); an empty --redis-url turns them off
    redis_url: str = ""  # e.g. redis://host:6379/0 or rediss://host:6380/0 (TLS)
    redis_password: str = ""  # better given as LIVEACT_REDIS_PASSWORD than as a flag
    redis_username: str = ""  # Redis ACL user; empty = the default user
    redis_tls: bool = False  # TLS to Redis (also implied by a rediss:// url)
    redis_cluster: bool = False  # Redis Cluster: --redis-url names one node, the others are discovered
    redis_tls_ca_file: str = ""  # CA bundle that signed the Redis certificate; empty = system CAs
    redis_tls_cert_file: str = ""  # client certificate for mutual TLS (with --redis-tls-key-file)
    redis_tls_key_file: str = ""  # client key for mutual TLS
    redis_key_prefix: str = "liveact"  # every key starts with it: deployments can share one Redis
    checkpoint_every_chunks: int = 4  # checkpoint after every N chunks (0 = not by count)
    checkpoint_every_s: float = 0.0  # and/or every S seconds (0 = not by time)
    # a per-rank write budget: after a checkpoint that sent B bytes per rank the next comes no sooner than
    # B / budget; liveact-18b at 416x720, TP=1: 17.3 GB first, 11.5 GB later (the sink slots and conditioning
    # are shared), so 500 MB/s spaces checkpoints 35 s, then 23 s apart (`liveact plan`)
    checkpoint_mbps: float = 0.0  # per-rank checkpoint write budget, MB/s (0 = none)
    checkpoint_max_interval_s: float = 0.0  # a checkpoint at least this often, where the budget allows (0 = none)
    checkpoint_part_mb: int = 64  # largest Redis value a checkpoint is split into
    session_ttl_s: float = 3600.0  # a session not written for this long expires from Redis
    lease_ttl_s: float = 30.0  # a generator that stops renewing a session lease loses it after this
    replica_id: str = ""  # this generator's name in session leases (default: hostname-pid)
    # how the decoder decodes: "stream" keeps the VAE causal cache (bit-exact with one whole decode; its
    # state is ~9.5 KB per output pixel for the Wan VAE), "context" the public 3-latent context (state
    # ~0.45 MB at 416x720); "auto" = context, what the VAEs are trained for (the public one and the built-in)
    decode_mode: str = "auto"  # VAE decoding: stream (causal cache, exact), context (3-latent re-decode) or auto
    audio_log_max_mb: int = 64  # audio logged without a checkpoint commit before the log is dropped
    store_check_s: float = 2.0  # how often health checks the session store (degraded while it is away)
    # tensor parallelism: this pod runs the DiT on --tp ranks (rank 0 serves gRPC, the others are its child
    # processes; gloo on CPU, NCCL on GPU with one GPU per rank). A rank that exits, or an operation that runs
    # longer than --tp-timeout-s (a hang), turns the pod NOT_SERVING and ends it within --tp-check-s
    tp: int = 1  # tensor-parallel ranks (GPUs) of this pod
    tp_timeout_s: float = 30.0  # longest one step of every session on every rank may take
    tp_check_s: float = 0.5  # how often the ranks are checked
    tp_threads: int = 0  # torch threads per rank on CPU (0 = cores / tp)
    # memory: before serving, the generator dry-runs --max-sessions sessions at --max-size (``liveact plan``)
    # and refuses to start when rank 0's peak exceeds the device's free memory, naming what would fit
    # --max-size empty: the preset's default size where memory is checked (CUDA or a budget), else any size
    max_size: str = ""  # largest session WIDTHxHEIGHT (pixels) admitted, and planned for
    memory_budget_gb: float = 0.0  # check against this many GiB instead of the GPU's free memory (also on CPU)

    def validate(self) -> None:
        super().validate()
        problems = []
        if self.preset not in preset_names():
            problems.append(f"--preset {self.preset!r} must be one of {preset_names()}")
        for flag, addr in (("--audio-encoder", self.audio_encoder), ("--decoder", self.decoder)):
            if ":" not in addr:
                problems.append(f"{flag} must be host:port of the service (got {addr!r})")
        if self.decode_mode not in DECODE_MODES:
            problems.append(f"--decode-mode {self.decode_mode!r} must be one of {sorted(DECODE_MODES)}")
        if min(self.max_sessions, self.audio_queue, self.chunk_queue, self.max_image_mb) < 1:
            problems.append("--max-sessions, --audio-queue, --chunk-queue and --max-image-mb must be >= 1")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            problems.append(f"--dtype {self.dtype!r} must be auto or one of {sorted(DTYPES)}")
        if self.kv_cache not in KV_CACHES:
            problems.append(f"--kv-cache {self.kv_cache!r} must be one of {list(KV_CACHES)}")
        if self.tp < 1:
            problems.append(f"--tp {self.tp} must be >= 1 (the number of tensor-parallel ranks, one GPU each)")
        elif self.preset in preset_names():
            try:
                check_tp(get_preset(self.preset).model, self.tp)
            except ValueError as exc:
                problems.append(f"--tp: {exc}")
        try:
            self.max_pixels()
        except ValueError as exc:
            problems.append(str(exc))
        if self.memory_budget_gb < 0:
            problems.append(f"--memory-budget-gb {self.memory_budget_gb} must be >= 0 (0 = the GPU's free memory)")
        if self.tp_timeout_s <= 0 or self.tp_check_s <= 0 or self.tp_threads < 0:
            problems.append("--tp-timeout-s and --tp-check-s must be > 0, --tp-threads >= 0")
        if self.redis_url:
            problems += [f"--redis-*: {p}" for p in self.store_settings().validate()]
            if self.audio_log_max_mb < 1:
                problems.append(f"--audio-log-max-mb {self.audio_log_max_mb} must be >= 1")
            if self.store_check_s <= 0:
                problems.append(f"--store-check-s {self.store_check_s} must be > 0")
            rules = (self.checkpoint_every_chunks, self.checkpoint_every_s, self.checkpoint_max_interval_s)
            if min(*rules, self.checkpoint_mbps) < 0:
                problems.append(
                    "--checkpoint-every-chunks, --checkpoint-every-s, --checkpoint-max-interval-s and "
                    "--checkpoint-mbps must be >= 0"
                )
            elif not any(rules):
                problems.append(
                    "set --checkpoint-every-chunks, --checkpoint-every-s or --checkpoint-max-interval-s "
                    "(or leave --redis-url empty)"
                )
        if problems:
            raise ValueError("; ".join(problems))

    def max_dimensions(self) -> tuple[int, int]:
        """--max-size as (width, height); the preset's default size when empty."""
        if not self.max_size:
            config = get_preset(self.preset) if self.preset in preset_names() else get_preset("tiny")
            return config.width, config.height
        try:
            w, h = (int(v) for v in self.max_size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--max-size {self.max_size!r} must be WIDTHxHEIGHT, e.g. 416x720") from None
        if w <= 0 or h <= 0 or w % 16 or h % 16:
            raise ValueError(f"--max-size {self.max_size!r}: width and height must be positive multiples of 16")
        return w, h

    def max_pixels(self) -> int:
        w, h = self.max_dimensions()
        return w * h

    def store_settings(self) -> StoreSettings:
        return StoreSettings(
            url=self.redis_url,
            password=self.redis_password or None,
            username=self.redis_username or None,
            tls=self.redis_tls,
            cluster=self.redis_cluster,
            tls_ca_file=self.redis_tls_ca_file or None,
            tls_cert_file=self.redis_tls_cert_file or None,
            tls_key_file=self.redis_tls_key_file or None,
            key_prefix=self.redis_key_prefix,
            part_bytes=self.checkpoint_part_mb * 1024 * 1024,
            session_ttl_s=self.session_ttl_s,
            lease_ttl_s=self.lease_ttl_s,
            client_name=re.sub(r"[^!-~]", "_", f"liveact-{self.owner}")[:CLIENT_NAME_CHARS] + RANK0_SUFFIX,
        )

    def rank_spec(self) -> RankSpec:
        return RankSpec(
            tp=self.tp, preset=self.preset, model_dir=self.model_dir, device=self.device, seed=self.seed,
            timeout_s=self.tp_timeout_s, threads=self.tp_threads, dtype=self.dtype, kv_cache=self.kv_cache,
        )  # fmt: skip

    def checkpoint_policy(self) -> CheckpointPolicy:
        return CheckpointPolicy(
            every_chunks=self.checkpoint_every_chunks, every_s=self.checkpoint_every_s,
            budget_mbps=self.checkpoint_mbps, max_interval_s=self.checkpoint_max_interval_s,
        )  # fmt: skip

    def backoff(self) -> Backoff:
        return Backoff()

    @property
    def session_decode_mode(self) -> DecodeMode:
        """ "stream" or "context" for every session (auto: the library's default, what the VAEs are trained for)."""
        return DEFAULT_DECODE_MODE if self.decode_mode == "auto" else self.decode_mode  # type: ignore[return-value]

    @property
    def owner(self) -> str:
        return self.replica_id or f"{socket.gethostname()}-{os.getpid()}"
