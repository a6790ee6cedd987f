"""``liveact bench pipeline``: in-process and services paths on a short clip (figures only, no timing targets)."""

from __future__ import annotations

import json

import pytest

from liveact.cli.main import main

SECONDS = 2
FPS = 20


@pytest.mark.integration
def test_bench_pipeline_json(capsys):
    argv = ["bench", "pipeline", "--seconds", str(SECONDS), "--repeats", "1", "--format", "raw_rgb", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)

    assert out["benchmark"] == "pipeline" and out["preset"] == "tiny" and out["format"] == "RAW_RGB"
    assert out["audio_seconds"] == SECONDS and out["repeats"] == 1
    for key in ("cpu_count", "usable_cpus", "torch_threads", "torch_interop_threads", "load_average_1m_after"):
        assert key in out["machine"]
    assert out["machine"]["torch_threads"] >= 1
    for key in ("throughput_ratio", "overhead_percent", "first_frame_delta_s", "cpu_overhead_percent"):
        assert isinstance(out[key], (int, float))
    assert out["target_overhead_percent"] == 10.0 and isinstance(out["meets_target"], bool)
    assert "services_realtime" not in out

    local, remote = out["in_process"], out["services"]
    for path in (local, remote):
        assert set(path) >= {"frames", "fps", "realtime_factor", "time_to_first_frame_s", "seconds", "runs"}
        assert path["frames"] == SECONDS * FPS
        assert path["fps"] > 0 and path["seconds"] > 0 and path["time_to_first_frame_s"] > 0
        assert len(path["runs"]) == 1 and path["runs"][0]["frames"] == path["frames"]
    assert remote["frames"] == local["frames"]
    assert out["frames_match"] is True
    assert out["frames_identical"] is True  # RAW_RGB: the services return the in-process frames bit for bit
    assert out["throughput_ratio"] > 0


def test_bench_pipeline_refuses_bad_options(capsys):
    assert main(["bench", "pipeline", "--seconds", "0"]) == 2
    assert "--seconds" in capsys.readouterr().err
    assert main(["bench", "pipeline", "--size", "100x64"]) == 2
    assert "multiples of 16" in capsys.readouterr().err
