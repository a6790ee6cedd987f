"""``DecoderSettings``: the common server flags plus the decoder's own (each also ``LIVEACT_<NAME>``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from liveact.vae import vae_preset_names
from liveact.vae.loading import vae_source
from liveact.weight_files import builtin_vae_dir
from services.common.settings import ServerSettings

__all__ = ["FRESH_WEIGHTS_PRESET", "DecoderSettings"]

FRESH_WEIGHTS_PRESET = "tiny"  # the only VAE preset that may run on fresh weights, as in liveact.pipeline.engine


@dataclass(frozen=True)
class DecoderSettings(ServerSettings):
    port: int = 50053  # generator 50051, audio encoder 50052, decoder 50053
    vae_preset: str = "tiny"  # a liveact.vae preset; streams must name the same one in DecodeConfig.vae_preset
    # --weights-dir: a diffusers-format VAE directory, a Wan2.1_VAE.pth (the release's original layout), or a
    # model directory holding vae/ or Wan2.1_VAE.pth (the release as published)
    weights_dir: str = ""  # VAE weights (see above); empty = the built-in weights, else fresh (tiny only)
    max_streams: int = 16  # concurrent Decode streams; more get RESOURCE_EXHAUSTED
    max_latent_elements: int = 16 * 16 * 128 * 128  # per chunk (16 MiB of float32: 16 latent frames at 1024x1024)

    def validate(self) -> None:
        problems = []
        try:
            super().validate()
        except ValueError as exc:
            problems.append(str(exc))
        if self.vae_preset not in vae_preset_names():
            problems.append(f"--vae-preset {self.vae_preset!r} must be one of {vae_preset_names()}")
        elif self.weights_dir:
            if vae_source(self.weights_dir) is None:
                problems.append(
                    f"--weights-dir {self.weights_dir!r} holds no VAE: give a diffusers VAE directory, "
                    "a Wan2.1_VAE.pth, or a model directory with vae/ or Wan2.1_VAE.pth"
                )
        elif self.vae_preset != FRESH_WEIGHTS_PRESET and builtin_vae_dir(self.vae_preset) is None:
            problems.append(
                f"--vae-preset {self.vae_preset} has no built-in weights: set --weights-dir to a diffusers-format "
                "VAE directory (config.json + diffusion_pytorch_model.safetensors)"
            )
        if self.max_streams < 1:
            problems.append(f"--max-streams {self.max_streams} must be >= 1")
        if self.max_latent_elements < 1:
            problems.append(f"--max-latent-elements {self.max_latent_elements} must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def vae_dir(self) -> Path | None:
        """Where the VAE's weights come from; None: fresh weights (seeded, the same in every process)."""
        return Path(self.weights_dir) if self.weights_dir else builtin_vae_dir(self.vae_preset)
