"""Where a session is resumed: a ``ResumeRequest`` checked, its checkpoint loaded, the replay planned.

EXACT mode (the default): the newest valid checkpoint describes the session before chunk k+1
(``services.generator.checkpoint``). The sampler is rebuilt from it, the audio ring refilled with
the stored rows, the encoder and decoder streams restarted from their stored states, and the
AudioChunks stored since the checkpoint are replayed through the encoder before the client's new
audio (``SessionHeader.next_audio_seq`` tells the client where to continue). If the log has a gap
(an append failed while Redis was unreachable), only the chunks before it are replayed, the rest
of the log is dropped, and the client resends from the gap on. Generation from chunk
k+1 on is then the same computation as in the uninterrupted run, so the frames are bit-identical;
the decoder drops the frames before the client's ``next_frame``, so none is sent twice.

Tensor parallelism: the checkpoint holds one DiT shard per rank of the generator that wrote it; a
generator with another ``--tp`` re-splits them by heads (``liveact.parallel.reshard``), same degree
restores each rank's own shard bit for bit.

Refusals: NOT_FOUND (no such session, or it expired), PERMISSION_DENIED (wrong resume secret),
FAILED_PRECONDITION (no checkpoint yet, or one made by another preset or an incompatible version),
DATA_LOSS (every stored version is damaged), OUT_OF_RANGE (``next_frame`` before the checkpoint or
past the frames the stored audio makes; LIVE: audio starting before ``next_frame``), UNAVAILABLE
(the session store is unreachable).

LIVE mode: the checkpoint's memory, conditioning, RNG and decoder cache go on, but not its audio:
the client's new audio (from ``audio_pts_us``) starts a fresh encoder stream whose rows are spliced
into the model's timeline where the checkpoint's next chunk begins (the stored rows before that
point stay as the window's left context). The frames from the client's ``next_frame`` up to the
new audio's time are skipped (reported in the header), none is sent twice; frame numbers go on in
the client's time (``frame_offset``), chunk indices in the model's, so the first new chunk is the
checkpoint's, not a restart from chunk 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
import torch

from liveact.audio.frames import frame_count
from liveact.parallel.ranks import DitRanks, SessionDiT
from liveact.parallel.reshard import ReshardError, reshard
from liveact.pipeline import Engine
from liveact.sampling.state import SamplerStateError
from liveact.state.schema import AUDIO_ROWS, DECODER_STATE, ENCODER_STATE, AudioPosition, dit_part
from liveact.state.store import (
    BadSecret,
    CheckpointCorrupt,
    CheckpointMissing,
    Lease,
    SessionNotFound,
    SessionStore,
    StoreUnavailable,
    UnsupportedFormat,
)
from liveact.v1 import generator_pb2
from services.common.errors import RequestError
from services.generator.checkpoint import tensor_bytes
from services.generator.validate import SessionParams, params_from_info

log = logging.getLogger(__name__)


@dataclass
class Restored:
    """Everything a ``GeneratorSession`` needs to continue a checkpointed session."""

    dit: SessionDiT  # the sampler state restored on every rank
    chunk_index: int  # the next chunk to generate
    rows_first: int  # absolute row index of rows[0]
    rows: torch.Tensor  # (n, L, C) feature rows chunk_index and later need
    audio_position: AudioPosition  # where the encoder state stands in the client's audio
    encoder_state: bytes
    decoder_state: bytes
    replay: list[tuple[int, bytes]]  # stored AudioChunks audio_position.seq, +1, ... (no gap)
    next_audio_seq: int  # the AudioChunk seq the client sends next
    first_output_frame: int  # the client's next_frame: earlier frames are not sent again
    audio_total: int | None  # the audio had ended at the checkpoint: rows holds all that is left
    version: int
    frame_offset: int = 0  # client frame = model frame + frame_offset
    row_offset: int = 0  # model row of the encoder stream's row 0
    skipped_frames: int = 0  # LIVE: frames from the client's next_frame on that are never sent


def contiguous(entries: list[tuple[int, bytes]], first: int) -> list[tuple[int, bytes]]:
    """The logged chunks ``first, first + 1, ...`` up to the first missing one."""
    out: list[tuple[int, bytes]] = []
    for seq, data in entries:
        if seq != first + len(out):
            break
        out.append((seq, data))
    return out


async def resume(
    store: SessionStore, engine: Engine, ranks: DitRanks, request: generator_pb2.ResumeRequest, owner: str
) -> tuple[SessionParams, Restored, Lease]:
    sid = request.session_id
    try:
        return await _resume(store, engine, ranks, request, owner)
    except SessionNotFound:
        raise RequestError(
            grpc.StatusCode.NOT_FOUND, f"session {sid!r} is unknown or expired: start a new session"
        ) from None
    except BadSecret:
        raise RequestError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"wrong resume_secret for session {sid!r}: send the one from its SessionHeader",
        ) from None
    except CheckpointMissing:
        raise RequestError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"session {sid!r} has no checkpoint yet (the first comes after a few chunks): start a new session",
        ) from None
    except UnsupportedFormat as exc:
        raise RequestError(
            grpc.StatusCode.FAILED_PRECONDITION, f"session {sid!r}: {exc}: resume on a replica of that version"
        ) from None
    except CheckpointCorrupt as exc:
        raise RequestError(grpc.StatusCode.DATA_LOSS, f"session {sid!r} cannot be resumed: {exc}") from None
    except StoreUnavailable as exc:
        raise RequestError(grpc.StatusCode.UNAVAILABLE, f"the session store is unreachable ({exc}): retry") from None


def rank_states(shards: list[dict[str, torch.Tensor]], tp: int) -> list[dict[str, torch.Tensor]]:
    """The DiT part of each stored rank shard, re-split by heads when it was written at another degree."""
    states = [dit_part(shard) for shard in shards]
    return states if len(states) == tp else reshard(states, tp)


async def _resume(
    store: SessionStore, engine: Engine, ranks: DitRanks, request: generator_pb2.ResumeRequest, owner: str
) -> tuple[SessionParams, Restored, Lease]:
    sid = request.session_id
    live = request.mode == generator_pb2.ResumeRequest.LIVE
    info = await store.check_secret(sid, request.resume_secret)
    checkpoint = await store.read_checkpoint(sid)
    meta = checkpoint.meta
    if info.preset != engine.config.name:
        raise RequestError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"session {sid!r} was made by preset {info.preset!r}; this generator runs {engine.config.name!r}: "
            "resume on a matching replica",
        )
    params = params_from_info(info, sid, request.resume_secret, engine.audio_config)
    position, audio_total = meta.audio, meta.audio_total
    first, wanted = meta.next_frame, int(request.next_frame)
    frame_offset, row_offset = meta.frame_offset, meta.row_offset
    if live:
        if audio_total is not None:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {sid!r}'s audio had ended at its checkpoint: there is no live audio to go on with; "
                "resume with mode EXACT",
            )
        live_frame = round(request.audio_pts_us * params.fps / 1_000_000)
        if request.audio_pts_us < 0 or live_frame < wanted:
            raise RequestError(
                grpc.StatusCode.OUT_OF_RANGE,
                f"audio_pts_us {request.audio_pts_us} (frame {live_frame}) is before next_frame {wanted}: LIVE "
                "audio must start at or after the first frame not received",
            )
        replay = []
    else:
        replay = contiguous(await store.read_audio(sid, position.seq), position.seq)
        stored_frames = position.frames + sum(len(d) for _, d in replay) // params.frame_bytes
        stored_frames -= position.offset // params.frame_bytes if replay else 0
        made = frame_count(stored_frames, params.sample_rate, params.fps) + row_offset + frame_offset
        available = audio_total + frame_offset if audio_total is not None else made
        if not first <= wanted <= available:
            raise RequestError(
                grpc.StatusCode.OUT_OF_RANGE,
                f"next_frame {wanted} is outside what session {sid!r} can resume: frames {first}..{available} "
                f"(its checkpoint starts at frame {first}, and the stored audio makes {available} frames)",
            )
    shard = checkpoint.shards[0]
    try:
        dit = await ranks.restore(rank_states(checkpoint.shards, ranks.size), sid)
    except (SamplerStateError, ReshardError) as exc:
        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, f"session {sid!r}: {exc}") from None
    next_audio_seq = replay[-1][0] + 1 if replay else position.seq
    try:
        lease = await store.acquire(sid, owner)
        if dropped := await store.truncate_audio(lease, next_audio_seq):  # LIVE, or after a gap: not replayed
            log.info("audio log cut", extra={"session": sid, "from_seq": next_audio_seq, "dropped": dropped})
    except BaseException:
        dit.close()  # the restored sampler (on every rank) is not used
        raise
    rows_first, rows = meta.rows_first, shard[AUDIO_ROWS]
    encoder_state = tensor_bytes(shard[ENCODER_STATE])
    skipped = 0
    if live:  # a new audio stream whose row 0 is the model frame chunk_index starts at
        model_start = first - frame_offset
        keep = max(0, min(rows.shape[0], model_start - rows_first)) if rows.dim() == 3 else 0
        rows = rows[:keep]  # only the old rows before it: context for the new chunk's window
        if (missing := model_start - rows_first - keep) > 0:  # never expected: the window reaches past it
            rows = torch.cat([rows, torch.zeros(missing, *rows.shape[1:])])
        skipped = live_frame - wanted
        frame_offset, row_offset = live_frame - model_start, model_start
        position, encoder_state, wanted = AudioPosition(next_audio_seq, 0, 0), b"", live_frame
    restored = Restored(
        dit=dit,
        chunk_index=meta.chunk_index,
        rows_first=rows_first,
        rows=rows,
        audio_position=position,
        encoder_state=encoder_state,
        decoder_state=tensor_bytes(shard[DECODER_STATE]),
        replay=replay,
        next_audio_seq=next_audio_seq,
        first_output_frame=wanted,
        audio_total=audio_total,
        version=checkpoint.version,
        frame_offset=frame_offset,
        row_offset=row_offset,
        skipped_frames=skipped,
    )
    where = {"session": sid, "version": checkpoint.version, "chunk": restored.chunk_index, "next_frame": wanted}
    log.info("session resumed", extra={**where, "mode": "live" if live else "exact", "skipped": skipped})
    return params, restored, lease
