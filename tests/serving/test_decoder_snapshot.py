"""Decoder snapshots: a stream resumed from a snapshot decodes exactly what an uninterrupted one does.

In process (``DecodeStream``, tiny VAE, RAW_RGB): chunks 0..4 straight vs 0..2, snapshot to bytes, a
new stream from them, 3..4: the same frames bit for bit. ``first_output_frame`` drops exactly the
frames before it (a chunk entirely before it is answered with ``frame_count`` 0). A resumed FMP4_H264
stream is a new fragmented MP4 starting at its first frame. Then through a real server: the round
trip, the refusals (damaged or mismatched ``resume_state``, a snapshot after ``end``), and the round
trip of a ``decode_mode`` CONTEXT stream (the rest of CONTEXT mode: ``test_decoder_context_mode.py``).
"""

from __future__ import annotations

import decoder_helpers
import grpc
import numpy as np
import pytest
import torch
from decoder_helpers import latent_chunk, raw_frames, tiny_vae_decoder
from helpers import expect_rpc_error
from servers import service_process

from liveact.media import frames_to_uint8, probe, video_frame_times
from liveact.v1 import common_pb2, decoder_pb2, decoder_pb2_grpc
from liveact.vae import StreamingDecoder
from services.common import snapshot
from services.common.errors import RequestError
from services.decoder.stream import DecodeStream

SIZE = 32  # 4x4 latents
FPS = 20
LATENTS_PER_CHUNK = (3, 2, 2, 2, 2)  # 9, 8, 8, 8, 8 video frames
FIRST_FRAMES = (0, 9, 17, 25, 33)
TOTAL_FRAMES = 41
END_FRAMES = (*FIRST_FRAMES[1:], TOTAL_FRAMES)
AUDIO_RATE = 16000
SPLIT = 3  # chunks 0..2, snapshot, 3..4
MAX_RESPONSE_BYTES = 1 << 20
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def vae_decoder() -> StreamingDecoder:
    return tiny_vae_decoder()


