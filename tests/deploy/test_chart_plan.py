"""The chart's GPU examples run configurations that ``liveact plan`` says fit the GPUs they schedule on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from liveact.plan.dryrun import PlanCase, dry_run
from liveact.plan.table import gpu_named, peak_bytes

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "examples"
KV = {"fp8": "fp8", "model": "bf16", "auto": "bf16"}  # liveact-18b's preset stores the cache in the model's dtype


@pytest.mark.integration  # one liveact-18b dry run per example, about 6 s each
@pytest.mark.parametrize("name", ["h100-tp2.yaml", "h200-tp2.yaml"])
def test_example_fits_every_gpu_it_schedules_on(name: str) -> None:
    values = yaml.safe_load((EXAMPLES / name).read_text())
    gen = values["generator"]
    width, height = (int(v) for v in gen["maxSize"].split("x"))
    case = PlanCase(values["model"]["preset"], gen["tensorParallel"], width, height, KV[gen["kvCache"]])
    run = dry_run(case)
    products = gen["gpu"]["products"]
    assert products
    for product in products:
        gpu = gpu_named(product)
        peak = peak_bytes(run, gen["maxSessions"])
        assert peak <= gpu.usable_bytes, (
            f"{name}: {gen['maxSessions']} sessions need {peak} B, {gpu.name} has {gpu.usable_bytes}"
        )
    # and the example is not far below what fits: at least half the sessions that would
    from liveact.plan.table import max_sessions

    assert gen["maxSessions"] * 2 >= max_sessions(run, min(gpu_named(p).usable_bytes for p in products))


@pytest.mark.integration  # eight dry runs (liveact-18b at three sizes, bf16 and fp8; tiny), about 50 s
def test_the_charts_redis_figures_are_the_plans() -> None:
    """The per-session Redis bytes the chart checks a bundled Redis against are `liveact plan`'s, regenerated."""
    import re
    import sys

    sys.path.insert(0, str(EXAMPLES.parent))
    from redis_sizes import table

    helpers = (EXAMPLES.parent / "liveact" / "templates" / "_helpers.tpl").read_text()
    block = re.search(r'define "liveact\.presets" -\}\}\n(.*?)\{\{- end \}\}', helpers, re.S).group(1)
    committed = {preset: facts["redisSessionBytes"] for preset, facts in yaml.safe_load(block).items()}
    assert committed == table()
