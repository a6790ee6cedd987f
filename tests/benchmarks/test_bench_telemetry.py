"""``liveact bench telemetry``: one short run (a subprocess: the bench installs global OpenTelemetry providers)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

CHUNKS = 200


def test_bench_telemetry_json():
    argv = ["bench", "telemetry", "--chunks", str(CHUNKS), "--repeats", "2", "--json"]
    code = f"from liveact.cli.main import main; raise SystemExit(main({argv!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["benchmark"] == "telemetry" and out["chunks"] == CHUNKS and out["chunk_seconds"] == 1.6
    off, on = out["off"], out["on"]
    assert len(off["runs_us_per_chunk"]) == len(on["runs_us_per_chunk"]) == 2
    # off skips all span work: spans and their context cost far more than the no-op proxies
    assert 0 < off["us_per_chunk"] < on["us_per_chunk"] / 5
    assert off["percent_of_chunk_duration"] == round(100 * off["us_per_chunk"] / 1.6e6, 5)