@pytest.fixture(scope="module")
def latents() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return [torch.randn(1, 16, n, SIZE // 8, SIZE // 8, generator=g) for n in LATENTS_PER_CHUNK]


@pytest.fixture(scope="module")
def reference(vae_decoder, latents) -> np.ndarray:
    """(41, H, W, 3) uint8: every frame of one uninterrupted RAW_RGB stream."""
    stream = new_stream(vae_decoder)
    frames = np.concatenate([raw(stream.decode(chunk(i, z))) for i, z in enumerate(latents)])
    assert len(frames) == TOTAL_FRAMES
    return frames


def new_stream(
    decoder: StreamingDecoder, state: bytes = b"", max_bytes: int = MAX_RESPONSE_BYTES, **fmt_fields
) -> DecodeStream:
    return decoder_helpers.new_stream(decoder, SIZE, FPS, decoder_pb2.STREAM, max_bytes, state, **fmt_fields)


def chunk(index: int, z: torch.Tensor, **extra) -> decoder_pb2.LatentChunk:
    return latent_chunk(index, FIRST_FRAMES[index], z, **extra)


def raw(responses: list[decoder_pb2.DecodeResponse]) -> np.ndarray:
    return raw_frames(responses, SIZE)


def snap(stream: DecodeStream, snapshot_id: int = 7) -> common_pb2.StreamSnapshot:
    response = stream.snapshot(common_pb2.SnapshotRequest(id=snapshot_id))
    assert response.WhichOneof("kind") == "snapshot" and response.snapshot.id == snapshot_id
    return response.snapshot


# -- in process ------------------------------------------------------------------------------------


def test_resumed_stream_decodes_the_same_frames_bitwise(vae_decoder, latents, reference):
    a = new_stream(vae_decoder)
    head = [raw(a.decode(chunk(i, z))) for i, z in enumerate(latents[:SPLIT])]
    s = snap(a)
    assert s.next_frame == FIRST_FRAMES[SPLIT] and len(s.state) < 1 << 20  # tiny preset: small
    b = new_stream(vae_decoder, s.state)
    tail = [raw(b.decode(chunk(i, z))) for i, z in enumerate(latents[SPLIT:], SPLIT)]
    assert np.array_equal(np.concatenate(head + tail), reference)
    assert b.finish() == []
    # the original stream is unaffected by its snapshot
    assert np.array_equal(raw(a.decode(chunk(SPLIT, latents[SPLIT]))), reference[FIRST_FRAMES[SPLIT] : 33])


def test_snapshot_before_the_first_chunk_and_chained_snapshots(vae_decoder, latents, reference):
    state = snap(new_stream(vae_decoder)).state  # a fresh stream: the next chunk may have any index
    frames = []
    for i, z in enumerate(latents):
        stream = new_stream(vae_decoder, state)
        frames.append(raw(stream.decode(chunk(i, z))))
        state = snap(stream, i).state
    assert np.array_equal(np.concatenate(frames), reference)


def test_resumed_stream_keeps_the_chunk_order(vae_decoder, latents):
    a = new_stream(vae_decoder)
    a.decode(chunk(0, latents[0]))
    b = new_stream(vae_decoder, snap(a).state)
    with pytest.raises(RequestError, match="chunk_index 2 is out of order: expected 1"):
        b.decode(chunk(2, latents[2]))


@pytest.mark.parametrize("first_output_frame", [0, 5, 17, 20, 41, 100])
def test_first_output_frame_drops_exactly_the_earlier_frames(vae_decoder, latents, reference, first_output_frame):
    stream = new_stream(vae_decoder, first_output_frame=first_output_frame)
    sent = []
    for i, z in enumerate(latents):
        responses = stream.decode(chunk(i, z))
        if END_FRAMES[i] <= first_output_frame:  # entirely before: one empty answer at the chunk's end
            numbering = [(r.frames.chunk_index, r.frames.first_frame, r.frames.frame_count) for r in responses]
            assert numbering == [(i, END_FRAMES[i], 0)]
        else:
            assert responses[0].frames.first_frame == max(FIRST_FRAMES[i], first_output_frame)
        sent.append(raw(responses))
    assert np.array_equal(np.concatenate(sent), reference[first_output_frame:])


def test_resume_with_first_output_frame_skips_what_the_client_has(vae_decoder, latents, reference):
    a = new_stream(vae_decoder)
    for i in range(2):
        a.decode(chunk(i, latents[i]))
    state = snap(a).state  # at frame 17; the client already got frames up to 28
    b = new_stream(vae_decoder, state, first_output_frame=29)
    got = [raw(b.decode(chunk(i, latents[i]))) for i in range(2, 5)]
    assert [len(g) for g in got] == [0, 4, 8]
    assert np.array_equal(np.concatenate(got), reference[29:])


@pytest.mark.integration
def test_resumed_fmp4_stream_is_a_new_mp4_starting_at_its_first_frame(vae_decoder, latents, tmp_path):
    """Resumed at chunk 3 (frames 25..32) with first_output_frame 27: an MP4 of frames 27..40 from t = 0."""
    fmp4 = dict(output_format=common_pb2.FMP4_H264, audio_sample_rate=AUDIO_RATE)
    a = new_stream(vae_decoder, **fmp4)
    for i in range(SPLIT):
        a.decode(chunk(i, latents[i]))
    state = snap(a).state
    a.close()
    b = new_stream(vae_decoder, state, first_output_frame=27, **fmp4)
    responses = []
    for i in range(SPLIT, 5):
        samples = (END_FRAMES[i] - FIRST_FRAMES[i]) * AUDIO_RATE // FPS  # the chunk's audio, of its frames
        audio = np.full(samples, 0.1, "<f4").tobytes()
        responses += b.decode(chunk(i, latents[i], audio_pcm_f32=audio))
    responses += b.finish()
    assert [r.frames.first_frame for r in responses[:2]] == [27, 33] and responses[0].frames.frame_count == 6
    path = tmp_path / "resumed.mp4"
    path.write_bytes(b"".join(r.frames.fmp4 for r in responses))
    info = probe(path, count_frames=True)
    assert info.video.frame_count == TOTAL_FRAMES - 27 and info.video.fps == FPS
    assert info.audio is not None and info.audio.sample_rate == AUDIO_RATE
    assert video_frame_times(path)[0] == 0  # its own timeline: the first frame it sent is at 0


def test_bad_resume_states_are_invalid_argument(vae_decoder, latents):
    a = new_stream(vae_decoder)
    a.decode(chunk(0, latents[0]))
    state = snap(a).state
    cases = {
        b"\x01\x02garbage": "truncated",
        state[:-100]: "damaged",
        snapshot.pack("audio_encoder", {"x": torch.zeros(1)}): "'audio_encoder' stream",
        snapshot.pack("decoder", {"x": torch.zeros(1)}, {"vae_preset": "wan2.1"}): "VAE preset 'wan2.1'",
        snapshot.pack("decoder", {"x": torch.zeros(1)}, {"vae_preset": "tiny"}): "missing 'width'",
    }
    for data, words in cases.items():
        with pytest.raises(RequestError, match=words) as info:
            new_stream(vae_decoder, data)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(RequestError, match="width = 32 px, but this stream has 64 px"):
        new_stream(vae_decoder, state, output_format=common_pb2.RAW_RGB, width=64, height=64)
    tensors = a.state_dict()
    slot = next(k for k, v in tensors.items() if k.startswith("vae.cache.") and v.numel())
    for bad in (tensors[slot].double(), tensors[slot][0], tensors[slot] * float("nan")):
        data = snapshot.pack("decoder", {**tensors, slot: bad}, {"vae_preset": "tiny"})
        with pytest.raises(RequestError, match=f"'{slot[4:]}' must be finite"):
            new_stream(vae_decoder, data)
    # well-formed but of the wrong shape: refused when it is first used, with a reason
    data = snapshot.pack("decoder", {**tensors, slot: tensors[slot][:, :1]}, {"vae_preset": "tiny"})
    with pytest.raises(RequestError, match="resume_state does not fit this VAE"):
        new_stream(vae_decoder, data).decode(chunk(1, latents[1]))


def test_state_over_the_message_limit_is_resource_exhausted(vae_decoder, latents):
    stream = new_stream(vae_decoder, max_bytes=4096)
    stream.decode(chunk(0, latents[0]))
    with pytest.raises(RequestError, match=r"snapshot state is \d+ bytes.*--max-message-mb") as info:
        stream.snapshot(common_pb2.SnapshotRequest(id=1))
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- through a real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub():
    with service_process("decoder", "--max-streams", "2") as (address, _proc), grpc.insecure_channel(address) as ch:
        yield decoder_pb2_grpc.DecoderStub(ch)


def config(**fields) -> decoder_pb2.DecodeRequest:
    base = dict(
        vae_preset="tiny", width=SIZE, height=SIZE, fps=FPS, output_format=common_pb2.RAW_RGB,
        decode_mode=decoder_pb2.STREAM,
    )  # fmt: skip
    return decoder_pb2.DecodeRequest(config=decoder_pb2.DecodeConfig(**(base | fields)))


def requests(latents, indices, *tail: decoder_pb2.DecodeRequest) -> list[decoder_pb2.DecodeRequest]:
    return [decoder_pb2.DecodeRequest(chunk=chunk(i, latents[i])) for i in indices] + list(tail)


END = decoder_pb2.DecodeRequest(end=True)


def snapshot_request(snapshot_id: int) -> decoder_pb2.DecodeRequest:
    return decoder_pb2.DecodeRequest(snapshot=common_pb2.SnapshotRequest(id=snapshot_id))


@pytest.mark.integration
def test_server_snapshot_round_trip(stub, latents, reference):
    first = list(
        stub.Decode(iter([config(), *requests(latents, range(SPLIT), snapshot_request(41)), END]), timeout=TIMEOUT_S)
    )
    kinds = [r.WhichOneof("kind") for r in first]
    assert kinds == ["frames"] * SPLIT + ["snapshot"]  # after chunk 2's frames, in order
    s = first[-1].snapshot
    assert s.id == 41 and s.next_frame == FIRST_FRAMES[SPLIT]
    resumed = [config(resume_state=s.state, first_output_frame=27), *requests(latents, range(SPLIT, 5)), END]
    second = list(stub.Decode(iter(resumed), timeout=TIMEOUT_S))
    assert [(r.frames.chunk_index, r.frames.first_frame, r.frames.frame_count) for r in second] == [
        (3, 27, 6),
        (4, 33, 8),
    ]
    head = np.concatenate([raw([r]) for r in first[:SPLIT]])
    assert np.array_equal(head, reference[: FIRST_FRAMES[SPLIT]])
    assert np.array_equal(raw(second), reference[27:])


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"resume_state": b"not a snapshot at all"}, grpc.StatusCode.INVALID_ARGUMENT, ["DecodeConfig.resume_state"]),
        ({"width": 64, "height": 64}, grpc.StatusCode.INVALID_ARGUMENT, ["width = 32 px", "64 px"]),
    ],
)
def test_server_refuses_bad_or_mismatched_resume_state(stub, latents, fields, code, words):
    if "resume_state" not in fields:  # a real snapshot, for a stream of another size
        got = list(stub.Decode(iter([config(), *requests(latents, [0], snapshot_request(1)), END]), timeout=TIMEOUT_S))
        fields = fields | {"resume_state": got[-1].snapshot.state}
    expect_rpc_error(stub.Decode(iter([config(**fields), END]), timeout=TIMEOUT_S), code, *words)


