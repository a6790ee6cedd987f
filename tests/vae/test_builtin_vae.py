"""The committed tiny VAE (liveact/weights/tiny/vae, trained by configs/train-tiny.json's VAE stages) keeps
what lip sync needs on the path sessions decode: clips it never saw, encoded in chunk windows and decoded
chunk by chunk after the previous window's last latents, come back with the mouth opening and closing as
in the original. Bounds are set from the measurement in the weights' training summary, with margin."""

from __future__ import annotations

import json

import pytest

from liveact.config import get_preset
from liveact.data.clip import clip_seed, synth_clip
from liveact.training.run import session_chunk_latents
from liveact.training.vae_report import session_path_report
from liveact.vae import get_vae_preset, load_vae_dir
from liveact.weight_files import BUILTIN_WEIGHTS, VAE_SUBDIR

VAE_DIR = BUILTIN_WEIGHTS / "tiny" / VAE_SUBDIR
HELD_OUT_DATASET_SEED = 1  # the recipe's dataset is seed 0: these identities were never trained on
CLIPS, SECONDS = 4, 7.5
# measured on these clips: per-chunk L1 0.105-0.110, opening r 0.81, ratio 0.90 (training clips: 0.114, 0.74, 0.85)
MAX_CHUNK_L1, MIN_OPENING_R, MIN_OPENING_RATIO = 0.14, 0.7, 0.75


@pytest.fixture(scope="module")
def report():
    preset = get_preset("tiny")
    vae_config = get_vae_preset(preset.vae)
    vae = load_vae_dir(vae_config, VAE_DIR).eval()
    clips = [synth_clip(clip_seed(HELD_OUT_DATASET_SEED, i), SECONDS) for i in range(CLIPS)]
    chunks = session_chunk_latents(preset, min(len(c.frames) for c in clips))
    return session_path_report(vae, vae_config, [c.frames for c in clips], chunks, [c.reference for c in clips])


def test_the_built_in_vae_and_its_training_summary_are_committed():
    assert (VAE_DIR / "config.json").is_file() and (VAE_DIR / "diffusion_pytorch_model.safetensors").is_file()
    summary = json.loads((VAE_DIR / "training-summary.json").read_text())
    assert summary["vae_context"]["steps"] > 0 and summary["vae_context"]["mouth_opening_r"] > 0.7


@pytest.mark.integration
def test_unseen_faces_keep_a_moving_mouth_on_the_session_path(report):
    assert len(report["l1_per_chunk_context"]) == 5  # 7.5 s: chunks of [6, 8, 8, 8, 8] latents
    assert max(report["l1_per_chunk_context"]) < MAX_CHUNK_L1
    assert report["mouth_opening_r"] > MIN_OPENING_R  # opens and closes with the original
    assert report["mouth_opening_ratio"] > MIN_OPENING_RATIO  # and not blurred half shut
