"""``scripts/gpu-check --cpu``: the prepared GPU check, every step, on the tiny preset (so the script cannot rot)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration  # the script starts processes (seven steps: about 50 s)


def test_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "gpu-check.json"
    proc = subprocess.run(
        [str(ROOT / "scripts" / "gpu-check"), "--cpu", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report == json.loads(proc.stdout)
    steps = report["steps"]
    assert list(steps) == ["machine", "tests", "bench", "plan", "load", "repeat", "capture"]
    assert report["ok"] and all(s["ok"] for s in steps.values()), {k: s.get("error") for k, s in steps.items()}
    assert steps["tests"]["files"] == ["tests/benchmarks/test_bench_gpu.py"]
    for kv in ("model", "fp8"):
        run = steps["bench"][kv]
        assert run["skipped"] is False and run["fp8_kv"] == (kv == "fp8")
        assert [(r["width"], r["height"]) for r in run["resolutions"]] == [(64, 64), (128, 128)]
    plan = steps["plan"]["sessions"]
    assert len(plan) == 4 and all(r["measured_peak_bytes"] is None for r in plan)  # no device peak on the CPU
    weights = steps["bench"]["model"]["weights_bytes"]
    by = {(r["kv_cache"], r["size"]): r["predicted_peak_bytes"] for r in plan}
    assert weights < by["fp8", "64x64"] < by["model", "64x64"] < by["model", "128x128"]
    assert steps["load"]["weights_bytes"] == weights
    assert steps["repeat"]["bitwise_equal"] is True and steps["repeat"]["max_abs_diff"] == 0.0
    capture = steps["capture"]  # on the CPU a plain copy: equal, synchronous, no pinned memory
    assert capture["equal_export"] is True and capture["asynchronous"] is False and capture["pinned"] is None
    assert capture["bytes"] > 0 and capture["stall_ms"] > 0


def test_an_unknown_step_is_refused():
    proc = subprocess.run(
        [str(ROOT / "scripts" / "gpu-check"), "--cpu", "--steps", "machine,warp"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown step(s) ['warp']" in proc.stderr
