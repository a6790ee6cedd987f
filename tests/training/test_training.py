"""`liveact train`: settings files, the learning-rate schedule, loss curves, and a few steps of every
stage through the real CLI on a tiny synthetic dataset, ending in weights `liveact animate` loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from liveact.cli.main import main
from liveact.config import ConfigError, get_preset
from liveact.data.clip import write_dataset
from liveact.model.loading import build_model, load_checkpoint_dir, save_checkpoint_dir
from liveact.pipeline.engine import load_engine
from liveact.training.config import OptimConfig, TrainConfig
from liveact.training.curves import CurveWriter, read_curves
from liveact.training.loop import learning_rate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_config_file_gives_only_what_it_changes(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"data": "d", "nf": {"steps": 7, "optim": {"lr": 0.5}}}))
    cfg = TrainConfig.load(path)
    assert (cfg.nf.steps, cfg.nf.optim.lr) == (7, 0.5)
    assert cfg.nf.optim.warmup_steps == OptimConfig().warmup_steps  # untouched fields keep their defaults
    assert (cfg.convkv.chunks, cfg.convkv.levels) == (5, "sampler")  # the convkv stage's own defaults
    cfg.save(tmp_path / "again.json")
    assert TrainConfig.load(tmp_path / "again.json") == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"data": "d", "nf": {"stepz": 1}}, r"unknown nf config keys \['stepz'\]"),
        ({"data": "d", "convkv": {"levels": "cosine"}}, "levels must be 'shifted' or 'sampler'"),
        ({"data": "d", "vae": {"optim": {"lr": -1}}}, "invalid optimiser settings"),
        ({"data": "d", "nf": {"audio_dropout": 1.0}}, r"audio_dropout=1.0 must be in \[0, 1\)"),
        ({"data": "d", "nf": {"context": "diffusion"}}, "context must be 'neighbor', 'clean' or 'self'"),
        ({"data": "d", "convkv": {"compressor": "max"}}, "compressor must be null, 'conv', 'mean' or 'none'"),
        ({"data": "d", "vae_context": {"windows": "pairs"}}, "windows must be 'clip' or 'chunk_pairs'"),
        ({"data": "d", "vae_context": {"warmup_latents": 2}}, "'chunk_pairs' decodes as sessions do"),
        ({"data": "d", "vae": {"mouth_weight": -1}}, "mouth_weight=-1 must be >= 0"),
    ],
)
def test_bad_settings_are_refused_by_name(data, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(data)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(cfg, 0, 100) == pytest.approx(0.1)
    assert learning_rate(cfg, 9, 100) == pytest.approx(1.0)
    assert learning_rate(cfg, 10, 100) == pytest.approx(1.0)
    assert learning_rate(cfg, 55, 100) == pytest.approx(0.55)  # half-way down the cosine
    assert learning_rate(cfg, 100, 100) == pytest.approx(0.1)


def test_curve_rows_average_the_steps_since_the_last_row(tmp_path):
    writer = CurveWriter(tmp_path / "c.csv", ["loss"], every=2)
    assert writer.add(1, 0.1, 1e-3, {"loss": 1.0}) is None
    assert writer.add(2, 0.2, 1e-3, {"loss": 3.0}) == {"loss": 2.0}
    writer.add(3, 0.3, 1e-3, {"loss": 5.0})
    writer.add(4, 0.4, 1e-3, {"loss": 7.0})
    assert read_curves(tmp_path / "c.csv")["loss"] == [2.0, 6.0]


def test_checkpoint_directory_round_trip(tmp_path):
    from liveact.testing import micro_config

    model = build_model(micro_config()).init_weights(4)
    save_checkpoint_dir(model, tmp_path / "dit")
    again = load_checkpoint_dir(build_model(micro_config()), tmp_path / "dit")
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert json.loads((tmp_path / "dit" / "config.json").read_text())["name"] == "micro"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two 6-second clips: enough for 2-chunk nf and 3-chunk convkv rollouts (117 frames at 20 fps)."""
    return write_dataset(tmp_path_factory.mktemp("synth"), clips=2, seconds=6.0, progress=False)


def _train(args, cwd):
    cmd = [sys.executable, "-m", "liveact.cli.main", "train", *args, "--no-progress"]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


SMOKE = {
    "log_every": 2,
    "save_every": 3,
    "threads": 1,
    "vae": {"steps": 4, "batch": 2},
    "vae_tune": {"steps": 2, "batch": 1, "clip_frames": 13, "warmup_latents": 3},
    "vae_context": {"steps": 2, "batch": 1, "mouth_weight": 4.0},
    "nf": {"steps": 4, "batch": 2, "chunks": 2},
    "convkv": {"steps": 4, "batch": 2, "chunks": 3},
}


