"""ChunkScheduler, the generator session's bookkeeping: pure, synchronous, no gRPC (milliseconds).

Tiny preset at 20 fps: chunk 0 covers frames 0..20 and needs rows 0..54, chunk 1 frames 21..52 and
rows 0..54, chunk k >= 2 frames 21 + 32 (k - 1) .. and rows 32 (k - 2) + 30 .. + 56.
"""

from __future__ import annotations

import pytest
import torch

from liveact.config import get_preset
from services.generator.scheduler import ROWS_KEPT, ChunkScheduler, Numbering

TINY = get_preset("tiny")
FPS, RATE = 20.0, 16000
L, C = TINY.model.audio_layers, TINY.model.audio_channels
SAMPLES_PER_ROW = RATE // int(FPS)


def rows(n: int, start: int = 0) -> torch.Tensor:
    """(n, L, C) rows whose value is their absolute index."""
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1).expand(n, L, C).clone()


def scheduler(chunk_queue: int = 2, **kw) -> ChunkScheduler:
    return ChunkScheduler(TINY, kw.pop("numbering", Numbering()), FPS, RATE, chunk_queue, **kw)


def test_a_chunk_is_ready_once_its_last_row_has_arrived():
    s = scheduler()
    assert s.rows_needed_by(0) == (0, 54) and s.rows_needed_by(2) == (30, 86)
    s.add_rows(rows(54))
    assert not s.chunk_ready(0) and not s.can_generate()
    s.add_rows(rows(1, 54))
    assert s.can_generate()
    k, window = s.take()
    assert k == 0 and s.next_chunk == 1
    assert window.shape == (1, 53, 5, L, C)  # (1, Fv, W, L, C): 53 window frames, 5 taps each
    assert window[0, 0, 0, 0, 0] == 0 and window[0, -1, -1, 0, 0] == 54  # clamped at frame 0, up to row 54


def test_the_client_throttles_generation_by_chunk_queue():
    s = scheduler(chunk_queue=2)
    s.add_rows(rows(87))  # every row chunks 0..2 need
    s.take(), s.take()
    assert s.chunk_ready(2) and not s.can_generate()  # 2 chunks on their way to the client
    s.delivered_chunk(0)
    assert s.can_generate()
    s.delivered_chunk(0)  # twice is once
    assert s.delivered == 1


def test_the_ring_never_overwrites_a_row_still_needed():
    s = scheduler()
    assert s.ring_room() == ROWS_KEPT
    added = s.add_rows(rows(300))
    assert added.shape[0] == ROWS_KEPT and s.rows_end == ROWS_KEPT and s.ring_room() == 0
    assert s.add_rows(rows(5, ROWS_KEPT)).shape[0] == 0  # full: nothing appended
    for _ in range(3):
        s.take()
        s.delivered_chunk(s.next_chunk - 1)
    first = s.rows_needed_by(3)[0]
    assert first == 62 and s.ring_room() == first  # the rows before chunk 3's window may go
    s.add_rows(rows(first, ROWS_KEPT))
    assert s.take()[1][0, 0, 0, 0, 0] == first  # the oldest row chunk 3 needs survived


def test_pcm_runs_at_most_rows_kept_rows_ahead_of_the_dit():
    s = scheduler()
    limit = ROWS_KEPT * SAMPLES_PER_ROW
    s.sent_pcm(limit - 1)
    assert s.may_send_pcm()
    s.sent_pcm(limit)
    assert not s.may_send_pcm()
    s.add_rows(rows(87))
    for _ in range(3):
        s.take()
    assert s.may_send_pcm()  # chunk 3 needs rows from 62 on: 62 more rows of PCM may go
    s.sent_pcm(limit + 62 * SAMPLES_PER_ROW)
    assert not s.may_send_pcm()


def test_the_session_is_done_when_the_chunks_cover_the_audio():
    s = scheduler(chunk_queue=8)
    s.add_rows(rows(100))
    assert s.total_frames is None and s.keep_frames(3) == 32
    s.finish(100)
    assert s.total_frames == 100
    taken = []
    while not s.all_done():
        assert s.can_generate()
        taken.append(s.take()[0])
    assert taken == [0, 1, 2, 3]  # 21 + 32 + 32 + 32 >= 100
    assert s.keep_frames(3) == 100 - 85  # the last chunk is cut where the audio ends
    with pytest.raises(ValueError, match="100 frames but 0 rows arrived"):
        scheduler().finish(100)


def test_a_live_resume_numbers_rows_and_frames_from_its_offsets():
    n = Numbering(frame_offset=40, row_offset=62)
    assert (n.client_frame(85), n.model_row(0)) == (125, 62)
    s = scheduler(numbering=n, next_chunk=3)
    s.restore(62, rows(0, 62), None)  # a LIVE resume at chunk 3 keeps no old row past its start
    s.add_rows(rows(57, 62))
    s.finish(57)  # the new encoder stream's 57 rows are model rows 62..118
    assert s.total_frames == 119 and s.chunk_ready(3)
    assert s.pcm_rows() == 62  # no PCM sent yet: the encoder's row 0 is model row 62


def test_a_restored_session_continues_from_its_rows():
    s = scheduler(next_chunk=2, pcm_frames_sent=85 * SAMPLES_PER_ROW)
    s.restore(30, rows(55, 30), 85)  # the audio had ended at frame 85: chunks 0..2 cover it
    assert s.next_chunk == s.delivered == 2 and s.rows_end == 85 and not s.all_done()
    first, held = s.held_rows(2)
    assert first == 30 and torch.equal(held, rows(55, 30))
    assert s.take()[0] == 2 and s.all_done()


def test_the_pcm_trace_belongs_to_the_chunk_it_completes():
    s = scheduler()
    assert s.chunk_of_pcm() == 0
    s.sent_pcm(60 * SAMPLES_PER_ROW)  # rows 0..59: chunk 2's window reaches row 59 first
    assert s.chunk_of_pcm() == 2


def test_a_ring_too_small_for_one_window_is_refused():
    with pytest.raises(ValueError, match="cannot hold one audio window"):
        scheduler(rows_kept=50)
