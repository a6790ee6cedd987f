"""The three services as separate processes on loopback, driven by the Python client."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from generator_helpers import END, EXAMPLES, RATE, TONE, stream
from generator_helpers import audio as _audio
from generator_helpers import config as _config
from servers import service_process

from liveact.audio import decode_audio
from liveact.client import animate
from liveact.client.animate import to_s16
from liveact.media import load_reference_image
from liveact.pipeline import AnimationSession, load_engine
from liveact.v1 import common_pb2

pytestmark = pytest.mark.integration  # every test here starts services, Redis or ffmpeg

SECONDS = 3


@pytest.fixture(scope="module")
def cluster():
    with service_process("audio_encoder") as (enc, _), service_process("decoder") as (dec, _):
        with service_process("generator", "--audio-encoder", enc, "--decoder", dec, "--max-sessions", "2") as (
            gen,
            proc,
        ):
            yield gen, proc


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    pcm = decode_audio(EXAMPLES / "speech.wav")[: RATE * SECONDS]
    return to_s16(pcm).astype(np.float32) / 32768.0  # exactly what the client's s16le carries


def run(coro):
    return asyncio.run(coro)


def test_frames_equal_in_process_animate(cluster, speech):
    gen, _ = cluster
    image = (EXAMPLES / "face.png").read_bytes()
    result = run(animate(gen, image, speech, RATE, output_format=common_pb2.RAW_RGB, seed=7))
    assert result.header.width == 64 and result.end.frames == SECONDS * 20
    remote = result.raw_frames()

    engine = load_engine("tiny")
    session = AnimationSession(engine, load_reference_image(image, 64, 64), fps=20, seed=7)
    chunks = session.push_audio(speech) + session.finish()
    local = np.concatenate([c.frames for c in chunks])
    assert remote.shape == local.shape == (SECONDS * 20, 64, 64, 3)
    assert np.array_equal(remote, local)
    assert [c.first_frame for c in result.chunks] == [c.first_frame for c in chunks]
    assert result.chunks[1].pts_us == 21 * 50_000


@pytest.mark.parametrize(
    "messages,code,words",
    [
        ([], grpc.StatusCode.INVALID_ARGUMENT, "SessionConfig first"),
        ([_audio(0, TONE), END], grpc.StatusCode.FAILED_PRECONDITION, "first message must be a SessionConfig"),
        ([_config(fps=-5), END], grpc.StatusCode.INVALID_ARGUMENT, "fps"),
        ([_config(output_format=9), END], grpc.StatusCode.INVALID_ARGUMENT, "output_format"),
        ([_config(reference_image=b"garbage"), END], grpc.StatusCode.INVALID_ARGUMENT, "reference_image"),
        ([_config(width=100), END], grpc.StatusCode.INVALID_ARGUMENT, "multiples of 16"),
        ([_config(), _audio(0, TONE[:-1]), END], grpc.StatusCode.INVALID_ARGUMENT, "whole samples"),
        ([_config(), _audio(1, TONE), END], grpc.StatusCode.INVALID_ARGUMENT, "out of order"),
    ],
    ids=["empty", "audio-first", "negative-fps", "unknown-format", "garbage-image", "bad-size", "odd-bytes", "seq-gap"],
)
def test_bad_input_gets_its_status_while_a_healthy_session_runs(cluster, speech, messages, code, words):
    gen, proc = cluster

    async def both():
        healthy = asyncio.create_task(animate(gen, (EXAMPLES / "face.png").read_bytes(), speech[:RATE], RATE))
        bad = await stream(gen, messages)
        return bad, await healthy

    (got, details), ok = run(both())
    assert got == code, details
    assert words in details
    assert ok.end is not None and ok.frame_count == 20
    assert proc.poll() is None


def test_a_photograph_gets_a_warning_in_the_session_header(cluster):
    """The built-in tiny model knows cartoon faces only: a photo's session runs, and its header says so."""
    import io
    from pathlib import Path

    from matplotlib import cbook
    from PIL import Image

    from liveact.v1 import generator_pb2, generator_pb2_grpc

    photo = io.BytesIO()
    Image.open(Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))).convert("RGB").save(photo, "PNG")
    gen, _ = cluster

    def header(image: bytes | None) -> generator_pb2.SessionHeader:
        kw = {} if image is None else {"reference_image": image}
        with grpc.insecure_channel(gen) as ch:
            for msg in generator_pb2_grpc.GeneratorStub(ch).Animate(iter([_config(**kw), END])):
                if msg.WhichOneof("kind") == "header":
                    return msg.header
        raise AssertionError("no header")

    (warning,) = header(photo.getvalue()).warnings
    assert "only knows 64x64 flat-shaded cartoon faces" in warning and "--preset liveact-18b" in warning
    assert list(header(None).warnings) == []  # the example face
