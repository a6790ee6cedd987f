"""``EncoderSettings``: the common server flags plus the encoder's own (each also ``LIVEACT_<NAME>``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from liveact.audio import AudioConfig
from liveact.config import ConfigError, get_preset
from liveact.weight_files import CheckpointError, audio_dir
from services.common.settings import ServerSettings

__all__ = ["EncoderSettings"]

_MIN_PCM_BYTES = 1024
_MAX_THREADS = 4  # default cap on the compute threads


@dataclass(frozen=True)
class EncoderSettings(ServerSettings):
    port: int = 50052  # generator 50051, audio encoder 50052, decoder 50053
    preset: str = "tiny"  # whose feature layout: tiny -> mel 4 x 32, liveact-18b -> wav2vec2 12 x 768
    # wav2vec2 weights: their folder (config.json + weights), or a model directory holding wav2vec2/ or
    # chinese-wav2vec2-base/ (the release's published name); needed for the 12 x 768 layout
    weights_dir: str = ""  # local wav2vec2 directory, or a model directory holding one
    max_streams: int = 16  # concurrent Encode streams; more get RESOURCE_EXHAUSTED
    max_pcm_bytes_per_message: int = 0  # a bigger pcm message gets INVALID_ARGUMENT; 0 = --max-message-mb
    threads: int = 0  # threads running feature extraction off the event loop; 0 = one per core, at most 4

    def validate(self) -> None:
        problems = []
        try:
            super().validate()
        except ValueError as exc:
            problems.append(str(exc))
        try:
            backend = self.audio_config.backend
        except ConfigError as exc:
            problems.append(f"--preset: {exc}")
            backend = None
        if backend == "wav2vec2":
            if not self.weights_dir:
                problems.append(
                    f"--preset {self.preset} makes wav2vec2 rows: set --weights-dir to a local wav2vec2 directory "
                    "(config.json + weights)"
                )
            else:
                try:
                    audio_dir(self.weights_dir)
                except CheckpointError as exc:
                    problems.append(f"--weights-dir: {exc}")
        if self.max_streams < 1:
            problems.append(f"--max-streams {self.max_streams} must be >= 1")
        if self.max_pcm_bytes_per_message and self.max_pcm_bytes_per_message < _MIN_PCM_BYTES:
            problems.append(
                f"--max-pcm-bytes-per-message {self.max_pcm_bytes_per_message} must be >= {_MIN_PCM_BYTES} "
                "(or 0 for the gRPC message limit, --max-message-mb)"
            )
        if self.threads < 0:
            problems.append(f"--threads {self.threads} must be >= 0 (0 = one per core, at most {_MAX_THREADS})")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def audio_config(self) -> AudioConfig:
        """The preset's feature layout: the mel backend for the tiny preset, wav2vec2 for 12 x 768."""
        return AudioConfig.for_model(get_preset(self.preset).model)

    @property
    def pcm_limit(self) -> int:
        """Bytes of PCM one message may carry (gRPC refuses whole messages over ``max_message_bytes`` first)."""
        return min(self.max_pcm_bytes_per_message or self.max_message_bytes, self.max_message_bytes)

    @property
    def compute_threads(self) -> int:
        return self.threads or min(_MAX_THREADS, os.cpu_count() or 1)
