"""The decoder service as a real process on loopback: frames equal the in-process streaming decode.

One server (``--max-streams 3``) serves every test but the SIGTERM one. Each bad-input test runs
while a healthy stream is half-way through: the healthy stream must still decode exactly the
reference frames afterwards (its causal cache is its own).
"""

from __future__ import annotations

import io
import queue
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import numpy as np
import pytest
import torch
from decoder_helpers import tiny_vae_decoder
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import expect_rpc_error
from PIL import Image
from servers import service_process

from liveact.media import frames_to_uint8, probe
from liveact.v1 import common_pb2, decoder_pb2, decoder_pb2_grpc
from liveact.vae import StreamingDecoder, get_vae_preset
from liveact.vae.loading import load_vae
from services.common.tensors import to_proto

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

SIZE = 64  # 8x8 latents
FPS = 20
CHUNKS = (6, 8, 8)  # latent frames per chunk, as a session sends them: 21, 32 and 32 video frames
SHORT = (2, 2)  # the concurrent healthy streams: 5 and 8 video frames
MAX_STREAMS = 3
TIMEOUT_S = 60  # per call: a hung server fails the test instead of blocking it
AUDIO_RATE = 16000


def reference_frames(decoder: StreamingDecoder, latents: list[torch.Tensor]) -> list[np.ndarray]:
    """(T, H, W, 3) uint8 per chunk, decoded in this process with one causal state."""
    out, state = [], None
    for z in latents:
        frames, state = decoder.decode(z, state)
        out.append(frames_to_uint8(frames))
    return out


def random_latents(sizes: tuple[int, ...], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 16, n, SIZE // 8, SIZE // 8, generator=g) for n in sizes]  # normalised: N(0, 1)


@pytest.fixture(scope="module")
def vae_decoder() -> StreamingDecoder:
    return tiny_vae_decoder()


@pytest.fixture(scope="module")
def latents() -> list[torch.Tensor]:
    return random_latents(CHUNKS, seed=1234)


@pytest.fixture(scope="module")
def reference(vae_decoder, latents) -> list[np.ndarray]:
    return reference_frames(vae_decoder, latents)


@pytest.fixture(scope="module")
def short(vae_decoder) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """Latents and reference frames of the concurrent healthy streams."""
    z = random_latents(SHORT, seed=99)
    return z, reference_frames(vae_decoder, z)


@pytest.fixture(scope="module")
def server():
    with service_process("decoder", "--max-streams", str(MAX_STREAMS)) as (address, proc):
        yield address, proc


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server[0]) as channel:
        yield decoder_pb2_grpc.DecoderStub(channel)


# -- requests --------------------------------------------------------------------------------------


def config(**overrides) -> decoder_pb2.DecodeRequest:
    fields = dict(
        vae_preset="tiny", width=SIZE, height=SIZE, fps=FPS, output_format=common_pb2.RAW_RGB,
        decode_mode=decoder_pb2.STREAM,
    )  # fmt: skip
    return decoder_pb2.DecodeRequest(config=decoder_pb2.DecodeConfig(**(fields | overrides)))


def chunk(index: int, z: torch.Tensor | common_pb2.Tensor, first_frame: int = 0, **extra) -> decoder_pb2.DecodeRequest:
    tensor = z if isinstance(z, common_pb2.Tensor) else to_proto(z)
    return decoder_pb2.DecodeRequest(
        chunk=decoder_pb2.LatentChunk(chunk_index=index, first_frame=first_frame, latents=tensor, **extra)
    )


END = decoder_pb2.DecodeRequest(end=True)


FIRST_FRAMES = (0, 21, 53)  # absolute index of each chunk's first frame


