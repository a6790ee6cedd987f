"""Where a generator refuses to start because its configuration cannot fit (``liveact plan``'s dry run).

On CUDA (or with ``--memory-budget-gb``) the generator dry-runs ``--max-sessions`` sessions at
``--max-size`` before loading any weight and compares rank 0's peak with the device's free memory
(less the workspaces and fragmentation share ``liveact.plan.table.available_bytes`` keeps back). A
configuration that does not fit is refused (``StartRefused``: one log line, exit 1, health never
SERVING) with the needed and available bytes and the configurations that would fit; it never runs
out of memory in its first session instead. On CPU without a budget nothing is checked.
"""

from __future__ import annotations

import logging

import torch

from liveact.pipeline.engine import DTYPES, runtime_dtype
from liveact.plan.check import FitCheck, check_fits, human_bytes
from liveact.plan.dryrun import PlanCase
from liveact.plan.table import GIB, available_bytes
from services.common.server import StartRefused
from services.generator.settings import GeneratorSettings

log = logging.getLogger(__name__)
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


def available_to(settings: GeneratorSettings) -> int | None:
    """Bytes rank 0 may use at its peak: the budget, the CUDA device's free memory, or None (not checked)."""
    if settings.memory_budget_gb:
        return int(settings.memory_budget_gb * GIB)
    device = torch.device(settings.device)
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    return available_bytes(free, total)


def check_memory(settings: GeneratorSettings) -> FitCheck | None:
    """Refuse (``StartRefused``) a configuration whose planned peak exceeds what is available."""
    available = available_to(settings)
    if available is None:
        return None
    width, height = settings.max_dimensions()
    dtype = DTYPE_NAMES[runtime_dtype(settings.device, settings.dtype)]
    case = PlanCase.serving(settings.preset, settings.tp, width, height, settings.kv_cache, dtype)
    check = check_fits(case, settings.max_sessions, available)
    if not check.fits:
        raise StartRefused(f"this configuration does not fit: {check.message()}")
    log.info(
        "memory planned",
        extra={
            "needed": human_bytes(check.needed_bytes), "available": human_bytes(check.available_bytes),
            "max_sessions_that_fit": check.max_sessions, "size": case.size, "kv_cache": case.kv_cache,
        },
    )  # fmt: skip
    return check
