"""Will this server's configuration fit the memory it has? Asked once, before a generator serves.

``check_fits`` dry-runs the configuration (``dry_run``) for ``sessions`` sessions at the largest size
it admits and compares rank 0's peak with the bytes available. When it does not fit, it dry-runs the
nearby configurations (FP8 caches, more tensor-parallel ranks) and says which fit and for how many
sessions, so the refusal names a way out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from liveact.plan.dryrun import PlanCase, dry_run
from liveact.plan.table import GIB, MIB, TPS, max_sessions, peak_bytes

MAX_ALTERNATIVES = 3  # configurations named in a refusal (each found by a dry run)


@dataclass(frozen=True)
class Alternative:
    tp: int
    kv_cache: str
    max_sessions: int

    def __str__(self) -> str:
        return f"--tp {self.tp} --kv-cache {'fp8' if self.kv_cache == 'fp8' else 'model'} (up to {self.max_sessions})"


@dataclass(frozen=True)
class FitCheck:
    case: PlanCase
    sessions: int
    needed_bytes: int  # rank 0's peak
    available_bytes: int
    max_sessions: int  # of this case within available_bytes
    alternatives: tuple[Alternative, ...] = ()  # computed only when it does not fit

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.available_bytes

    def message(self) -> str:
        c = self.case
        what = (
            f"{c.preset} at {c.size}, tp={c.tp}, {c.dtype} weights, {c.kv_cache} caches, {self.sessions} session(s) "
            f"needs {human_bytes(self.needed_bytes)} on rank 0; {human_bytes(self.available_bytes)} available"
        )
        if self.fits:
            return what
        ways = []
        if self.max_sessions:
            ways.append(f"--max-sessions {self.max_sessions}")
        ways += [str(a) for a in self.alternatives]
        out = "; ".join(ways) if ways else "none of tp 1/2/4/8 with fp8 caches; try a smaller --max-size"
        return f"{what}. What fits: {out}"


def human_bytes(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if abs(n) >= GIB else f"{n / MIB:.1f} MiB"


def check_fits(case: PlanCase, sessions: int, available: int) -> FitCheck:
    """Dry-run ``case`` and set its peak with ``sessions`` sessions against ``available`` bytes."""
    run = dry_run(case)
    check = FitCheck(case, sessions, peak_bytes(run, sessions), available, max_sessions(run, available))
    if check.fits:
        return check
    return replace(check, alternatives=tuple(alternatives(case, sessions, available)))


def alternatives(case: PlanCase, sessions: int, available: int) -> list[Alternative]:
    """Configurations near ``case`` that fit ``sessions`` sessions: FP8 caches, then more ranks (each a dry run)."""
    heads = case.config().model.num_heads
    options = [] if case.kv_cache == "fp8" else [replace(case, kv_cache="fp8")]
    for tp in (t for t in TPS if t > case.tp and heads % t == 0):
        options += [replace(case, tp=tp), *([] if case.kv_cache == "fp8" else [replace(case, tp=tp, kv_cache="fp8")])]
    out = []
    for option in options:
        n = max_sessions(dry_run(option), available)
        if n >= sessions:
            out.append(Alternative(option.tp, option.kv_cache, n))
            if len(out) == MAX_ALTERNATIVES:
                break
    return out
