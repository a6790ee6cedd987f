"""``liveact bench rehearsal``: one short run at 1/256 of liveact-18b's checkpoint against a real Redis (figures
checked for consistency; the throughput target is the benchmark's to report, not this test's)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from liveact.cli.main import main
from liveact.state.streams import ALIGN

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
SCALE = 256
ALL_CPUS = os.sched_getaffinity(0)
FIRST_PER_RANK_TP2 = 8_646_562_944  # liveact plan, 416x720 bf16, TP=2: rank 0's tensors, audio rows, decoder state


@pytest.mark.integration
def test_bench_rehearsal_json(capsys):
    argv = ["bench", "rehearsal", "--scale", f"1/{SCALE}", "--seconds", "2", "--repeats", "1",
            "--budget-mbps", "12800", "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["benchmark"], out["scale"], out["tp"], out["size"]) == ("rehearsal", f"1/{SCALE}", 2, "416x720")
    assert out["bytes_per_rank"][0] == pytest.approx(FIRST_PER_RANK_TP2 / SCALE, rel=0.01)
    assert out["checkpoints"] >= 2 and out["newest_version"] == out["checkpoints"]
    per_version = out["bytes_per_version"]
    tensors = sum(out["bytes_per_rank"])  # the first version sends everything, in streams (padding between tensors)
    assert 0 <= per_version["first"] - tensors < ALIGN * 1000
    # a rank is 3 streams (cond, sink, the rest), each a few class-filling parts: not one or more per tensor (484)
    assert all(3 <= parts <= 3 * 5 for parts in out["parts_per_rank"]), out["parts_per_rank"]
    assert 0.6 < per_version["later_over_first"] <= 0.70  # the sink slots and conditioning are shared
    assert out["budget_mb_s"] == 12800 / SCALE and out["full_size"]["tp2"]["budget_mb_s"] == 12800
    assert out["within_budget"] and out["write_mb_s"] <= out["budget_mb_s"] * 1.001
    assert out["dit_stall_ms"]["p50"] > 0 and out["throughput_ratio"] > 0
    chunks = out["dit_thread_per_chunk"]  # where the loop thread's time went, by kind of chunk
    assert {"off", "on"} <= set(chunks) and all(c["wall_ms"] >= c["cpu_ms"] > 0 for c in chunks.values())
    assert out["cpu_layout"].startswith("loop thread on CPU") == (len(ALL_CPUS) >= 2)  # pinned by default
    assert os.sched_getaffinity(0) == ALL_CPUS  # and this thread has every CPU back
    assert out["redis_bytes_per_session"] > per_version["first"]  # the shared parts and two versions' changed ones
    for tp in ("tp1", "tp2", "tp4"):
        full = out["full_size"][tp]
        assert full["bytes_per_version_per_rank"]["later"] < 0.7 * full["bytes_per_version_per_rank"]["first"]
    assert out["full_size"]["tp2"]["bytes_per_version_per_rank"]["first"] == FIRST_PER_RANK_TP2
