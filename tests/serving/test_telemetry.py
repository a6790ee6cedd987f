"""Observability across the three real service processes: one trace per chunk, metrics, trace ids in logs.

The services export to a real OTLP/gRPC receiver (``tests/otlp_collector.py``) started here; the
generator also serves Prometheus metrics, scraped over HTTP. One session of speech runs through.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import pytest
from generator_helpers import FACE, prometheus, raw_animate, scrape, speech_clip
from otlp_collector import start_collector
from servers import service_process

from liveact.config import get_preset
from liveact.launch import free_port
from liveact.sampling.chunking import chunk_needing_row, plan_chunk, window_video_frames
from liveact.v1 import generator_pb2
from services.common.settings import ServerSettings
from services.common.telemetry import CHUNK_KEY, SESSION_KEY, Telemetry
from services.generator.metrics import RateWindow
from services.generator.tracing import ROOT_SPAN, ChunkTraces

SECONDS = 6  # 120 frames: chunks 0..3
SERVICES = {"liveact-generator", "liveact-audio-encoder", "liveact-decoder"}
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"  # the client's own trace, sent as traceparent metadata
EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "200"}  # spans leave each service within 0.2 s (default 5 s)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One session through encoder, decoder and generator, all exporting to the collector."""
    server, port, sink = start_collector()
    otel = ("--otel-endpoint", f"http://127.0.0.1:{port}", "--otel-export-s", "0.5")
    logs = tmp_path_factory.mktemp("logs")
    metrics_port = free_port()
    try:
        with (
            service_process("audio_encoder", *otel, env=EXPORT, log_file=logs / "encoder.log") as (enc, _),
            service_process("decoder", *otel, env=EXPORT, log_file=logs / "decoder.log") as (dec, _),
            service_process(
                "generator", "--audio-encoder", enc, "--decoder", dec, *otel, "--metrics-port", str(metrics_port),
                "--log-level", "DEBUG", env=EXPORT, log_file=logs / "generator.log",
            ) as (gen, _),
        ):  # fmt: skip
            traceparent = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"
            result = asyncio.run(raw_animate(gen, FACE, speech_clip(SECONDS), metadata=[("traceparent", traceparent)]))
            chunks = sorted({c.chunk_index for c in result.chunks})
            assert sink.wait_for(lambda s: _roots(s.spans, result.header.session_id).keys() >= set(chunks))
            scraped = scrape(metrics_port)
            assert sink.wait_for(
                lambda s: "liveact.decoder.frames" in s.metrics and "liveact.generator.frames" in s.metrics
            )
        yield result, chunks, sink, scraped, logs
    finally:
        server.stop(0)


def _roots(spans, session_id: str) -> dict[int, list]:
    out = defaultdict(list)
    for s in spans:
        if s.name == ROOT_SPAN and s.attributes.get(SESSION_KEY) == session_id:
            out[s.attributes[CHUNK_KEY]].append(s)
    return out


@pytest.mark.integration
def test_one_trace_per_chunk_with_spans_from_all_three_services(run):
    result, chunks, sink, _, _ = run
    session = result.header.session_id
    roots = _roots(sink.spans, session)
    assert sorted(roots) == chunks and all(len(r) == 1 for r in roots.values()), "one root span per chunk"
    assert len({r[0].trace_id for r in roots.values()}) == len(chunks), "each chunk its own trace"
    by_trace = defaultdict(list)
    for s in sink.spans:
        by_trace[s.trace_id].append(s)
    complete = []
    for k in chunks:
        root = roots[k][0]
        spans = by_trace[root.trace_id]
        assert root.parent_id == "" and root.status != 2
        assert root.links == (CLIENT_TRACE,), "every chunk trace links to the client's span"
        first = next(c for c in result.chunks if c.chunk_index == k)
        assert (root.attributes["liveact.first_frame"], root.attributes["liveact.frame_count"]) == (
            first.first_frame, first.frame_count,
        )  # fmt: skip
        names = {s.name: s for s in spans}
        # the DiT step and the decode of chunk k are children of its root, in their own processes
        assert names["generator.denoise"].parent_id == root.span_id
        assert names["decoder.decode"].parent_id == root.span_id
        assert names["decoder.decode"].service == "liveact-decoder"
        assert names["decoder.decode"].attributes[CHUNK_KEY] == k
        for s in spans:  # the session id reaches the other services as baggage
            assert s.attributes.get(SESSION_KEY) == session, s
        if {s.service for s in spans} == SERVICES:
            encoded = [s for s in spans if s.service == "liveact-audio-encoder"]
            assert all(s.parent_id == root.span_id for s in encoded)
            complete.append(k)
    # chunk 1 shares chunk 0's audio window (no PCM of its own); every other chunk has encoder spans
    assert set(complete) == set(chunks) - {1}, complete