@pytest.mark.integration
def test_server_refuses_a_snapshot_after_end(stub, latents):
    call = stub.Decode(iter([config(), *requests(latents, [0], END, snapshot_request(2))]), timeout=TIMEOUT_S)
    expect_rpc_error(call, grpc.StatusCode.FAILED_PRECONDITION, "snapshot after end")


@pytest.mark.integration
def test_server_context_mode_round_trip(stub, vae_decoder, latents):
    """decode_mode CONTEXT through the server: decode_with_context's frames, a small snapshot, resumed
    in CONTEXT mode (and refused in the default STREAM mode, naming the mode it was taken in)."""
    want, context = [], None
    for z in latents:
        frames, context = vae_decoder.decode_with_context(context, z)
        want.append(frames_to_uint8(frames))
    context_mode = {"decode_mode": decoder_pb2.CONTEXT}
    first = list(
        stub.Decode(
            iter([config(**context_mode), *requests(latents, range(SPLIT), snapshot_request(5)), END]),
            timeout=TIMEOUT_S,
        )
    )
    s = first[-1].snapshot
    assert s.id == 5 and s.next_frame == FIRST_FRAMES[SPLIT]
    assert len(s.state) < 16 * 3 * (SIZE // 8) ** 2 * 4 + 64 * 1024  # 3 latents (at most float32) + metadata
    resumed = [config(resume_state=s.state, **context_mode), *requests(latents, range(SPLIT, 5)), END]
    second = list(stub.Decode(iter(resumed), timeout=TIMEOUT_S))
    got = np.concatenate([raw([r]) for r in first[:SPLIT]] + [raw(second)])
    assert np.array_equal(got, np.concatenate(want))
    expect_rpc_error(
        stub.Decode(iter([config(resume_state=s.state), END]), timeout=TIMEOUT_S),
        grpc.StatusCode.INVALID_ARGUMENT,
        "taken in decode_mode CONTEXT",
        "set DecodeConfig.decode_mode to CONTEXT",
    )
