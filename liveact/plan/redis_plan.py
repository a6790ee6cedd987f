"""What a session costs the Redis that holds its checkpoints: memory per session and write bandwidth.

From the tensors a rank's checkpoint holds (the dry run's snapshot: names and bytes), at the
session's tensor-parallel degree. Parts are addressed by content (``liveact.state.parts``), so:

* the *shared* tensors (the ConvKV sink slots, fixed after chunk 0, and the conditioning, the same
  on every rank) are stored once per session, whatever the number of versions or ranks;
* every version adds its *changed* tensors (the other cache slots, the RNG state, and on rank 0 the
  audio rows, bounded by ``ROWS_KEPT``, and the decoder stream's state; the audio encoder's, about
  0.1 MB of PCM history, is left out);
* Redis keeps ``keep_versions`` versions, and while a version is being written one more: the peak.

A rank's tensors are stored as one stream per ``schema.layout_group`` (``liveact.state.streams``: the
capture's buffers, padding included), and each stream's parts are costed as Redis stores them
(``liveact.state.redis_memory``: size classes and keys). Small keys (record, lease, history, the
audio log since the last checkpoint) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from liveact.config import LiveActConfig
from liveact.parallel.reshard import sharded_name
from liveact.sampling.audio_window import held_rows_bytes
from liveact.state.redis_memory import PART_KEY_CHARS, tensor_memory
from liveact.state.schema import by_layout_group, fixed_after_first_chunk
from liveact.state.settings import MIN_KEEP_VERSIONS, StoreSettings
from liveact.state.streams import layout

__all__ = ["MB", "RedisPlan", "rank_share", "redis_plan", "stream_bytes"]

MB = 1_000_000  # --checkpoint-mbps counts decimal megabytes per second
shared = fixed_after_first_chunk  # a tensor every version of a session holds alike


def rank_share(tensors: Mapping[str, int], tp: int, from_tp: int = 1) -> dict[str, int]:
    """A rank's checkpoint tensors (name -> bytes) at degree ``tp``, from one rank's at ``from_tp``: the caches split
    by heads, the rest the same on every rank."""
    return {n: b * from_tp // tp if sharded_name(n) else b for n, b in tensors.items()}


@dataclass(frozen=True)
class RedisPlan:
    """One session's checkpoints in Redis (bytes as Redis stores them)."""

    first_bytes: int  # the first version: every tensor of every rank
    later_bytes: int  # what each later version adds (its changed tensors)
    shared_bytes: int  # stored once per session
    keep_versions: int
    session_bytes: int  # steady: the shared tensors and ``keep_versions`` versions' changed ones
    peak_bytes: int  # while a version is written, before the oldest is collected
    first_write_per_rank: int  # tensor bytes the busiest rank sends for the first version
    later_write_per_rank: int  # and for each later one: what a per-rank write budget is spent on

    def interval_s(self, budget_mbps: float) -> float:
        """The shortest spacing of later checkpoints a per-rank budget allows (0 without one)."""
        return self.later_write_per_rank / (budget_mbps * MB) if budget_mbps > 0 else 0.0


def redis_plan(
    config: LiveActConfig,
    rank_tensors: Mapping[str, int],
    tp: int,
    keep_versions: int = MIN_KEEP_VERSIONS,
    cut_bytes: int = StoreSettings().cut_bytes,
    key_chars: int = PART_KEY_CHARS,
    decoder_state_bytes: int = 0,
) -> RedisPlan:
    """``rank_tensors``: one rank's checkpoint tensors (name -> bytes, ``export_sampler``'s names); every rank
    holds the same sizes (its heads), the shared ones alike. Rank 0 adds the audio rows (``ROWS_KEPT`` at most)
    and the decoder stream's state (``decoder_state_bytes``: ``context_state_nbytes`` in the default mode)."""
    rows = held_rows_bytes(config)
    groups = stream_bytes(rank_tensors)

    def memory(*nbytes: int) -> int:
        return sum(tensor_memory(n, cut_bytes, key_chars) for n in nbytes if n)

    shared_bytes = tp * memory(groups["sink"]) + memory(groups["cond"])  # the conditioning's parts: alike on every rank
    later = tp * memory(groups["state"]) + memory(rows, decoder_state_bytes)  # rank 0's streams of their own
    rank0_later = groups["state"] + rows + decoder_state_bytes
    return RedisPlan(
        first_bytes=shared_bytes + later,
        later_bytes=later,
        shared_bytes=shared_bytes,
        keep_versions=keep_versions,
        session_bytes=shared_bytes + keep_versions * later,
        peak_bytes=shared_bytes + (keep_versions + 1) * later,
        first_write_per_rank=sum(groups.values()) + rows + decoder_state_bytes,
        later_write_per_rank=rank0_later,
    )


def stream_bytes(rank_tensors: Mapping[str, int]) -> dict[str, int]:
    """Bytes of each of a rank's streams (``schema.layout_group`` -> its capture buffer, padding included)."""
    groups = by_layout_group(rank_tensors)
    return {group: layout([rank_tensors[n] for n in names])[1] for group, names in groups.items()}
