"""Generator settings (flags, with ``LIVEACT_*`` environment fallbacks)."""

from __future__ import annotations

from dataclasses import dataclass

from liveact.config import preset_names
from services.common.settings import ServerSettings


@dataclass(frozen=True)
class GeneratorSettings(ServerSettings):
    preset: str = "tiny"
    model_dir: str = ""  # local weights directory; empty = the preset's built-in weights
    audio_encoder: str = ""  # host:port of the audio encoder service (required)
    decoder: str = ""  # host:port of the decoder service (required)
    max_sessions: int = 4  # concurrent Animate streams; more are refused with RESOURCE_EXHAUSTED
    audio_queue: int = 32  # client audio pieces (<= 64 KiB each) buffered ahead of the encoder, then back-pressure
    chunk_queue: int = 4  # chunks generated ahead of what the client has taken (decoder + queues), then back-pressure
    max_image_mb: int = 16  # reference image bytes
    seed: int = 0  # used when building fresh weights

    def validate(self) -> None:
        super().validate()
        problems = []
        if self.preset not in preset_names():
            problems.append(f"--preset {self.preset!r} must be one of {preset_names()}")
        for flag, addr in (("--audio-encoder", self.audio_encoder), ("--decoder", self.decoder)):
            if ":" not in addr:
                problems.append(f"{flag} must be host:port of the service (got {addr!r})")
        if min(self.max_sessions, self.audio_queue, self.chunk_queue, self.max_image_mb) < 1:
            problems.append("--max-sessions, --audio-queue, --chunk-queue and --max-image-mb must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))