@pytest.mark.integration
def test_prometheus_metrics_count_the_session(run):
    result, chunks, _, scraped, _ = run
    samples, value = prometheus(scraped)

    assert value("liveact_generator_frames_total") == result.frame_count == SECONDS * 20
    assert value("liveact_generator_active_sessions") == 0  # scraped after the session ended
    assert value("liveact_generator_time_to_first_frame_seconds_count") == 1
    assert 0 < value("liveact_generator_time_to_first_frame_seconds_sum") < 60
    assert value("liveact_generator_chunk_denoise_seconds_count") == len(chunks)
    assert value("liveact_generator_chunk_latency_seconds_count") == len(chunks)
    assert value("liveact_generator_fps") > 0  # frames went out within the last 10 s
    for queue in ("audio", "decoder", "client"):
        assert value("liveact_generator_queue_depth", queue=queue) == 0
    # no --redis-url: no checkpoint or resume was observed (the histograms exist once one is)
    assert not [n for (n, _) in samples if n.startswith(("liveact_generator_checkpoint", "liveact_generator_resumes"))]


@pytest.mark.integration
def test_otlp_metrics_from_all_three_services(run):
    result, chunks, sink, _, _ = run

    def latest(name: str, service: str):
        points = [p for s, p in sink.metrics[name] if s == service]
        assert points, (name, service)
        point = max(points, key=lambda p: p.time_unix_nano)  # the final export, at the service's shutdown
        return getattr(point, point.WhichOneof("value")) if hasattr(point, "as_int") else point

    assert latest("liveact.generator.frames", "liveact-generator") == result.frame_count
    assert latest("liveact.decoder.frames", "liveact-decoder") == result.frame_count
    assert latest("liveact.decoder.decode.duration", "liveact-decoder").count == len(chunks)
    rows = latest("liveact.audio_encoder.rows", "liveact-audio-encoder")
    assert rows >= result.frame_count  # one feature row per video frame (the last chunk pads)
    assert latest("liveact.audio_encoder.active_streams", "liveact-audio-encoder") == 0
    assert latest("liveact.generator.active_sessions", "liveact-generator") == 0