class OpenStream:
    """A Decode call driven step by step: ``send`` requests and ``recv`` responses in any order."""

    def __init__(self, stub: decoder_pb2_grpc.DecoderStub) -> None:
        self.requests: queue.Queue = queue.Queue()
        self.call = stub.Decode(iter(self.requests.get, None), timeout=TIMEOUT_S)

    def send(self, *requests: decoder_pb2.DecodeRequest) -> OpenStream:
        for r in requests:
            self.requests.put(r)
        return self

    def recv(self) -> decoder_pb2.DecodedFrames:
        return next(self.call).frames

    def finish(self) -> list[decoder_pb2.DecodedFrames]:
        """Send end, half-close, and return the remaining responses (the call must end OK)."""
        self.send(END)
        self.requests.put(None)
        rest = [r.frames for r in self.call]
        assert self.call.code() == grpc.StatusCode.OK
        return rest


def raw(frames: decoder_pb2.DecodedFrames) -> np.ndarray:
    assert len(frames.frames) == frames.frame_count
    return np.stack([np.frombuffer(f, np.uint8).reshape(SIZE, SIZE, 3) for f in frames.frames])


def decode_stream(stub, latents, **config_fields) -> list[decoder_pb2.DecodedFrames]:
    """Config, every chunk, end: all responses."""
    requests = [config(**config_fields)]
    requests += [chunk(i, z, first) for i, (z, first) in enumerate(zip(latents, FIRST_FRAMES, strict=False))]
    return [r.frames for r in stub.Decode(iter([*requests, END]), timeout=TIMEOUT_S)]


@contextmanager
def healthy_stream(stub, short) -> Iterator[None]:
    """A RAW_RGB stream with its first chunk decoded; after the block it finishes and must match the reference."""
    latents, reference = short
    s = OpenStream(stub).send(config(), chunk(0, latents[0]))
    got = [s.recv()]  # admitted and running
    yield
    s.send(chunk(1, latents[1], 5))
    got.append(s.recv())
    assert s.finish() == []
    assert_frames(got, reference, [(0, 0, 5), (1, 5, 8)])


def assert_frames(got: list[decoder_pb2.DecodedFrames], reference: list[np.ndarray], numbering) -> None:
    assert [(f.chunk_index, f.first_frame, f.frame_count) for f in got] == numbering
    for f, want in zip(got, reference, strict=True):
        assert np.array_equal(raw(f), want)


# -- decoding --------------------------------------------------------------------------------------


