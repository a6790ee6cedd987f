"""Sampler coefficients for the few-step schedule, computed in float32.

With sigma_i = t_i / num_train_timesteps and velocity v = noise - x0:

* ``x0_renoise`` (the public generate.py): x0 = x - sigma_i * v;
  x_next = (1 - sigma_{i+1}) * x0 + sigma_{i+1} * eps_new. The last step reduces to x0 but still
  consumes a fresh draw (so the RNG stream matches).
* ``euler`` (the public demo.py): x_next = x - (sigma_i - sigma_{i+1}) * v; no fresh draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from liveact.config import SamplerConfig


@dataclass(frozen=True)
class StepCoefficients:
    step: int
    t: float  # timestep fed to the model (float32 value)
    sigma: float  # t / num_train_timesteps: the x0 coefficient
    keep: float  # weight of x0 in the next latent
    noise: float  # weight of the fresh draw in the next latent


def step_coefficients(cfg: SamplerConfig) -> list[StepCoefficients]:
    t = torch.tensor([*cfg.timesteps, 0.0], dtype=torch.float32)
    sigma = t / cfg.num_train_timesteps
    keep = 1.0 - sigma
    return [
        StepCoefficients(
            step=i,
            t=float(t[i]),
            sigma=float(sigma[i]),
            keep=float(keep[i + 1]),
            noise=float(sigma[i + 1]),
        )
        for i in range(cfg.num_steps)
    ]


def sampler_update(
    kind: str, x: torch.Tensor, v: torch.Tensor, c: StepCoefficients, fresh: torch.Tensor | None
) -> torch.Tensor:
    """One sampler update of latent x given velocity v (and the fresh draw for x0_renoise)."""
    if kind == "x0_renoise":
        assert fresh is not None
        x0 = x - c.sigma * v
        return c.keep * x0 + c.noise * fresh
    if kind == "euler":
        return x - (c.sigma - c.noise) * v
    raise ValueError(f"unknown sampler kind {kind!r}")
