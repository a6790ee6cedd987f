"""Audio encoder snapshots: each streaming stage's ``state_dict`` and the whole ``EncodeStream``.

A stream fed PCM A, snapshotted (to bytes), and a new stream resumed from those bytes and fed PCM B
must give exactly the rows of one stream fed A + B, final rows and ``total_frames`` included, for
random PCM cut at random points: with and without resampling (44.1 and 48 kHz -> 16 kHz), a tempo
factor of 1 (25 fps) and not (20, 24 fps), s16 and f32, mono and stereo. Then the same through a
real server: continuation, and the refusals (damaged or mismatched ``resume_state``, a snapshot after
``end_of_audio``).
"""

from __future__ import annotations

import itertools

import grpc
import numpy as np
import pytest
import torch
from helpers import expect_rpc_error
from servers import service_process
from signals import SR, speech_like

from liveact.audio import AudioConfig, RowsUnavailable, StreamingAudioFeatures, StreamingTempo, load_backend, tempo_for
from liveact.audio.resample import StreamingResampler
from liveact.audio.rows import FrameRing
from liveact.config import get_preset
from liveact.v1 import audio_encoder_pb2 as pb
from liveact.v1 import audio_encoder_pb2_grpc, common_pb2
from services.audio_encoder.stream import EncodeStream, StreamFormat
from services.common import snapshot
from services.common.tensors import from_proto

MEL = AudioConfig.for_model(get_preset("tiny").model)  # 4 x 32 rows, 21 history frames
BACKEND = load_backend(MEL)
CUTS_PER_CASE = 3


def random_pieces(x, rng: np.random.Generator, most: int) -> list:
    """``x`` (samples or bytes) cut at random sizes 0..most (empty pieces included)."""
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(0, most))
        out.append(x[i : i + n])
        i += n
    return out


