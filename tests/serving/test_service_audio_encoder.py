"""The audio encoder service as a real process: rows equal the library's offline rows, every bad input
ends its own stream with a status saying what to fix while a healthy stream on the same server
completes, admission control, cancellation frees the slot, SIGTERM drains and exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from helpers import expect_rpc_error
from servers import ROOT, service_process
from signals import SR, speech_like

from liveact.audio import AudioConfig, audio_features, decode_pcm, load_backend, pcm_from_bytes
from liveact.audio.resample import StreamingResampler
from liveact.config import get_preset
from liveact.v1 import audio_encoder_pb2 as pb
from liveact.v1 import audio_encoder_pb2_grpc, common_pb2
from services.audio_encoder.settings import EncoderSettings
from services.common.tensors import from_proto

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

MEL = AudioConfig.for_model(get_preset("tiny").model)  # 4 x 32 rows
BACKEND = load_backend(MEL)
TOLERANCE = 1e-5  # mel rows: streamed == offline (measured max |diff| 0.0)
# 48 kHz -> 16 kHz by the service's resampler vs ffmpeg's, rows at 25 fps (no tempo stretch, whose
# discrete WSOLA shifts would amplify any waveform difference): measured relative RMS 0.008
RESAMPLED_REL_RMS = 0.02
MAX_STREAMS = 4
PCM_LIMIT = 65536
S16, F32 = common_pb2.AudioFormat.PCM_S16LE, common_pb2.AudioFormat.PCM_F32LE
TIMEOUT_S = 30
POOL = ThreadPoolExecutor(8)


def s16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def config(fps=20.0, encoding=S16, rate=SR, channels=1, layers=4, feature_channels=32) -> pb.EncodeRequest:
    fmt = common_pb2.AudioFormat(encoding=encoding, sample_rate=rate, channels=channels)
    return pb.EncodeRequest(config=pb.EncodeConfig(fps=fps, audio_format=fmt, layers=layers, channels=feature_channels))


def pieces(data: bytes, frame_bytes: int, rng: np.random.Generator, max_frames: int = 6000) -> list[bytes]:
    """``data`` cut at random whole-frame boundaries (an empty piece included)."""
    out, i = [b""], 0
    while i < len(data):
        n = int(rng.integers(1, max_frames)) * frame_bytes
        out.append(data[i : i + n])
        i += n
    return out


def collect(responses) -> tuple[torch.Tensor, int, int]:
    """-> (rows, total_frames, responses): checks first_frame continuity and that only the last is final."""
    rows, messages, total = [], 0, None
    for r in responses:
        assert total is None, "a response after the final one"
        assert r.rows.first_frame == sum(x.shape[0] for x in rows)
        rows.append(from_proto(r.rows.rows))
        messages += 1
        if r.rows.final:
            total = r.rows.total_frames
    assert total is not None, "the stream ended without a final response"
    return torch.cat(rows), total, messages


def expect_error(call, code: grpc.StatusCode, *words: str) -> str:
    return expect_rpc_error(call, code, *words, consume=collect)  # the responses before the error checked too


# -- a server for the module ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    args = ["--reflection", "--max-streams", str(MAX_STREAMS), "--max-message-mb", "1"]
    with service_process("audio_encoder", *args, "--max-pcm-bytes-per-message", str(PCM_LIMIT)) as (addr, proc):
        with grpc.insecure_channel(addr) as channel:
            yield channel, proc, addr


@pytest.fixture(scope="module")
def stub(server):
    return audio_encoder_pb2_grpc.AudioEncoderStub(server[0])


# one clip for all healthy streams, and its offline rows
SPEECH = s16(speech_like(2.0, seed=7))
SPEECH_ROWS = audio_features(pcm_from_bytes(SPEECH, "s16le", 1), BACKEND, MEL, fps=20)


@contextmanager
def healthy_stream(stub, seed: int = 0) -> Iterator[None]:
    """A correct stream, mid-flight (rows already received) while the body runs, checked after it."""
    gate, admitted = threading.Event(), threading.Event()
    parts = pieces(SPEECH, 2, np.random.default_rng(seed), max_frames=3000)
    cut = len(parts) // 2

    def requests():
        yield config()
        yield from (pb.EncodeRequest(pcm=p) for p in parts[:cut])
        gate.wait(TIMEOUT_S)
        yield from (pb.EncodeRequest(pcm=p) for p in parts[cut:])
        yield pb.EncodeRequest(end_of_audio=True)

    def run():
        def watched(responses):
            for r in responses:
                admitted.set()
                yield r

        return collect(watched(stub.Encode(requests(), timeout=TIMEOUT_S)))

    future = POOL.submit(run)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not admitted.wait(0.02):
            if future.done() or time.monotonic() > deadline:
                future.result(0)  # its error, if it failed
                raise AssertionError("the healthy stream ended or stalled before any rows came back")
        yield
    finally:
        gate.set()
    rows, total, _ = future.result(TIMEOUT_S)
    assert total == SPEECH_ROWS.shape[0] and rows.shape == SPEECH_ROWS.shape
    assert (rows - SPEECH_ROWS).abs().max() <= TOLERANCE


# -- rows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("encoding", "channels", "fps"), [("s16le", 1, 20.0), ("f32le", 2, 25.0), ("s16le", 1, 0.0)])
def test_streamed_rows_equal_offline_rows(stub, encoding, channels, fps):
    x = speech_like(3.0, seed=3)
    frames = np.stack([x, 0.5 * x], axis=1)[:, :channels]
    data = s16(frames) if encoding == "s16le" else frames.astype("<f4").tobytes()
    offline = audio_features(pcm_from_bytes(data, encoding, channels), BACKEND, MEL, fps=fps or 20.0)

    frame_bytes = (2 if encoding == "s16le" else 4) * channels
    parts = pieces(data, frame_bytes, np.random.default_rng(1))
    requests = [config(fps, S16 if encoding == "s16le" else F32, SR, channels)]
    requests += [pb.EncodeRequest(pcm=p) for p in parts] + [pb.EncodeRequest(end_of_audio=True)]
    rows, total, messages = collect(stub.Encode(iter(requests), timeout=TIMEOUT_S))
    assert total == offline.shape[0] == int(3.0 * (fps or 20.0)) and rows.shape == offline.shape
    assert (rows - offline).abs().max() <= TOLERANCE
    assert messages > 3  # streamed as rows became final, not all at the end


def test_other_sample_rates_are_resampled(stub):
    rate = 48000
    x = speech_like(2.0, sr=rate, seed=5)
    data = s16(np.stack([x, x], axis=1))
    requests = [
        config(fps=25.0, rate=rate, channels=2),
        *(pb.EncodeRequest(pcm=p) for p in pieces(data, 4, np.random.default_rng(2))),
    ]
    rows, total, _ = collect(stub.Encode(iter([*requests, pb.EncodeRequest(end_of_audio=True)]), timeout=TIMEOUT_S))

    resampler = StreamingResampler(rate, SR)  # chunking never changes it: equal to one whole push
    mono = pcm_from_bytes(data, "s16le", 2)
    exact = audio_features(np.concatenate([resampler.push(mono), resampler.finish()]), BACKEND, MEL, fps=25)
    assert total == 50 and rows.shape == exact.shape and (rows - exact).abs().max() <= TOLERANCE
    # an independent resampler (mono: ffmpeg's stereo downmix is not the channel mean the stream uses)
    ffmpeg = audio_features(decode_pcm(s16(x), "s16le", rate, 1), BACKEND, MEL, fps=25)
    assert ((rows - ffmpeg).norm() / ffmpeg.norm()).item() < RESAMPLED_REL_RMS


def test_resampler_output_does_not_depend_on_push_sizes():
    rng = np.random.default_rng(3)
    for rate in (8000, 44100, 48000):
        x = speech_like(0.5, sr=rate, seed=1)
        whole = StreamingResampler(rate, SR)
        a = np.concatenate([whole.push(x), whole.finish()])
        split, parts, i = StreamingResampler(rate, SR), [], 0
        while i < x.size:
            n = int(rng.integers(0, 700))
            parts.append(split.push(x[i : i + n]))
            i += n
        b = np.concatenate([*parts, split.finish()])
        assert a.size == -(-x.size * SR // rate) and np.array_equal(a, b)
        assert split.buffered_samples < 1000  # bounded: the filter's taps, not the stream


# -- health, reflection --------------------------------------------------------------------------


def test_health_is_serving_and_reflection_lists_the_service(server):
    channel = server[0]
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "liveact.v1.AudioEncoder"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT_S)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "liveact.v1.AudioEncoder" in services and "grpc.health.v1.Health" in services


# -- bad input: each ends its own stream with a status saying what to fix ---------------------------

BAD_STREAMS = {
    "pcm_before_config": (
        [pb.EncodeRequest(pcm=b"\0\0")],
        grpc.StatusCode.FAILED_PRECONDITION,
        ["send an EncodeConfig first"],
    ),
    "wrong_layout": (
        [config(layers=12, feature_channels=768)],
        grpc.StatusCode.INVALID_ARGUMENT,
        ["12 x 768", "4 x 32", "tiny"],
    ),
    "odd_bytes_s16le": (
        [config(), pb.EncodeRequest(pcm=b"\0\0\0")],
        grpc.StatusCode.INVALID_ARGUMENT,
        ["3 bytes", "2 bytes per frame", "send complete frames"],
    ),
    "unknown_encoding": (
        [config(encoding=7)],
        grpc.StatusCode.INVALID_ARGUMENT,
        ["encoding = 7", "PCM_S16LE", "PCM_F32LE"],
    ),
    "negative_fps": ([config(fps=-5.0)], grpc.StatusCode.INVALID_ARGUMENT, ["fps = -5", "must be > 0"]),
    "fps_out_of_range": ([config(fps=500.0)], grpc.StatusCode.INVALID_ARGUMENT, ["fps", "use an fps between"]),
    "sample_rate_out_of_range": (
        [config(rate=1000)],
        grpc.StatusCode.INVALID_ARGUMENT,
        ["1000 Hz", "send 16000 Hz"],
    ),
    "pcm_over_the_encoders_limit": (
        [config(), pb.EncodeRequest(pcm=bytes(PCM_LIMIT + 2))],
        grpc.StatusCode.INVALID_ARGUMENT,
        [f"limit of {PCM_LIMIT} bytes", "smaller pieces"],
    ),
    "non_finite_samples": (
        [config(encoding=F32), pb.EncodeRequest(pcm=np.full(800, np.nan, "<f4").tobytes())],
        grpc.StatusCode.INVALID_ARGUMENT,
        ["NaN"],
    ),
    "second_config": ([config(), config()], grpc.StatusCode.FAILED_PRECONDITION, ["one per stream"]),
    "too_little_audio": (
        [config(), pb.EncodeRequest(pcm=bytes(200)), pb.EncodeRequest(end_of_audio=True)],
        grpc.StatusCode.INVALID_ARGUMENT,
        ["shorter than one video frame", "push more audio"],
    ),
    "closed_without_end_of_audio": (
        [config(), pb.EncodeRequest(pcm=s16(speech_like(0.5)))],
        grpc.StatusCode.FAILED_PRECONDITION,
        ["send end_of_audio"],
    ),
    "empty_request": (
        [config(), pb.EncodeRequest()],
        grpc.StatusCode.INVALID_ARGUMENT,
        ["config, pcm or end_of_audio"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STREAMS))
def test_bad_stream_is_refused_while_a_healthy_one_completes(stub, case):
    requests, code, words = BAD_STREAMS[case]
    with healthy_stream(stub):
        expect_error(stub.Encode(iter(requests), timeout=TIMEOUT_S), code, *words)


def test_message_over_the_grpc_limit_is_refused_by_grpc(stub):
    big = bytes(1536 * 1024)  # --max-message-mb 1
    with healthy_stream(stub):
        expect_error(
            stub.Encode(iter([config(), pb.EncodeRequest(pcm=big)]), timeout=TIMEOUT_S),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "larger than max",
        )


# -- admission, cancellation -----------------------------------------------------------------------


@contextmanager
def held_streams(stub, n: int, release: threading.Event | None = None) -> Iterator[list]:
    """``n`` open streams, each admitted (rows received), cancelled on exit. Their request iterators
    block until ``release`` is set (by default right after the cancel)."""
    gate = release or threading.Event()
    data = s16(speech_like(1.0, seed=9))

    def requests():
        yield config()
        yield pb.EncodeRequest(pcm=data)
        gate.wait(TIMEOUT_S)

    calls = [stub.Encode(requests(), timeout=TIMEOUT_S) for _ in range(n)]
    try:
        for call in calls:
            assert next(call).rows.rows.shape[0] > 0
        yield calls
    finally:
        for call in calls:
            call.cancel()
        if release is None:
            gate.set()


def test_too_many_streams_are_refused(stub):
    with healthy_stream(stub), held_streams(stub, MAX_STREAMS - 1):
        expect_error(
            stub.Encode(iter([config()]), timeout=TIMEOUT_S),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"limit of {MAX_STREAMS} concurrent streams",
            "retry later",
        )


def test_cancelled_and_disconnected_streams_free_their_slots(server, stub):
    """Every slot taken: half by streams the client cancels, half by a connection that goes away. The
    requests never end (no half-close), so only the cancellation can free the slots."""
    release = threading.Event()
    try:
        with grpc.insecure_channel(server[2]) as other:
            other_stub = audio_encoder_pb2_grpc.AudioEncoderStub(other)
            with held_streams(stub, MAX_STREAMS // 2, release), held_streams(other_stub, MAX_STREAMS // 2, release):
                other.close()  # disconnect: its streams die with the connection
        deadline = time.monotonic() + 10
        while True:  # the server sees the cancellations a moment later; then it counts 0 streams
            try:
                with held_streams(stub, MAX_STREAMS):  # every slot free at once
                    break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with healthy_stream(stub):  # and the server still works
            pass
    finally:
        release.set()


# -- life cycle ----------------------------------------------------------------------------------


def test_sigterm_lets_streams_finish_then_exits_0():
    grace, release = 2.0, threading.Event()

    def idle_requests():
        yield config()
        release.wait(TIMEOUT_S)

    with service_process("audio_encoder", "--grace-s", str(grace)) as (addr, proc):
        with grpc.insecure_channel(addr) as channel:
            stub = audio_encoder_pb2_grpc.AudioEncoderStub(channel)
            idle = stub.Encode(idle_requests(), timeout=TIMEOUT_S)  # still open when the grace period ends
            try:
                with healthy_stream(stub):  # in flight at SIGTERM: finishes within the grace period
                    proc.send_signal(signal.SIGTERM)
                    t0 = time.monotonic()
                    time.sleep(0.2)
                assert proc.wait(timeout=grace + 10) == 0
                assert time.monotonic() - t0 < grace + 3
                with pytest.raises(grpc.RpcError):  # cancelled at the end of the grace period
                    collect(idle)
            finally:
                release.set()


def test_settings_are_validated_at_start(capsys):
    with pytest.raises(SystemExit):
        EncoderSettings.parse(["--preset", "nope", "--max-streams", "0", "--max-pcm-bytes-per-message", "10"])
    err = capsys.readouterr().err
    assert "unknown preset 'nope'" in err and "--max-streams 0" in err and "--max-pcm-bytes-per-message 10" in err
    with pytest.raises(SystemExit):
        EncoderSettings.parse(["--preset", "liveact-18b"])
    assert "--weights-dir" in capsys.readouterr().err


def test_a_failed_warm_up_stops_the_process():
    cmd = [sys.executable, "-m", "services.audio_encoder", "--port", "0", "--preset", "liveact-18b"]
    with tempfile.TemporaryDirectory() as empty:  # no wav2vec2 anywhere: refused before serving, naming the choices
        proc = subprocess.run([*cmd, "--weights-dir", empty], cwd=ROOT, capture_output=True, timeout=60, text=True)
    assert proc.returncode == 2 and "no wav2vec2 model" in proc.stderr and "chinese-wav2vec2-base/" in proc.stderr
    with tempfile.TemporaryDirectory() as folder:  # a wav2vec2 config without its weights: the warm-up fails
        (Path(folder) / "config.json").write_text('{"model_type": "wav2vec2"}')
        proc = subprocess.run([*cmd, "--weights-dir", folder], cwd=ROOT, capture_output=True, timeout=60, text=True)
    assert proc.returncode == 1 and "warm-up failed" in proc.stderr
