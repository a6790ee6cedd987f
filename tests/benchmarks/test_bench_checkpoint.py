"""``liveact bench checkpoint``: one short run with real services and Redis (figures only, no timing targets)."""

from __future__ import annotations

import json
import shutil

import pytest

from liveact.cli.main import main
from liveact.config import get_preset
from liveact.memory.sizing import session_state
from liveact.state.streams import ALIGN

SECONDS = 2  # per fps run: 40 frames, chunks of 21 and 19 frames
RESUME_SECONDS = 6  # the shortest the killed session may be
FPS = 20
# liveact-18b, bf16, 416x720, TP 1: persistent slots x frame tokens x layers x steps x (K, V) x dim x bytes
SLOTS, TOKENS, LAYERS, STEPS, KV, DIM, BF16 = 6, 1170, 40, 3, 2, 5120, 2
MEMORY_18B_BF16_416X720 = SLOTS * TOKENS * LAYERS * STEPS * KV * DIM * BF16
PARTS = ("dit_memory", "conditioning", "audio_rows", "encoder_state", "decoder_state", "other")

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


@pytest.mark.integration
def test_bench_checkpoint_json(capsys):
    argv = [
        "bench", "checkpoint", "--seconds", str(SECONDS), "--repeats", "1", "--no-default-policy",
        "--realtime-repeats", "0", "--resume-seconds", str(RESUME_SECONDS), "--store-repeats", "2", "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)

    assert out["benchmark"] == "checkpoint" and out["preset"] == "tiny" and out["size"] == "64x64"
    assert out["audio_seconds"] == SECONDS and out["repeats"] == 1
    assert len(out["machine"]["load_average_before"]) == 3 and len(out["machine"]["load_average_after"]) == 3

    ck = out["checkpoint"]
    parts = ck["bytes"]
    assert set(parts) == {"total", *PARTS}
    assert all(parts[p] > 0 for p in ("dit_memory", "conditioning", "decoder_state"))
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
    assert ck["has_encoder_state"] is True and parts["encoder_state"] > 0  # a live session, audio still coming
    assert ck["computed_matches_measured"] == {"dit_memory": True, "conditioning": True}
    assert ck["write_ms"] > 0 and ck["read_ms"] > 0 and ck["store_repeats"] == 2
    assert ck["redis_part_values"] >= 1 and ck["redis_values_per_checkpoint"] == ck["redis_part_values"] + 1
    assert 0 < ck["largest_value_bytes"] <= ck["part_bytes_limit"]
    assert ck["stored_bytes"] == parts["total"]  # each tensor's raw bytes
    per_version = ck["bytes_per_version"]  # a later version shares the sink slots and the conditioning
    padding = ALIGN * ck["tensors"]  # streams keep the padding between tensors (liveact.state.streams)
    assert 0 <= per_version["first"] - parts["total"] < padding
    later = parts["total"] - parts["conditioning"] - parts["dit_memory"] // 3
    assert 0 <= per_version["later"] - later < padding
    assert ck["later_write_ms"] > 0

    on, off = out["fps_checkpoints_on"], out["fps_checkpoints_off"]
    assert on["every_chunks"] == 1 and off["every_chunks"] is None
    for path in (on, off):
        assert path["frames"] == SECONDS * FPS and path["fps"] > 0 and path["chunks_per_session"] == 2
        assert len(path["runs"]) == 1
    assert on["checkpoints_per_session"] >= 1 and off["checkpoints_per_session"] == 0
    assert off["checkpoints_skipped_per_session"] == 0  # SessionEnd's count: 0 without Redis
    for path in (on, off):  # where the CPU went: each process, adding up to the total
        (run,) = path["runs"]
        assert set(run["cpu_seconds_by_process"]) == {"client", "audio_encoder", "decoder", "redis", "generator"}
        assert sum(run["cpu_seconds_by_process"].values()) == pytest.approx(run["cpu_seconds"], abs=0.005)
        assert run["cpu_seconds_by_process"]["decoder"] > 0 and run["cpu_seconds_by_process"]["generator"] > 0
    assert isinstance(out["slowdown_percent"], (int, float))
    assert out["target_slowdown_percent"] == 3.0 and isinstance(out["meets_target"], bool)
    assert "fps_checkpoints_on_default" not in out and "realtime_checkpoints_on" not in out

    resume = out["resume"]
    assert resume["scenario"] == "sigkill_mid_session"
    assert 0 < resume["next_frame"] < RESUME_SECONDS * FPS
    assert 0 < resume["time_to_first_chunk_s"] <= resume["time_to_session_end_s"]
    assert resume["frames_complete"] is True
    assert resume["frames_after_resume"] == RESUME_SECONDS * FPS - resume["next_frame"]

    big = out["liveact_18b_state"]
    assert big["computed"] is True and big["decoder_stream_state_included"] is False
    cases = {(c["size"], c["kv_dtype"], c["tp"]): c for c in big["cases"]}
    assert len(cases) == 12
    case = cases[("416x720", "bf16", 1)]
    assert case["dit_memory_bytes_per_rank"] == MEMORY_18B_BF16_416X720 == 17_252_352_000
    config = get_preset("liveact-18b")
    for (size, kv_dtype, tp), c in cases.items():
        width, height = (int(v) for v in size.split("x"))
        want = session_state(config, width, height, kv_dtype, tp).per_rank_checkpoint_bytes
        assert c["dit_memory_bytes_per_rank"] == want
        assert c["total_bytes"] > c["dit_memory_bytes_all_ranks"]
    assert cases[("416x720", "fp8", 1)]["dit_memory_bytes_per_rank"] < case["dit_memory_bytes_per_rank"]
    assert big["decoder_stream_state_estimate_bytes"]["416x720"] > 10**9  # GB-scale: why it is left out


def test_bench_checkpoint_refuses_bad_options(capsys):
    assert main(["bench", "checkpoint", "--resume-seconds", "3"]) == 2
    assert "--resume-seconds" in capsys.readouterr().err
    assert main(["bench", "checkpoint", "--every-chunks", "0"]) == 2
    assert "--every-chunks" in capsys.readouterr().err
