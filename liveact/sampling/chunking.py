"""The chunk plan: which latent frames, conditioning slices, cache slots and audio a chunk uses.

Chunk 0 has ``first_chunk_frames`` latent frames (21 video frames with the defaults), every later
chunk ``chunk_frames`` (32 video frames). Conditioning ``y`` and the audio window both span
``window_latent_frames`` latent frames: chunk 0 uses the first ``first_chunk_frames`` of them,
later chunks the rest. The audio window of chunk k >= 2 starts (k-1) chunks of video frames in.
"""

from __future__ import annotations

from dataclasses import dataclass

from liveact.config import LiveActConfig


@dataclass(frozen=True)
class ChunkPlan:
    index: int
    latent_frames: int
    latent_slice: tuple[int, int]  # frames of the y / audio-token window this chunk uses
    query_slot_start: int  # cache slot (= RoPE temporal position) of the chunk's first frame
    video_frames: tuple[int, int]  # output video frames [start, end)
    audio_window_start: int  # first video frame of the audio feature window

    @property
    def is_first(self) -> bool:
        return self.index == 0


def video_frames_per_chunk(config: LiveActConfig, index: int) -> int:
    mem, vs = config.memory, config.model.vae_scale
    return 1 + (mem.first_chunk_frames - 1) * vs if index == 0 else mem.chunk_frames * vs


def window_video_frames(config: LiveActConfig) -> int:
    """Video frames of one audio feature window (53 with the defaults)."""
    return 1 + (config.memory.window_latent_frames - 1) * config.model.vae_scale


def plan_chunk(config: LiveActConfig, index: int) -> ChunkPlan:
    if index < 0:
        raise ValueError(f"chunk index must be >= 0, got {index}")
    mem = config.memory
    first = video_frames_per_chunk(config, 0)
    later = video_frames_per_chunk(config, 1)
    if index == 0:
        video = (0, first)
        latent = (0, mem.first_chunk_frames)
    else:
        start = first + (index - 1) * later
        video = (start, start + later)
        latent = (mem.first_chunk_frames, mem.window_latent_frames)
    return ChunkPlan(
        index=index,
        latent_frames=mem.chunk_latent_frames(index),
        latent_slice=latent,
        query_slot_start=mem.query_slot_start(index),
        video_frames=video,
        audio_window_start=max(index - 1, 0) * later,
    )


def chunks_for_frames(config: LiveActConfig, n_video_frames: int) -> int:
    """Chunks the public loop generates for audio of n video frames: int(n / later) + 1."""
    return n_video_frames // video_frames_per_chunk(config, 1) + 1


def chunk_latent_sizes(config: LiveActConfig, n_chunks: int) -> list[int]:
    """Latent frames of chunks 0 .. n_chunks - 1 ([6, 8, 8, ...] with the defaults)."""
    return [config.memory.chunk_latent_frames(k) for k in range(n_chunks)]


def total_video_frames(config: LiveActConfig, n_chunks: int) -> int:
    return video_frames_per_chunk(config, 0) + (n_chunks - 1) * video_frames_per_chunk(config, 1)


def chunk_needing_row(config: LiveActConfig, row: int) -> int:
    """The first chunk whose audio window reaches feature row (video frame) ``row``.

    That chunk waits for this row: audio up to it is the chunk's own (the generator's per-chunk traces
    start with it). Chunk k's window is video frames [audio_window_start(k), + window_video_frames).
    """
    if row < 0:
        raise ValueError(f"row must be >= 0, got {row}")
    window, later = window_video_frames(config), video_frames_per_chunk(config, 1)
    if row < window:
        return 0
    return -(-(row - window + 1) // later) + 1  # smallest k >= 1 with (k - 1) * later + window - 1 >= row
