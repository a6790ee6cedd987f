"""The official release directory loads unchanged: its file names and formats, found by their published names.

A fake release of the built-in tiny model, laid out as SoulX-LiveAct publishes liveact-18b: the DiT as sharded
``diffusion_pytorch_model-0000N-of-0000M.safetensors`` + index + ``config.json`` at the top, the VAE as
``Wan2.1_VAE.pth`` in the original Wan key layout, the umT5 and CLIP ``.pth`` files and tokenizer folders, and
``chinese-wav2vec2-base/`` beside them. (The tiny preset's text/image encoders and mel features carry no
weights, so those files are present but not read here; liveact-18b reads them by the same names.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

from liveact.conditioning.image import CLIP_CHECKPOINT
from liveact.conditioning.text import T5_CHECKPOINT, T5_TOKENIZER_DIR
from liveact.config import get_preset
from liveact.media import load_reference_image
from liveact.model.loading import save_state_dir
from liveact.pipeline import AnimationSession, load_engine
from liveact.vae import get_vae_preset
from liveact.vae.loading import WAN_VAE_FILE, build_vae, load_vae, vae_source
from liveact.vae.wan_layout import names, to_original
from liveact.weight_files import INDEX_FILE, RELEASE_AUDIO_SUBDIR, CheckpointError, audio_dir

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
RATE = 16_000


@pytest.fixture(scope="module")
def builtin():
    return load_engine("tiny")


def make_release(root: Path, builtin) -> Path:
    state = builtin.model.state_dict()
    total = sum(t.nbytes for t in state.values())
    save_state_dir(state, root, max_shard_bytes=total // 2)  # two or more shards + the index, as published
    (root / "config.json").write_text(json.dumps({"_class_name": "WanModel", "model_type": "i2v"}))
    vae_cfg = get_vae_preset(builtin.config.vae)
    torch.save(to_original(vae_cfg, builtin.vae.state_dict()), root / WAN_VAE_FILE)
    for name in (T5_CHECKPOINT, CLIP_CHECKPOINT):
        torch.save({"unused.weight": torch.zeros(1)}, root / name)
    for folder in (T5_TOKENIZER_DIR, "xlm-roberta-large"):
        (root / folder).mkdir(parents=True)
        (root / folder / "tokenizer_config.json").write_text("{}")
    (root / RELEASE_AUDIO_SUBDIR).mkdir()
    (root / RELEASE_AUDIO_SUBDIR / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    return root


def frames(engine, seconds: float = 1.0) -> np.ndarray:
    image = load_reference_image(FACE.read_bytes(), 64, 64)
    session = AnimationSession(engine, image, seed=3)
    pcm = (np.sin(np.arange(int(RATE * seconds)) * 0.05) * 0.3).astype(np.float32)
    chunks = session.push_audio(pcm) + session.finish()
    return np.concatenate([c.frames for c in chunks])


def test_the_fake_release_loads_through_the_engine_bit_for_bit(tmp_path, builtin):
    root = make_release(tmp_path, builtin)
    assert (root / INDEX_FILE).is_file() and len(list(root.glob("diffusion_pytorch_model-*-of-*.safetensors"))) >= 2
    engine = load_engine("tiny", model_dir=root)
    for ours, theirs in ((engine.model, builtin.model), (engine.vae, builtin.vae)):
        a, b = ours.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(frames(engine), frames(builtin))
    assert audio_dir(root) == root / RELEASE_AUDIO_SUBDIR  # not the DiT's config.json at the top
    assert vae_source(root) == root / WAN_VAE_FILE


def test_the_original_layout_names_agree_with_diffusers_converter():
    """For the real Wan2.1 VAE (194 tensors) the renaming equals diffusers' own converter's; the tiny VAE has one
    residual block per stage, which that converter's fixed indices do not cover, and our names still round-trip."""
    for preset in ("wan2.1", "tiny"):
        cfg = get_vae_preset(preset)
        keys = list(build_vae(cfg, "meta").state_dict())
        mapping = names(cfg, keys)
        assert sorted(mapping.values()) == sorted(keys)
        if preset == "wan2.1":
            assert len(keys) == 194
            assert set(convert_wan_vae_to_diffusers(dict.fromkeys(mapping, torch.empty(0)))) == set(keys)


def test_a_missing_foreign_or_misshaped_vae_is_one_error_naming_the_file(tmp_path, builtin):
    cfg = get_vae_preset(get_preset("tiny").vae)
    root = make_release(tmp_path / "release", builtin)
    path = root / WAN_VAE_FILE

    path.unlink()
    with pytest.raises(CheckpointError, match=r"no VAE found.*vae/ holding one, or Wan2\.1_VAE\.pth"):
        load_engine("tiny", model_dir=root)

    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"Wan2\.1_VAE\.pth: not a weights-only torch checkpoint"):
        load_vae(cfg, root)

    state = to_original(cfg, builtin.vae.state_dict())
    state["decoder.head.2.weight"] = state["decoder.head.2.weight"][:2]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"Wan2\.1_VAE\.pth: not the 'tiny' VAE .*decoder\.head\.2\.weight: file"):
        load_vae(cfg, root)

    del state["decoder.head.2.weight"]
    state["decoder.head.9.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"1 missing keys.*decoder\.head\.2\.weight.*1 unexpected keys"):
        load_vae(cfg, root)

    torch.save(convert_wan_vae_to_diffusers(to_original(cfg, builtin.vae.state_dict())), path)  # diffusers names
    with pytest.raises(CheckpointError, match=r"original Wan layout: \d+ missing keys"):
        load_vae(cfg, root)


def test_a_release_without_its_audio_folder_names_the_choices(tmp_path, builtin):
    root = make_release(tmp_path, builtin)
    (root / RELEASE_AUDIO_SUBDIR / "config.json").unlink()
    (root / RELEASE_AUDIO_SUBDIR).rmdir()
    with pytest.raises(CheckpointError, match=r"no wav2vec2 model.*wav2vec2/ or chinese-wav2vec2-base/"):
        audio_dir(root)


def test_the_decoder_and_audio_encoder_take_the_release_directory(tmp_path, builtin):
    from services.audio_encoder.settings import EncoderSettings
    from services.decoder.settings import DecoderSettings

    root = make_release(tmp_path, builtin)
    decoder = DecoderSettings.parse(["--vae-preset", "tiny", "--weights-dir", str(root)])
    vae = load_vae(get_vae_preset("tiny"), decoder.vae_dir)
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in builtin.vae.state_dict().items())
    EncoderSettings.parse(["--preset", "liveact-18b", "--weights-dir", str(root)])  # finds chinese-wav2vec2-base/
    with pytest.raises(SystemExit):
        DecoderSettings.parse(["--vae-preset", "tiny", "--weights-dir", str(root / T5_TOKENIZER_DIR)])