def round_trip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Through the bytes a snapshot travels as."""
    return snapshot.unpack(snapshot.pack("test", state), "test").tensors


# -- each stage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [20.0, 24.0, 25.0])  # tempo factors 1.25, 25/24, 1 (identity)
def test_tempo_state_continues_bit_for_bit(fps):
    x = speech_like(1.5, seed=4)
    whole = tempo_for(MEL, fps)
    want = np.concatenate([whole.push(x), whole.finish()])
    rng = np.random.default_rng(int(fps))
    for cut in [0, *rng.integers(1, x.size, CUTS_PER_CASE), x.size]:
        a = tempo_for(MEL, fps)
        head = [a.push(p) for p in random_pieces(x[:cut], rng, 900)]
        b = tempo_for(MEL, fps)
        b.load_state_dict(round_trip(a.state_dict()))
        tail = [b.push(p) for p in random_pieces(x[cut:], rng, 900)]
        got = np.concatenate([*head, *tail, b.finish()])
        assert np.array_equal(got, want), f"cut at {cut}"


@pytest.mark.parametrize("rate", [44100, 48000, 8000])
def test_resampler_state_continues_bit_for_bit(rate):
    x = speech_like(0.7, sr=rate, seed=2)
    whole = StreamingResampler(rate, SR)
    want = np.concatenate([whole.push(x), whole.finish()])
    rng = np.random.default_rng(rate)
    for cut in [0, *rng.integers(1, x.size, CUTS_PER_CASE), x.size]:
        a = StreamingResampler(rate, SR)
        head = [a.push(p) for p in random_pieces(x[:cut], rng, 2000)]
        b = StreamingResampler(rate, SR)
        b.load_state_dict(round_trip(a.state_dict()))
        got = np.concatenate([*head, *(b.push(p) for p in random_pieces(x[cut:], rng, 2000)), b.finish()])
        assert np.array_equal(got, want), f"cut at {cut}"


@pytest.mark.parametrize("fps", [20.0, 25.0])
def test_features_state_continues_and_holds_no_rows(fps):
    x = speech_like(2.0, seed=6)
    whole = StreamingAudioFeatures(BACKEND, MEL, fps)
    want = torch.cat([whole.push(x).rows, whole.finish().rows])
    rng = np.random.default_rng(7)
    for cut in [0, *rng.integers(1, x.size, CUTS_PER_CASE), x.size]:
        a = StreamingAudioFeatures(BACKEND, MEL, fps)
        head = [a.push(p).rows for p in random_pieces(x[:cut], rng, 5000)]
        b = StreamingAudioFeatures(BACKEND, MEL, fps)
        b.load_state_dict(round_trip(a.state_dict()))
        end = a.frames_final
        assert b.frames_final == end and b.oldest_frame == end  # positioned there, holding no rows
        tail = [b.push(p) for p in random_pieces(x[cut:], rng, 5000)]
        last = b.finish()
        assert [r.start for r in [*tail, last]] == list(itertools.accumulate((len(r.rows) for r in tail), initial=end))
        got = torch.cat([*head, *(r.rows for r in tail), last.rows])
        assert torch.equal(got, want) and b.total_frames == whole.total_frames
        if 0 < end < b.total_frames:  # rows from before the snapshot are not in the resumed stream
            with pytest.raises(RowsUnavailable, match="dropped"):
                b.rows(end - 1, end + 1)


def test_ring_restarted_at_a_position_holds_nothing_before_it():
    ring = FrameRing(8, 1, 2)
    ring.restart_at(100)
    assert (ring.start, ring.end) == (100, 100)
    ring.append(torch.ones(3, 1, 2))
    assert torch.equal(ring.get(100, 103), torch.ones(3, 1, 2))
    with pytest.raises(RowsUnavailable, match="dropped"):
        ring.get(99, 101)


def test_states_are_checked_strictly():
    tempo = tempo_for(MEL, 20.0)
    tempo.push(speech_like(0.3))
    state = tempo.state_dict()
    with pytest.raises(ValueError, match=r"factor_num = 5.*this stream has 1"):
        tempo_for(MEL, 25.0).load_state_dict(state)
    with pytest.raises(ValueError, match=r"unexpected entries \['extra'\]"):
        tempo_for(MEL, 20.0).load_state_dict({**state, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match="missing 'acc'"):
        tempo_for(MEL, 20.0).load_state_dict({k: v for k, v in state.items() if k != "acc"})
    with pytest.raises(ValueError, match=r"'received' must be a 0-d torch\.int64"):
        tempo_for(MEL, 20.0).load_state_dict({**state, "received": torch.zeros(2)})
    with pytest.raises(ValueError, match="inconsistent"):
        tempo_for(MEL, 20.0).load_state_dict({**state, "buf_start": state["buf_start"] + 1})
    with pytest.raises(ValueError, match="in_rate = 44100 Hz"):
        StreamingResampler(48000, SR).load_state_dict(StreamingResampler(44100, SR).state_dict())
    features = StreamingAudioFeatures(BACKEND, MEL, 20.0).state_dict()
    with pytest.raises(ValueError, match=r"fps = 20\.0.*this stream has 25\.0"):
        StreamingAudioFeatures(BACKEND, MEL, 25.0).load_state_dict(features)
    tempo.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        tempo.state_dict()
    assert isinstance(tempo, StreamingTempo)


# -- the whole stream ------------------------------------------------------------------------------

# (sample rate, encoding, channels, fps): resampled or not, tempo factor 1 or not, s16 / f32, mono / stereo
FORMATS = [
    (16000, "s16le", 1, 20.0),
    (44100, "s16le", 2, 20.0),
    (48000, "f32le", 1, 25.0),
    (44100, "f32le", 2, 24.0),
    (16000, "f32le", 2, 25.0),
]


def pcm_bytes(fmt: StreamFormat, seconds: float, seed: int) -> bytes:
    x = speech_like(seconds, sr=fmt.sample_rate, seed=seed)
    frames = np.stack([x, 0.6 * x[::-1]], axis=1)[:, : fmt.channels]
    if fmt.encoding == "s16le":
        return (np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes()
    return frames.astype("<f4").tobytes()


def push_all(stream: EncodeStream, data: bytes, rng: np.random.Generator) -> list:
    """``data`` in random whole-frame pieces -> the non-empty FeatureRows returned."""
    frames = random_pieces(range(len(data) // stream.format.frame_bytes), rng, 9000)
    pieces = [data[r.start * stream.format.frame_bytes : r.stop * stream.format.frame_bytes] for r in frames]
    return [rows for rows in map(stream.push, pieces) if rows.rows.shape[0]]


def joined(parts: list) -> tuple[torch.Tensor, list[int]]:
    return torch.cat([p.rows for p in parts]), [p.start for p in parts]


@pytest.mark.parametrize(("rate", "encoding", "channels", "fps"), FORMATS)
def test_encode_stream_resumed_from_bytes_equals_one_stream(rate, encoding, channels, fps):
    fmt = StreamFormat(encoding, rate, channels, fps)
    data = pcm_bytes(fmt, 2.5, seed=rate + channels)
    rng = np.random.default_rng(rate * channels)
    whole = EncodeStream(BACKEND, MEL, fmt)
    want = [*push_all(whole, data, rng), whole.finish()]
    want_rows, _ = joined(want)
    n_frames = len(data) // fmt.frame_bytes
    for cut in [0, *sorted(rng.integers(1, n_frames, CUTS_PER_CASE)), n_frames]:
        a = EncodeStream(BACKEND, MEL, fmt)
        head = push_all(a, data[: cut * fmt.frame_bytes], rng)
        state = a.snapshot()
        b = EncodeStream(BACKEND, MEL, fmt)
        b.resume(state)
        assert b.next_frame == a.next_frame == sum(r.rows.shape[0] for r in head)
        tail = [*push_all(b, data[cut * fmt.frame_bytes :], rng), b.finish()]
        got, starts = joined(head + tail)
        assert torch.equal(got, want_rows), f"cut at frame {cut}"
        assert starts[len(head)] == a.next_frame  # rows go on at the snapshot's position
        assert b.features.total_frames == whole.features.total_frames
        assert b.bytes_received == len(data)


def test_encode_stream_resumes_a_resumed_stream():
    fmt = StreamFormat("s16le", 44100, 1, 20.0)
    data = pcm_bytes(fmt, 2.0, seed=1)
    whole = EncodeStream(BACKEND, MEL, fmt)
    want = torch.cat([whole.push(data).rows, whole.finish().rows])
    cuts = [0, 17_000, 17_001, 51_000, len(data) // 2]  # in sample frames (2 bytes each)
    stream, rows = EncodeStream(BACKEND, MEL, fmt), []
    for lo, hi in itertools.pairwise(cuts):
        rows.append(stream.push(data[2 * lo : 2 * hi]).rows)
        state = stream.snapshot()
        stream = EncodeStream(BACKEND, MEL, fmt)
        stream.resume(state)
    rows.append(stream.finish().rows)
    assert torch.equal(torch.cat(rows), want)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"sample_rate": 48000}, ["audio_format.sample_rate = 44100", "48000"]),
        ({"fps": 25.0}, ["fps = 20", "25"]),
        ({"encoding": "f32le", "channels": 2}, ["audio_format.encoding = PCM_S16LE", "PCM_F32LE", "channels = 1"]),
    ],
)
def test_resume_with_another_format_says_what_differs(change, words):
    fmt = StreamFormat("s16le", 44100, 1, 20.0)
    a = EncodeStream(BACKEND, MEL, fmt)
    a.push(pcm_bytes(fmt, 0.5, seed=2))
    other = StreamFormat(**{**fmt.__dict__, **change})
    with pytest.raises(ValueError) as info:
        EncodeStream(BACKEND, MEL, other).resume(a.snapshot())
    for word in words:
        assert word in str(info.value), str(info.value)


def test_damaged_states_are_refused_with_a_reason():
    fmt = StreamFormat("s16le", SR, 1, 20.0)
    a = EncodeStream(BACKEND, MEL, fmt)
    a.push(pcm_bytes(fmt, 0.5, seed=3))
    state = a.snapshot()
    cases = {
        b"": "too short",
        b"garbage bytes, not a snapshot": "truncated",
        state[: len(state) // 2]: "damaged",
        state[:9]: "truncated",
        bytes(len(state)): "not a safetensors header",
        snapshot.pack("decoder", {"x": torch.zeros(1)}): "snapshot of an 'decoder' stream",
        snapshot.pack("audio_encoder", {"x": torch.zeros(1)}): "missing 'format.encoding'",
    }
    for data, words in cases.items():
        with pytest.raises(ValueError, match=words):
            EncodeStream(BACKEND, MEL, fmt).resume(data)
    a.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        a.snapshot()


# -- through a real server ---------------------------------------------------------------------------

TIMEOUT_S = 30


@pytest.fixture(scope="module")
def stub():
    with service_process("audio_encoder", "--max-streams", "2") as (address, _proc):
        with grpc.insecure_channel(address) as channel:
            yield audio_encoder_pb2_grpc.AudioEncoderStub(channel)


def encode_config(fmt: StreamFormat, resume_state: bytes = b"") -> pb.EncodeRequest:
    encoding = common_pb2.AudioFormat.PCM_S16LE if fmt.encoding == "s16le" else common_pb2.AudioFormat.PCM_F32LE
    audio = common_pb2.AudioFormat(encoding=encoding, sample_rate=fmt.sample_rate, channels=fmt.channels)
    config = pb.EncodeConfig(
        fps=fmt.fps, audio_format=audio, layers=MEL.layers, channels=MEL.channels, resume_state=resume_state
    )
    return pb.EncodeRequest(config=config)


def pcm_requests(data: bytes, frame_bytes: int, rng: np.random.Generator) -> list[pb.EncodeRequest]:
    frames = random_pieces(range(len(data) // frame_bytes), rng, 12000)
    return [pb.EncodeRequest(pcm=data[r.start * frame_bytes : r.stop * frame_bytes]) for r in frames]


def responses(call, start: int = 0) -> tuple[list[torch.Tensor], list[common_pb2.StreamSnapshot], int]:
    """-> (rows in order, snapshots with the rows received before each, total_frames); numbering checked."""
    rows, snapshots, total = [], [], None
    for r in call:
        assert total is None, "a response after the final one"
        if r.WhichOneof("kind") == "snapshot":
            assert r.snapshot.next_frame == start + sum(len(x) for x in rows)  # every row before it was sent
            snapshots.append(r.snapshot)
            continue
        assert r.rows.first_frame == start + sum(len(x) for x in rows)
        rows.append(from_proto(r.rows.rows))
        if r.rows.final:
            total = r.rows.total_frames
    assert total is not None, "the stream ended without its final rows"
    return rows, snapshots, total


@pytest.mark.integration
def test_server_snapshot_round_trip(stub):
    """One stream with a snapshot in the middle, and a second stream resumed from it: the same rows."""
    fmt = StreamFormat("s16le", 44100, 2, 20.0)
    data = pcm_bytes(fmt, 3.0, seed=11)
    rng = np.random.default_rng(11)
    cut = 59_999 * fmt.frame_bytes
    head, tail = pcm_requests(data[:cut], fmt.frame_bytes, rng), pcm_requests(data[cut:], fmt.frame_bytes, rng)
    snapshot_request = pb.EncodeRequest(snapshot=common_pb2.SnapshotRequest(id=9))
    end = pb.EncodeRequest(end_of_audio=True)
    call = stub.Encode(iter([encode_config(fmt), *head, snapshot_request, *tail, end]), timeout=TIMEOUT_S)
    rows, (snap,), total = responses(call)
    assert snap.id == 9 and 0 < snap.next_frame < total
    resumed = stub.Encode(iter([encode_config(fmt, snap.state), *tail, end]), timeout=TIMEOUT_S)
    rows_after, _, total_after = responses(resumed, start=snap.next_frame)
    assert total_after == total == 60
    assert torch.equal(torch.cat(rows_after), torch.cat(rows)[snap.next_frame :])


def server_snapshot(stub, fmt: StreamFormat) -> bytes:
    data = pcm_bytes(fmt, 0.5, seed=12)
    snapshot_request = pb.EncodeRequest(snapshot=common_pb2.SnapshotRequest(id=1))
    requests = [encode_config(fmt), pb.EncodeRequest(pcm=data), snapshot_request, pb.EncodeRequest(end_of_audio=True)]
    _, (snap,), _ = responses(stub.Encode(iter(requests), timeout=TIMEOUT_S))
    return snap.state


@pytest.mark.integration
def test_server_refuses_a_damaged_resume_state(stub):
    fmt = StreamFormat("s16le", SR, 1, 20.0)
    state = server_snapshot(stub, fmt)
    for damaged in (b"garbage", state[: len(state) // 3]):
        call = stub.Encode(iter([encode_config(fmt, damaged)]), timeout=TIMEOUT_S)
        expect_rpc_error(call, grpc.StatusCode.INVALID_ARGUMENT, "EncodeConfig.resume_state")


@pytest.mark.integration
def test_server_refuses_a_resume_state_of_another_format(stub):
    fmt = StreamFormat("s16le", 44100, 1, 20.0)
    other = StreamFormat("s16le", 48000, 1, 24.0)
    call = stub.Encode(iter([encode_config(other, server_snapshot(stub, fmt))]), timeout=TIMEOUT_S)
    expect_rpc_error(call, grpc.StatusCode.INVALID_ARGUMENT, "sample_rate = 44100", "48000", "fps = 20", "24")


@pytest.mark.integration
def test_server_refuses_a_snapshot_after_end_of_audio(stub):
    fmt = StreamFormat("s16le", SR, 1, 20.0)
    requests = [
        encode_config(fmt),
        pb.EncodeRequest(pcm=pcm_bytes(fmt, 0.5, seed=13)),
        pb.EncodeRequest(end_of_audio=True),
        pb.EncodeRequest(snapshot=common_pb2.SnapshotRequest(id=3)),
    ]
    expect_rpc_error(
        stub.Encode(iter(requests), timeout=TIMEOUT_S), grpc.StatusCode.FAILED_PRECONDITION, "after end_of_audio"
    )
