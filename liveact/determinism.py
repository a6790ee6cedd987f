"""What makes CUDA runs repeatable, set once per process before its first CUDA work.

An EXACT resume replays the audio since a checkpoint and must produce the frames an uninterrupted run
would have: bit for bit on CPU (tested). On a GPU the same holds only when every kernel is deterministic
and chosen the same way each time; ``apply`` pins that for a process on a CUDA device (the generator,
each of its tensor-parallel ranks, the decoder):

* cuBLAS gets a fixed workspace (``CUBLAS_WORKSPACE_CONFIG``), without which split-K GEMMs may reduce in
  another order; it must be set before cuBLAS initialises, hence before the first CUDA matmul;
* cuDNN uses deterministic algorithms and never benchmarks (``benchmark`` picks the fastest algorithm by
  timing, which can differ from one process to the next);
* TF32 is off for matmuls and convolutions: fp32 work (the VAE, norms, the time embedding) runs in full fp32,
  the same on every GPU generation, rather than in TF32 where Ampere and later allow it;
* ``torch.use_deterministic_algorithms(True, warn_only=True)``: an op with no deterministic CUDA kernel warns
  (once) instead of silently varying. LiveAct's inference ops (GEMMs, flash / memory-efficient attention
  forward, convolutions, elementwise) all have one.

What it does not give: equal bits across GPU models, driver, CUDA, cuDNN or torch versions, or tensor-parallel
degrees (each changes kernels or reduction order). See "What EXACT resume guarantees" in the README.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

CUBLAS_WORKSPACE = ":4096:8"  # cuBLAS's documented deterministic setting (two 4 MiB-ish workspaces per stream)
CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"


@dataclass(frozen=True)
class DeterminismPolicy:
    """What ``apply`` set (logged by the services, asserted by tests)."""

    cublas_workspace: str
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    tf32_matmul: bool
    tf32_cudnn: bool
    deterministic_algorithms: bool


def apply(device: str | torch.device) -> DeterminismPolicy | None:
    """Pin deterministic CUDA behaviour for this process when ``device`` is a CUDA device; None elsewhere."""
    if torch.device(device).type != "cuda":
        return None
    workspace = os.environ.setdefault(CUBLAS_ENV, CUBLAS_WORKSPACE)  # an operator's own setting is kept
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    policy = current(workspace)
    log.info("CUDA determinism pinned", extra={"policy": str(policy)})
    return policy


def current(workspace: str | None = None) -> DeterminismPolicy:
    """The process's settings now."""
    return DeterminismPolicy(
        cublas_workspace=workspace if workspace is not None else os.environ.get(CUBLAS_ENV, ""),
        cudnn_deterministic=torch.backends.cudnn.deterministic,
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        tf32_cudnn=torch.backends.cudnn.allow_tf32,
        deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
    )
