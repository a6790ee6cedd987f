"""Small configs, models and sessions for tests."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from liveact.config import LiveActConfig, get_preset
from liveact.model.dit import LiveActDiT
from liveact.model.loading import build_model
from liveact.sampling.chunking import total_video_frames
from liveact.sampling.denoise import Conditioning
from liveact.state.schema import CheckpointMeta, SessionInfo


def micro_config(**memory_overrides) -> LiveActConfig:
    """The tiny preset shrunk further (1 layer, dim 32) for tests that stream hundreds of chunks."""
    tiny = get_preset("tiny")
    model = dataclasses.replace(tiny.model, dim=32, num_heads=2, ffn_dim=64, num_layers=1)
    memory = dataclasses.replace(tiny.memory, **memory_overrides)
    return dataclasses.replace(tiny, name="micro", model=model, memory=memory)


def make_model(config: LiveActConfig, seed: int = 0) -> LiveActDiT:
    return build_model(config).init_weights(seed).eval()


def make_session(model: LiveActDiT, latent: int = 8, chunks: int = 8, seed: int = 1):
    """Random conditioning for a latent x latent grid and audio features for ``chunks`` chunks."""
    cfg = model.config
    m = cfg.model
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(1, m.cond_channels, cfg.memory.window_latent_frames, latent, latent, generator=g)
    text = torch.randn(5, m.text_dim, generator=g)
    clip = torch.randn(1, m.clip_tokens, m.clip_dim, generator=g)
    with torch.no_grad():
        context = model.encode_context([text], clip)
    feats = torch.randn(total_video_frames(cfg, chunks), m.audio_layers, m.audio_channels, generator=g)
    return Conditioning(y=y, context=context), feats


def child_pids() -> set[int]:
    """Live (non-zombie) child processes of this test process."""
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError):
            continue
        if int(ppid) == os.getpid() and state != "Z":
            kids.add(int(stat.parent.name))
    return kids


def checkpoint_meta(chunk: int = 0, audio_seq: int = 0, tp: int = 1) -> CheckpointMeta:
    """A ``CheckpointMeta`` for store tests: ``chunk`` tells versions apart."""
    return CheckpointMeta(
        chunk_index=chunk, next_frame=0, rows_first=0, rows_end=0, audio_seq=audio_seq, audio_offset=0,
        pcm_frames=0, audio_total=None, frame_offset=0, row_offset=0, tp=tp,
    )  # fmt: skip


def session_info(**fields) -> SessionInfo:
    """A ``SessionInfo`` for store tests (the tiny preset's defaults, ``fields`` replaced)."""
    info = SessionInfo(
        preset="tiny", fps=20.0, width=64, height=64, seed=0, output_format=2, jpeg_quality=90, prompt="",
        audio_encoding=1, audio_sample_rate=16000, audio_channels=1, decode_mode="context",
    )  # fmt: skip
    return dataclasses.replace(info, **fields)
