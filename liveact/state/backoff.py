"""``Backoff``: exponential retry delays with jitter and a cap (checkpoint retries while Redis is down).

Attempt n (0-based) has the nominal delay ``min(cap_s, base_s * factor**n)``; the delay used is
drawn uniformly from ``[nominal * (1 - jitter), nominal]``, so many generators that lost Redis at
the same moment do not all retry in step, and no delay ever exceeds ``cap_s``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.5  # nominal delay of the first retry
    factor: float = 2.0  # growth per attempt
    cap_s: float = 30.0  # no delay is longer
    jitter: float = 0.5  # fraction of the nominal delay that is randomised away (0 = none, 1 = full)

    def __post_init__(self) -> None:
        problems = self.validate()
        if problems:
            raise ValueError("; ".join(problems))

    def validate(self) -> list[str]:
        problems = []
        if not 0 < self.base_s <= self.cap_s:
            problems.append(f"base_s {self.base_s} must be > 0 and <= cap_s {self.cap_s}")
        if self.factor < 1:
            problems.append(f"factor {self.factor} must be >= 1")
        if not 0 <= self.jitter <= 1:
            problems.append(f"jitter {self.jitter} must be in 0..1")
        return problems

    def nominal(self, attempt: int) -> float:
        """The delay before jitter for 0-based ``attempt`` (never overflows: capped first)."""
        if attempt < 0:
            raise ValueError(f"attempt {attempt} must be >= 0")
        if self.factor == 1 or self.base_s == self.cap_s:
            return self.base_s
        if attempt >= math.log(self.cap_s / self.base_s, self.factor):
            return self.cap_s
        return min(self.cap_s, self.base_s * self.factor**attempt)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based), jittered with ``rng`` (default: ``random``)."""
        draw = (rng or random).random()  # [0, 1)
        return self.nominal(attempt) * (1 - self.jitter * draw)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Delays for attempts 0, 1, 2, ... forever (the caller decides when to give up)."""
        attempt = 0
        while True:
            yield self.delay(attempt, rng)
            attempt += 1
