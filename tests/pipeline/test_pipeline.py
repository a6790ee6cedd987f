"""The embedded pipeline: image + speech -> frames, streamed chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

from liveact.audio import decode_audio
from liveact.media import load_reference_image
from liveact.pipeline import AnimationSession, load_engine

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples"
SIZE = 64  # frames of 64x64: fast on CPU, same code path as 128x128


@pytest.fixture(scope="module")
def engine():
    return load_engine("tiny")


@pytest.fixture(scope="module")
def inputs(engine):
    image = load_reference_image(EXAMPLES / "face.png", SIZE, SIZE)
    pcm = decode_audio(EXAMPLES / "speech.wav", engine.audio_config)[: engine.audio_config.sample_rate * 3]
    return image, pcm


def render(engine, image, pcm, piece: int, seed: int = 0, decode: str = "stream") -> list:
    session = AnimationSession(engine, image, fps=20, seed=seed, decode=decode)
    chunks = []
    for i in range(0, len(pcm), piece):
        chunks += session.push_audio(pcm[i : i + piece])
    return chunks + session.finish()


@pytest.mark.integration
def test_frames_cover_the_audio_exactly(engine, inputs):
    image, pcm = inputs
    chunks = render(engine, image, pcm, piece=16000)
    frames = np.concatenate([c.frames for c in chunks])
    assert frames.shape == (60, SIZE, SIZE, 3) and frames.dtype == np.uint8  # 3 s at 20 fps
    assert [c.first_frame for c in chunks] == [0, 21, 53]
    assert [c.chunk_index for c in chunks] == [0, 1, 2]
    assert chunks[1].pts(0) == pytest.approx(21 / 20)


@pytest.mark.integration
def test_output_does_not_depend_on_how_audio_is_chopped(engine, inputs):
    image, pcm = inputs
    a = np.concatenate([c.frames for c in render(engine, image, pcm, piece=16000)])
    b = np.concatenate([c.frames for c in render(engine, image, pcm, piece=4321)])
    assert np.array_equal(a, b)


@pytest.mark.integration
def test_seed_decides_the_video(engine, inputs):
    image, pcm = inputs
    short = pcm[: engine.audio_config.sample_rate]
    a = render(engine, image, short, piece=8000, seed=1)[0].frames
    b = render(engine, image, short, piece=8000, seed=1)[0].frames
    c = render(engine, image, short, piece=8000, seed=2)[0].frames
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_image_shape_is_refused(engine):
    with pytest.raises(ValueError, match="multiples of 16"):
        AnimationSession(engine, np.zeros((60, 64, 3), dtype=np.uint8))


@pytest.mark.integration
def test_context_decode_gives_the_same_frame_layout(engine, inputs):
    image, pcm = inputs
    stream = render(engine, image, pcm, piece=16000)
    context = render(engine, image, pcm, piece=16000, decode="context")
    assert [c.frames.shape for c in context] == [c.frames.shape for c in stream]
    assert np.array_equal(context[0].frames, stream[0].frames)  # chunk 0 has no context: identical
    assert not np.array_equal(context[1].frames, stream[1].frames)  # later chunks: the approximation differs


def test_big_preset_without_weights_says_what_to_pass():
    with pytest.raises(FileNotFoundError, match="pass --model DIR"):
        load_engine("liveact-18b")