@pytest.mark.integration
def test_checkpoint_and_resume_metrics(redis, peers):
    """A durable session: its checkpoints' bytes and write times, then an EXACT resume, counted."""
    metrics_port = free_port()
    enc, dec = peers
    with (
        service_process(
            "generator", "--audio-encoder", enc, "--decoder", dec, "--redis-url", redis.url,
            "--checkpoint-every-chunks", "1", "--metrics-port", str(metrics_port),
        ) as (gen, _),
    ):  # fmt: skip
        speech = speech_clip(SECONDS)
        first = asyncio.run(raw_animate(gen, FACE, speech))
        assert first.checkpoints, "a checkpoint every chunk: at least one was written"
        resume = generator_pb2.ResumeRequest(
            session_id=first.header.session_id, resume_secret=first.header.resume_secret,
            next_frame=first.checkpoints[0].next_frame, mode=generator_pb2.ResumeRequest.EXACT,
        )  # fmt: skip
        second = asyncio.run(raw_animate(gen, FACE, speech, resume=resume))
        _, value = prometheus(scrape(metrics_port))
    written = len(first.checkpoints) + len(second.checkpoints)
    assert value("liveact_generator_resumes_total", mode="EXACT") == 1
    assert value("liveact_generator_checkpoint_size_bytes_count") == written
    assert value("liveact_generator_checkpoint_duration_seconds_count") == written
    mean_size = value("liveact_generator_checkpoint_size_bytes_sum") / written
    assert 100_000 < mean_size < 50_000_000  # tiny at 64x64: a few MB of caches, rows and stream states
    sent = value("liveact_generator_checkpoint_written_bytes_total")  # later versions share the sink and conditioning
    assert 0 < sent < value("liveact_generator_checkpoint_size_bytes_sum")
    assert value("liveact_generator_time_to_first_frame_seconds_count") == 2  # the session and its resume
    assert value("liveact_generator_frames_total") == first.frame_count + second.frame_count


@pytest.mark.integration
def test_log_lines_carry_the_chunk_trace_id(run):
    result, chunks, sink, _, logs = run
    roots = _roots(sink.spans, result.header.session_id)
    generated = {}
    for line in (logs / "generator.log").read_text().splitlines():
        if line.startswith("{") and (entry := json.loads(line)).get("msg") == "chunk generated":
            generated[entry["chunk"]] = entry
    assert sorted(generated) == chunks
    for k, entry in generated.items():
        denoise = next(s for s in sink.spans if s.name == "generator.denoise" and s.trace_id == roots[k][0].trace_id)
        assert (entry["trace_id"], entry["span_id"]) == (denoise.trace_id, denoise.span_id)


def test_telemetry_is_off_by_default_and_then_does_no_span_work():
    telemetry = Telemetry(ServerSettings(), "generator")
    assert not telemetry.tracing.enabled
    assert telemetry.tracer_provider is None and telemetry.meter_provider is None and telemetry.metrics_server is None
    traces = ChunkTraces(telemetry.tracing, "s")
    assert traces.carrier(0) == {} and not traces.child(0, "x").get_span_context().is_valid
    assert traces._open == {}  # nothing was started, nothing is held
    carrier = {"traceparent": f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"}
    assert telemetry.tracing.start_from("x", carrier).is_recording() is False
    assert telemetry.tracing.remote(carrier) is None  # no client link is looked for


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--otel-endpoint", "collector:4317"], "--otel-endpoint"),
        (["--trace-ratio", "1.5"], "--trace-ratio"),
        (["--metrics-port", "50051", "--port", "50051"], "--metrics-port"),
    ],
)
def test_bad_telemetry_flags_stop_the_service_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit):
        ServerSettings.parse(argv)
    assert message in capsys.readouterr().err


def test_rate_window_counts_the_last_seconds_in_fixed_memory():
    now = [100.0]
    rate = RateWindow(seconds=10, clock=lambda: now[0])
    for _ in range(20):  # 20 frames/s for 20 s
        rate.add(20)
        now[0] += 1.0
    assert rate.rate() == pytest.approx(18.0)  # the current second has none yet: 9 of 10 seconds full
    now[0] += 5.0
    assert rate.rate() == pytest.approx(20 * 4 / 10)
    now[0] += 60.0
    assert rate.rate() == 0.0 and len(rate.slots) == 10


def test_chunk_needing_row_is_the_first_window_reaching_the_row():
    cfg = get_preset("tiny")
    window = window_video_frames(cfg)
    for row in range(0, 600):
        k = chunk_needing_row(cfg, row)
        last = lambda i: plan_chunk(cfg, i).audio_window_start + window - 1  # noqa: E731
        assert last(k) >= row and (k == 0 or last(k - 1) < row), (row, k)
