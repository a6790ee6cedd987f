"""Small configs, models and sessions for tests; the gRPC error check every service test makes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
import pytest

from liveact.state.schema import CheckpointMeta, SessionInfo


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


def expect_rpc_error(
    responses: Iterable, code: grpc.StatusCode, *words: str, consume: Callable[[Iterable], object] = list
) -> str:
    """Read a call's responses with ``consume``: the call must fail with ``code``, its details naming each
    of ``words``; returns the details."""
    with pytest.raises(grpc.RpcError) as info:
        consume(responses)
    details = info.value.details()
    assert info.value.code() == code, details
    for word in words:
        assert word in details, details
    return details