def test_health_is_serving(server):
    with grpc.insecure_channel(server[0]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "liveact.v1.Decoder"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_raw_rgb_frames_equal_the_in_process_decode_bitwise(stub, latents, reference):
    got = decode_stream(stub, latents, output_format=common_pb2.RAW_RGB)
    assert_frames(got, reference, [(0, 0, 21), (1, 21, 32), (2, 53, 32)])


def test_keep_frames_trims_the_chunk(stub, short):
    latents, reference = short
    s = OpenStream(stub).send(config(), chunk(0, latents[0]), chunk(1, latents[1], 5, keep_frames=3))
    got = [s.recv(), s.recv()]
    assert s.finish() == []
    assert_frames(got, [reference[0], reference[1][:3]], [(0, 0, 5), (1, 5, 3)])


def test_bfloat16_latents_decode_as_their_float32_values(stub, vae_decoder, short):
    latents = [z.bfloat16() for z in short[0]]
    requests = [config(), chunk(0, latents[0]), chunk(1, latents[1], 5), END]
    got = [r.frames for r in stub.Decode(iter(requests), timeout=TIMEOUT_S)]
    assert_frames(got, reference_frames(vae_decoder, [z.float() for z in latents]), [(0, 0, 5), (1, 5, 8)])


def test_jpeg_frames_are_pillow_jpegs_close_to_the_raw_frames(stub, latents, reference):
    got = decode_stream(stub, latents[:2], output_format=common_pb2.OUTPUT_FORMAT_UNSPECIFIED)  # = JPEG, quality 90
    assert [f.frame_count for f in got] == [21, 32]
    for f, want in zip(got, reference[:2], strict=True):
        images = [Image.open(io.BytesIO(b)) for b in f.frames]
        assert all(im.format == "JPEG" and im.size == (SIZE, SIZE) and im.mode == "RGB" for im in images)
        pixels = np.stack([np.asarray(im) for im in images]).astype(np.int16)
        # lossy (4:2:0 chroma; the built-in VAE's pictures of random latents: 1.4 to 1.7), but the same pictures
        # (against the frames half the chunk away: 14 to 20)
        assert np.abs(pixels - want).mean() < 4
        assert np.abs(pixels - np.roll(want, len(want) // 2, axis=0)).mean() > 10
        buf = io.BytesIO()
        Image.fromarray(want[0]).save(buf, format="JPEG", quality=90)
        assert f.frames[0] == buf.getvalue()  # jpeg_quality 0 means 90


def test_fmp4_stream_probes_to_every_frame_at_the_fps(stub, latents, reference, tmp_path):
    requests = [config(output_format=common_pb2.FMP4_H264, audio_sample_rate=AUDIO_RATE)]
    for i, (z, first, frames) in enumerate(zip(latents, FIRST_FRAMES, reference, strict=True)):
        pcm = np.sin(np.arange(len(frames) * AUDIO_RATE // FPS) / 10).astype("<f4") * 0.1  # the chunk's audio
        requests.append(chunk(i, z, first, audio_pcm_f32=pcm.tobytes()))
    got = [r.frames for r in stub.Decode(iter([*requests, END]), timeout=TIMEOUT_S)]
    assert [f.frame_count for f in got[:3]] == [21, 32, 32] and sum(f.frame_count for f in got) == 85
    assert not any(f.frames for f in got)
    path = tmp_path / "out.mp4"
    path.write_bytes(b"".join(f.fmp4 for f in got))
    info = probe(path, count_frames=True)
    assert info.video.codec == "h264" and (info.video.width, info.video.height) == (SIZE, SIZE)
    assert info.video.frame_count == 85 and info.video.fps == FPS
    assert info.audio is not None and info.audio.codec == "aac" and info.audio.sample_rate == AUDIO_RATE


# -- bad input: each ends its own call, a concurrent stream goes on ------------------------------------


def garbage(_z) -> common_pb2.Tensor:
    return common_pb2.Tensor(dtype="float32", shape=[1, 16, 2, 8, 8], data=b"not a tensor")


BAD_STREAMS = {
    "chunk_before_config": (
        lambda z: [chunk(0, z)],
        grpc.StatusCode.FAILED_PRECONDITION,
        ("first message", "must be a DecodeConfig", "got chunk"),
    ),
    "wrong_vae_preset": (
        lambda z: [config(vae_preset="wan2.1"), chunk(0, z)],
        grpc.StatusCode.INVALID_ARGUMENT,
        ("'wan2.1'", "'tiny'"),
    ),
    "width_not_a_multiple_of_16": (
        lambda z: [config(width=72)],
        grpc.StatusCode.INVALID_ARGUMENT,
        ("multiples of 16", "72x64"),
    ),
    "unknown_output_format": (
        lambda z: [config(output_format=7)],
        grpc.StatusCode.INVALID_ARGUMENT,
        ("output_format 7", "RAW_RGB", "FMP4_H264"),
    ),
    "latents_of_the_wrong_shape": (
        lambda z: [config(), chunk(0, z[:, :, :, :4, :4])],
        grpc.StatusCode.INVALID_ARGUMENT,
        ("(1, 16, 6, 4, 4)", "(1, 16, F, 8, 8)"),
    ),
    "latents_of_garbage_bytes": (
        lambda z: [config(), chunk(0, garbage(z))],
        grpc.StatusCode.INVALID_ARGUMENT,
        ("12 bytes", "needs 8192"),
    ),
    "latents_not_finite": (
        lambda z: [config(), chunk(0, z.clone().fill_(float("nan")))],
        grpc.StatusCode.INVALID_ARGUMENT,
        ("NaN",),
    ),
    "latents_of_an_integer_dtype": (
        lambda z: [config(), chunk(0, z.to(torch.int64))],
        grpc.StatusCode.INVALID_ARGUMENT,
        ("'int64'", "float32"),
    ),
    "second_config": (
        lambda z: [config(), config()],
        grpc.StatusCode.FAILED_PRECONDITION,
        ("config was already sent",),
    ),
    "audio_without_an_audio_track": (
        lambda z: [config(), chunk(0, z, audio_pcm_f32=bytes(400))],
        grpc.StatusCode.INVALID_ARGUMENT,
        ("no audio track", "FMP4_H264"),
    ),
    "chunk_index_skipping": (
        lambda z: [config(), chunk(0, z[:, :, :1]), chunk(2, z[:, :, :1], 1)],
        grpc.StatusCode.INVALID_ARGUMENT,
        ("chunk_index 2", "expected 1"),
    ),
    "keep_frames_beyond_the_chunk": (
        lambda z: [config(), chunk(0, z, keep_frames=22)],
        grpc.StatusCode.INVALID_ARGUMENT,
        ("keep_frames 22", "21 frames"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_STREAMS))
def test_bad_input_ends_only_its_own_stream(stub, latents, short, case):
    make, code, words = BAD_STREAMS[case]
    with healthy_stream(stub, short):
        expect_rpc_error(stub.Decode(iter([*make(latents[0]), END]), timeout=TIMEOUT_S), code, *words)


def test_streams_beyond_the_limit_are_refused_until_one_ends(stub, latents, short):
    one = latents[0][:, :, :1]
    with healthy_stream(stub, short):
        held = [OpenStream(stub).send(config(), chunk(0, one)) for _ in range(MAX_STREAMS - 1)]
        assert [s.recv().frame_count for s in held] == [1] * (MAX_STREAMS - 1)  # every slot is taken
        expect_rpc_error(
            stub.Decode(iter([config(), END]), timeout=TIMEOUT_S),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"all {MAX_STREAMS}",
            "busy",
        )
        held[0].finish()  # an ended stream frees its slot at once
        assert decode_stream(stub, [one])[0].frame_count == 1
        held[1].call.cancel()  # so does a cancelled one, once the server has seen the cancellation
        deadline = time.monotonic() + 10
        while True:
            try:
                assert decode_stream(stub, [one])[0].frame_count == 1
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                time.sleep(0.05)


# -- life cycle ---------------------------------------------------------------------------------------


def test_sigterm_lets_a_stream_finish_then_exits_0(short, tmp_path):
    """With --weights-dir: a stream in flight at SIGTERM completes (frames from those weights), then exit 0."""
    cfg = get_vae_preset("tiny")
    vae = load_vae(cfg, None, seed=7)  # other weights than the built-in / fresh ones
    vae.save_pretrained(tmp_path / "vae")
    latents, _ = short
    want = reference_frames(StreamingDecoder(vae, cfg), latents)
    grace_s = 2.0
    args = ("--weights-dir", str(tmp_path / "vae"), "--grace-s", str(grace_s))
    with service_process("decoder", *args) as (address, proc), grpc.insecure_channel(address) as channel:
        stub = decoder_pb2_grpc.DecoderStub(channel)
        busy = OpenStream(stub).send(config(), chunk(0, latents[0]))
        got = [busy.recv()]
        idle = OpenStream(stub).send(config())  # never ends by itself: cancelled when the grace period is over
        time.sleep(0.2)  # let the server take the idle stream's config
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        busy.send(chunk(1, latents[1], 5))
        got.append(busy.recv())
        assert busy.finish() == []
        assert proc.wait(timeout=grace_s + 10) == 0
        assert time.monotonic() - sent < grace_s + 3
        with pytest.raises(grpc.RpcError):
            idle.recv()
    assert_frames(got, want, [(0, 0, 5), (1, 5, 8)])
