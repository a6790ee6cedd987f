"""Bad input an unfriendly client can send any service: a documented status with a message naming the
field and what is allowed, never UNKNOWN or INTERNAL, and the service goes on serving.

Undecodable bytes (services/common/decoding.py), resume ids that cannot name a session, an fps whose
rational approximation is 0, empty streams: each service, each message kind.
"""

from __future__ import annotations

import grpc
import pytest
from generator_helpers import END, TONE, audio, config, session_sync
from servers import service_process

from liveact.v1 import audio_encoder_pb2, common_pb2, decoder_pb2, generator_pb2, generator_pb2_grpc

pytestmark = pytest.mark.integration  # starts the three services and a Redis

GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field header whose length runs past the end: not a protobuf message
GENERATOR = "/liveact.v1.Generator/"
ENCODE = "/liveact.v1.AudioEncoder/Encode"
DECODE = "/liveact.v1.Decoder/Decode"
PATH = "/etc/passwd"


@pytest.fixture(scope="module")
def cluster(redis):
    with service_process("audio_encoder") as (enc, _), service_process("decoder") as (dec, _):
        args = ("--audio-encoder", enc, "--decoder", dec, "--redis-url", redis.url)
        with service_process("generator", *args) as (gen, _):
            yield gen, enc, dec


def raw_stream(target: str, method: str, messages: list[bytes]) -> tuple[grpc.StatusCode, str]:
    """``messages`` as raw bytes on a bidirectional method: the status code and details."""
    with grpc.insecure_channel(target) as ch:
        call = ch.stream_stream(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            for _ in call(iter(messages)):
                pass
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def animate(gen: str, messages: list[generator_pb2.AnimateRequest]) -> tuple[grpc.StatusCode, str]:
    try:
        session_sync(gen, messages)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def assert_refused(got: tuple[grpc.StatusCode, str], code: grpc.StatusCode, *words: str) -> None:
    status, details = got
    assert status == code, got
    for word in words:
        assert word in details, (word, details)
    assert "Traceback" not in details and PATH not in details and len(details) < 400, details


@pytest.mark.parametrize("method", [GENERATOR + "Animate", ENCODE, DECODE])
def test_undecodable_request_bytes_are_invalid_argument(cluster, method):
    gen, enc, dec = cluster
    target = {GENERATOR + "Animate": gen, ENCODE: enc, DECODE: dec}[method]
    request_type = {GENERATOR + "Animate": "AnimateRequest", ENCODE: "EncodeRequest", DECODE: "DecodeRequest"}
    got = raw_stream(target, method, [GARBAGE])
    assert_refused(got, grpc.StatusCode.INVALID_ARGUMENT, "request 0 of the stream", request_type[method])


def test_undecodable_bytes_after_a_valid_config_name_their_position(cluster):
    _, enc, _ = cluster
    cfg = audio_encoder_pb2.EncodeRequest(
        config=audio_encoder_pb2.EncodeConfig(fps=20.0, layers=4, channels=32)
    ).SerializeToString()
    got = raw_stream(enc, ENCODE, [cfg, GARBAGE])
    assert_refused(got, grpc.StatusCode.INVALID_ARGUMENT, "request 1 of the stream", "liveact.v1.EncodeRequest")


def test_an_undecodable_unary_request_is_invalid_argument(cluster):
    gen, _, _ = cluster
    with grpc.insecure_channel(gen) as ch:
        call = ch.unary_unary(GENERATOR + "GetServerInfo", request_serializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as info:
            call(GARBAGE)
    got = (info.value.code(), info.value.details())
    assert_refused(got, grpc.StatusCode.INVALID_ARGUMENT, "the request", "GetServerInfoRequest")


@pytest.mark.parametrize(
    "session_id",
    ["../../etc/passwd", "a" * 129, "%s%n%x", "tab\there", "nul\x00", "é", "x" * 65536],
    ids=["traversal", "too-long", "format", "control", "nul", "non-ascii", "64k"],
)
def test_a_resume_id_that_cannot_name_a_session_is_invalid_argument(cluster, session_id):
    gen, _, _ = cluster
    resume = generator_pb2.ResumeRequest(session_id=session_id, resume_secret="s")
    got = animate(gen, [config(resume=resume), END])
    assert_refused(got, grpc.StatusCode.INVALID_ARGUMENT, "resume.session_id", "[A-Za-z0-9_-]{1,128}")
    assert session_id not in got[1], got  # not echoed


@pytest.mark.parametrize(
    "resume,words",
    [
        (generator_pb2.ResumeRequest(session_id="abc", resume_secret=""), ["resume.resume_secret", "1..256"]),
        (generator_pb2.ResumeRequest(session_id="abc", resume_secret="s" * 300), ["resume.resume_secret", "300"]),
        (generator_pb2.ResumeRequest(session_id="abc", resume_secret="s", mode=9), ["resume.mode 9", "EXACT or LIVE"]),
    ],
    ids=["no-secret", "long-secret", "unknown-mode"],
)
def test_other_unusable_resume_fields_are_invalid_argument(cluster, resume, words):
    gen, _, _ = cluster
    assert_refused(animate(gen, [config(resume=resume), END]), grpc.StatusCode.INVALID_ARGUMENT, *words)


def test_an_unknown_session_is_still_not_found(cluster):
    gen, _, _ = cluster
    resume = generator_pb2.ResumeRequest(session_id="no-such-session", resume_secret="s")
    assert_refused(animate(gen, [config(resume=resume), END]), grpc.StatusCode.NOT_FOUND, "no-such-session")


def test_an_fps_that_rounds_to_zero_is_invalid_argument(cluster):
    gen, enc, _ = cluster
    got = animate(gen, [config(fps=1e-30), audio(0, TONE), END])
    assert_refused(got, grpc.StatusCode.INVALID_ARGUMENT, "fps", "use an fps between")
    cfg = audio_encoder_pb2.EncodeRequest(config=audio_encoder_pb2.EncodeConfig(fps=1e-30, layers=4, channels=32))
    got = raw_stream(enc, ENCODE, [cfg.SerializeToString()])
    assert_refused(got, grpc.StatusCode.INVALID_ARGUMENT, "config.fps", "use an fps between")


@pytest.mark.parametrize("method,config_type", [(ENCODE, "EncodeConfig"), (DECODE, "DecodeConfig")])
def test_empty_streams_are_invalid_argument(cluster, method, config_type):
    _, enc, dec = cluster
    got = raw_stream(enc if method == ENCODE else dec, method, [])
    assert_refused(
        got, grpc.StatusCode.INVALID_ARGUMENT, f"send {'an' if method == ENCODE else 'a'} {config_type} first"
    )


def test_the_services_serve_after_the_bad_input(cluster):
    gen, _, dec = cluster
    frames, end = session_sync(gen, [config(), audio(0, TONE), END])
    assert frames == 20 and end is not None and end.reason == "end_of_audio"
    with grpc.insecure_channel(gen) as ch:
        info = generator_pb2_grpc.GeneratorStub(ch).GetServerInfo(generator_pb2.GetServerInfoRequest())
    assert info.active_sessions == 0
    cfg = decoder_pb2.DecodeRequest(
        config=decoder_pb2.DecodeConfig(vae_preset="tiny", width=64, height=64, fps=20, output_format=common_pb2.JPEG)
    )
    assert raw_stream(dec, DECODE, [cfg.SerializeToString()]) == (grpc.StatusCode.OK, "")
