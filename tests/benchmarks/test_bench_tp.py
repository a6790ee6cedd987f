"""``liveact bench tp --ranks 2 --json``: two gloo ranks against one process, through the real CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_bench_tp_two_ranks_match_one_process():
    cmd = [sys.executable, "-m", "liveact.cli.main", "bench", "tp", "--ranks", "2", "--chunks", "5", "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    print("max abs diff TP2 vs TP1:", result["max_abs_diff"])
    assert len(result["max_abs_diff_per_chunk"]) == 5
    assert 0 <= result["max_abs_diff"] <= 1e-4 and result["within_tolerance"]
    assert result["cache_bytes_per_rank"] == [result["cache_bytes_tp1"] // 2] * 2
    assert result["shm_buffers_left"] == 0
