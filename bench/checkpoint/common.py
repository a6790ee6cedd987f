"""Small helpers shared by the checkpoint benchmark's scenarios: medians, rounding, rates, timeouts."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence

import numpy as np
import redis
import torch

MB = 1_000_000
SESSION_TIMEOUT_BASE_S = 120.0
SESSION_TIMEOUT_PER_AUDIO_S = 20.0


def median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def round_or_none(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000.0 * seconds, 3)


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def mb_per_s(nbytes: int, seconds: float | None) -> float | None:
    """Megabytes (10^6 bytes) per second."""
    return None if not seconds else round(nbytes / seconds / MB, 1)


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def redis_pid(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def session_timeout(pcm: np.ndarray, rate: int) -> float:
    return SESSION_TIMEOUT_BASE_S + SESSION_TIMEOUT_PER_AUDIO_S * len(pcm) / rate