@pytest.fixture(scope="module")
def smoke_run(dataset, tmp_path_factory):
    """Every stage, a few steps each, through the real CLI in a child process."""
    tmp = tmp_path_factory.mktemp("train")
    config = tmp / "smoke.json"
    config.write_text(json.dumps({"data": str(dataset), **SMOKE}))
    proc = _train(["--config", str(config), "--run", str(tmp / "run")], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run", json.loads(proc.stdout.strip().splitlines()[-1]), config


@pytest.mark.integration
def test_every_stage_runs_and_exports_weights_animate_loads(smoke_run):
    run, summary, _ = smoke_run
    assert set(summary) >= {"vae", "vae_tune", "vae_context", "encode", "nf", "convkv", "export"}
    for stage in ("vae_tune", "vae_context"):
        assert summary[stage]["steps"] == 2 and (run / "curves" / f"{stage}.png").exists()
    assert summary["encode"]["clips"] == 2
    for stage in ("vae", "vae_tune", "vae_context"):  # reconstruction error per 16 frames of the streamed 6-s clips
        horizon = summary[stage]["l1_per_16_frames"]
        assert len(horizon) == 8 and all(0 < e < 1 for e in horizon)
        per_chunk = summary[stage]["l1_per_chunk_context"]  # and per chunk as sessions decode (4 in 117 frames)
        assert len(per_chunk) == 4 and all(0 < e < 1 for e in per_chunk)
    for stage in ("vae", "vae_tune", "vae_context"):  # the mouth on the session path, against the originals
        fidelity = summary[stage]
        assert 0 < fidelity["mouth_box_l1"] < 2 and -1 <= fidelity["mouth_opening_r"] <= 1
        assert fidelity["mouth_opening_ratio"] >= 0
        strip = run / "curves" / f"{stage}-session-path.png"  # 2 clips x (original, decoded) rows of 10 frames
        assert strip.read_bytes()[:8] == PNG_MAGIC and Image.open(strip).size == (10 * 64 * 2, 4 * 64 * 2)
    for stage, columns in (("vae", {"l1", "kl"}), ("nf", {"chunk0", "chunk1"}), ("convkv", {"chunk2"})):
        assert summary[stage]["steps"] == 4
        curve = read_curves(run / "curves" / f"{stage}.csv")
        assert curve["step"] == [2.0, 4.0]
        assert columns | {"loss", "lr"} <= set(curve)
        assert all(v > 0 for v in curve["loss"])
        assert (run / "curves" / f"{stage}.png").read_bytes()[:8] == PNG_MAGIC
    assert TrainConfig.load(run / "config.json").nf.chunks == 2  # the run's settings travel with it

    # the convkv stage started from the nf weights and changed them, compressors included
    nf = load_checkpoint_dir(_tiny_model(), run / "dit_nf")
    kv = load_checkpoint_dir(_tiny_model(), run / "dit_convkv")
    assert not torch.equal(nf.blocks[0].self_attn.memory_proj_k.weight, kv.blocks[0].self_attn.memory_proj_k.weight)

    card = (run / "weights" / "MODEL_CARD.md").read_text()
    assert "| nf | 4 |" in card and "2 clips of 6.0 s at 64x64" in card

    engine = load_engine("tiny", model_dir=run / "weights")
    assert engine.trained
    torch.testing.assert_close(engine.model.blocks[0].ffn[0].weight, kv.blocks[0].ffn[0].weight, rtol=0, atol=0)


def _tiny_model():
    return build_model(get_preset("tiny"))


@pytest.mark.integration
def test_a_stage_is_reproducible_from_its_config(smoke_run, tmp_path):
    """The nf stage run again from the same config and encoded clips gives bitwise-equal DiT weights."""
    run, _, config = smoke_run
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(run / "encoded.safetensors", again)
    proc = _train(["--config", str(config), "--run", str(again), "--stages", "nf"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_checkpoint_dir(_tiny_model(), run / "dit_nf").state_dict()
    b = load_checkpoint_dir(_tiny_model(), again / "dit_nf").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _ablate(args, cwd):
    cmd = [sys.executable, "-m", "liveact.cli.main", "ablate", *args, "--marks", "2", "--window", "2", "--no-progress"]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.integration
def test_ablations_retrain_what_they_change_and_land_in_one_table(smoke_run, tmp_path):
    run, _, _ = smoke_run
    base = tmp_path / "base"  # a copy: the variants are written beside it
    shutil.copytree(run, base, symlinks=True)
    for variant in ("neighbor", "window", "clean"):
        proc = _ablate(["--base", str(base), "--variant", variant], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        assert report["variant"] == variant and report["generated_s"] == 2.0 and report["trained"]
    window, clean = tmp_path / "base-window", tmp_path / "base-clean"
    assert TrainConfig.load(window / "config.json").convkv.compressor == "none"
    assert (window / "dit_nf").resolve() == (base / "dit_nf").resolve()  # nf weights shared, convkv retrained
    assert not (window / "curves" / "nf.csv").exists() and (window / "curves" / "convkv.csv").exists()
    cfg = TrainConfig.load(clean / "config.json")
    assert (cfg.nf.context, cfg.convkv.context) == ("clean", "clean")
    a = load_checkpoint_dir(_tiny_model(), clean / "dit_nf").state_dict()
    b = load_checkpoint_dir(_tiny_model(), base / "dit_nf").state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # retrained under its own context
    card = (clean / "weights" / "MODEL_CARD.md").read_text()
    assert "## Scores" in card
    assert card.splitlines()[0].startswith("# LiveAct `tiny`: ablation `clean`, sample-level context")
    assert (base / "weights" / "MODEL_CARD.md").read_text().splitlines()[0].endswith(": the built-in model")

    proc = _ablate(["--base", str(base), "--report", str(tmp_path / "docs")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "docs" / "ablations-table.md").read_text().splitlines()
    assert [row.split(" | ")[0].lstrip("| ") for row in table[2:]] == ["neighbor", "clean", "window"]
    assert table[4].split(" | ")[2] == "-"  # window: nf not retrained
    for png in ("ablation-nf-loss.png", "ablation-long-horizon.png"):
        assert (tmp_path / "docs" / png).read_bytes()[:8] == PNG_MAGIC

    kept = tmp_path / "docs" / "runs"  # each run's evidence, no weights
    assert sorted(p.name for p in kept.iterdir()) == ["base", "base-clean", "base-window"]
    assert sorted(p.name for p in (kept / "base-window" / "curves").iterdir()) == ["convkv.csv"]
    assert json.loads((kept / "base-clean" / "eval.json").read_text())["generated_s"] == 2.0
    assert not list(kept.rglob("*.safetensors"))
    for name in ("base", "base-clean", "base-window"):  # what each evaluation looked like, beside its scores
        assert (kept / name / "sheets" / "sheet-2s.png").read_bytes()[:8] == PNG_MAGIC
    shutil.rmtree(clean)  # a variant evaluated in an earlier session: its run directory is gone
    proc = _ablate(["--base", str(base), "--report", str(tmp_path / "docs")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "docs" / "ablations-table.md").read_text().splitlines() == table  # clean from the archive


@pytest.mark.integration
def test_missing_inputs_say_which_stage_to_run(dataset, tmp_path, capsys):
    run = str(tmp_path / "r")
    assert main(["train", "--data", str(dataset), "--run", run, "--stages", "nf", "--no-progress"]) == 2
    assert "encoded.safetensors is missing: run stage 'encode' first" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nothing"), "--run", run, "--no-progress"]) == 2
    assert "write one with `liveact data synth`" in capsys.readouterr().err
    assert main(["train", "--data", str(dataset), "--run", run, "--stages", "vae,polish"]) == 2
    assert "unknown stages ['polish']" in capsys.readouterr().err


@pytest.mark.integration
def test_standardized_latents_are_unit_scaled_and_decode_the_same(dataset):
    from liveact.data.clip import read_clip
    from liveact.training.vae_stage import frames_to_video, latent_stats, standardize_latents
    from liveact.vae import build_vae, get_vae_preset

    torch.manual_seed(0)
    vae = build_vae(get_vae_preset("tiny"))
    clips = [read_clip(p).frames for p in sorted(dataset.glob("clip_*.npz"))]
    x = frames_to_video(clips[0][None, :9])
    with torch.no_grad():
        before = vae.decode(vae.encode(x).latent_dist.mode()).sample
        mean, std = latent_stats(vae, clips, 9, seed=1)
        assert (std - 1).abs().max() > 0.5  # a fresh VAE's latents are far from unit scale
        standardize_latents(vae, mean, std)
        mean2, std2 = latent_stats(vae, clips, 9, seed=1)  # the same windows again
        after = vae.decode(vae.encode(x).latent_dist.mode()).sample
    torch.testing.assert_close(mean2, torch.zeros_like(mean2), rtol=0, atol=1e-4)
    torch.testing.assert_close(std2, torch.ones_like(std2), rtol=0, atol=1e-4)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
