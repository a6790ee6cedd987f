"""DeepSpeed's CPU all-reduce buffers in /dev/shm: named per process group, removed by whoever started it.

DeepSpeed's shared-memory all-reduce (CPU ranks on one host) creates one segment per rank named
``deepspeed_allreduce_buffer_<uid>_<MASTER_ADDR>_<MASTER_PORT>_<rank>`` and never unlinks it, so the
process that started the ranks removes them when the group ends (also after a rank was killed).
"""

from __future__ import annotations

import os
from pathlib import Path

SHM_DIR = Path("/dev/shm")
SHM_PATTERN = "deepspeed_allreduce_buffer_*"


def shm_buffers() -> set[Path]:
    """Every DeepSpeed all-reduce segment present now (any group)."""
    return set(SHM_DIR.glob(SHM_PATTERN))


def group_buffers(addr: str, port: int) -> set[Path]:
    """The segments of the group rendezvousing at ``addr:port`` (this user's)."""
    return set(SHM_DIR.glob(f"deepspeed_allreduce_buffer_{os.getuid()}_{addr}_{port}_*"))


def remove(paths: set[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
