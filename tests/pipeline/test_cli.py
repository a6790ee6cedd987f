"""The ``liveact`` command line: info figures, benchmarks' JSON, errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from liveact.cli.main import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "liveact.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_info_18b_state_sizes(capsys):
    assert main(["info", "--preset", "liveact-18b", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert abs(data["parameters"]["total"] - 18.88e9) / 18.88e9 < 0.01
    states = {(s["kv_dtype"], s["pixel_w"], s["pixel_h"], s["tp"]): s for s in data["session_state"]}
    assert len(states) == 2 * 2 * 3
    # liveact-method.md section 9: 3 steps, all 14 slots, 416x720
    assert states[("bf16", 416, 720, 1)]["resident_cache_bytes"] == 40_255_488_000
    assert states[("fp8", 416, 720, 1)]["resident_cache_bytes"] == 20_756_736_000
    assert states[("bf16", 512, 512, 1)]["resident_cache_bytes"] == 35_232_153_600
    assert states[("bf16", 416, 720, 2)]["per_rank_resident_bytes"] == 40_255_488_000 // 2
    # a checkpoint holds only the 6 persistent of 14 slots
    assert states[("bf16", 416, 720, 4)]["per_rank_checkpoint_bytes"] * 14 == 40_255_488_000 // 4 * 6
    assert states[("bf16", 416, 720, 1)]["decoder_context_bytes"] == 449_280


def test_info_table_mentions_components(capsys):
    assert main(["info", "--preset", "liveact-18b"]) == 0
    out = capsys.readouterr().out
    for word in ("blocks.self_attn", "blocks.audio_cross_attn", "blocks.convkv_compressor", "416x720", "fp8"):
        assert word in out


@pytest.mark.integration
def test_unknown_preset_is_a_clear_error():
    r = run_cli("info", "--preset", "nope")
    assert r.returncode == 2
    assert "unknown preset 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_bench_memory_json(capsys):
    assert main(["bench", "memory", "--chunks", "40", "--baseline-chunks", "6", "--pixels", "64", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    conv, base = data["convkv"], data["unbounded"]
    assert conv["chunks"] == 40 and conv["cache_bytes_distinct_after_chunk1"] == 1
    assert conv["cache_bytes_first"] == conv["cache_bytes_last"]
    assert base["cache_bytes_last"] > base["cache_bytes_first"]
    assert base["cache_bytes_distinct_after_chunk1"] == 5


def test_bench_memory_refuses_too_few_chunks(capsys):
    assert main(["bench", "memory", "--chunks", "10"]) == 2
    assert "--chunks must be at least 40" in capsys.readouterr().err


@pytest.mark.integration
def test_help_explains_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("animate", "info", "parity", "bench"):
        assert cmd in r.stdout


@pytest.mark.integration
def test_animate_writes_mp4_with_audio(tmp_path):
    from pathlib import Path

    from liveact.media import probe

    examples = Path(__file__).resolve().parents[2] / "examples"
    out = tmp_path / "out.mp4"
    r = run_cli(
        "animate", "--image", str(examples / "face.png"), "--audio", str(examples / "speech.wav"),
        "--out", str(out), "--seconds", "2", "--size", "64x64", "--json", "--frames-dir", str(tmp_path / "png"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["frames"] == 40
    assert summary["trained_weights"] is True and "fresh weights" not in r.stderr  # the built-in model by default
    info = probe(out, count_frames=True)
    assert info.video.frame_count == 40 and info.video.fps == 20
    assert (info.video.width, info.video.height) == (64, 64)
    assert abs(info.audio.duration - info.video.duration) <= 1 / 20
    assert sorted(p.name for p in (tmp_path / "png").iterdir())[-1] == "frame_000039.png"
    assert "cartoon faces" not in r.stderr  # the example face is one the tiny model knows


@pytest.mark.integration
def test_animate_says_when_a_photograph_is_outside_the_tiny_models_world(tmp_path):
    from pathlib import Path

    from matplotlib import cbook

    examples = Path(__file__).resolve().parents[2] / "examples"
    photo = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    r = run_cli(
        "animate", "--image", str(photo), "--audio", str(examples / "speech.wav"), "--out", str(tmp_path / "o.mp4"),
        "--seconds", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr  # it still runs
    assert "grace_hopper.jpg: the built-in tiny model only knows 64x64 flat-shaded cartoon faces" in r.stderr
    assert "--preset liveact-18b --model DIR on a GPU" in r.stderr
    assert "photograph" in run_cli("animate", "--help").stdout


@pytest.mark.integration
def test_animate_refuses_non_audio_and_bad_size(tmp_path):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    r = run_cli("animate", "--image", str(examples / "face.png"), "--audio", str(examples / "face.png"),
                "--out", str(tmp_path / "x.mp4"))  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr and "audio" in r.stderr.lower()
    r = run_cli("animate", "--image", str(examples / "face.png"), "--audio", str(examples / "speech.wav"),
                "--out", str(tmp_path / "x.mp4"), "--size", "100x64")  # fmt: skip
    assert r.returncode == 2 and "multiples of 16" in r.stderr
    assert not (tmp_path / "x.mp4").exists()
