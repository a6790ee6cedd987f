"""What observability costs per chunk, off (the default) and on.

The calls the three services make for one chunk, in one process, ``chunks`` times: the generator
names the chunk's trace on each PCM piece it forwards (``pieces_per_chunk``: 100 ms AudioChunks make
16 per 32-frame chunk), times and traces the DiT step, records its metrics, names the trace on the
latents and ends the chunk's root when its frames go out; the encoder opens and ends a span per PCM
piece and records its metrics; the decoder does the same per chunk. No model runs: the figure is the
telemetry's own cost, in microseconds per chunk, and that as a percentage of the chunk's real-time
duration (``chunk_seconds``: 32 frames at 20 fps = 1.6 s).

``off``: ``Telemetry`` with no endpoint and no metrics port (the default): no provider is installed,
the instruments are OpenTelemetry's no-op proxies and ``ChunkTraces`` returns at once.
``on``: a real ``TracerProvider`` with a ``BatchSpanProcessor`` (its exporter drops the batches, so
no network is timed) and a ``MeterProvider`` with a reader that is never collected. ``off`` is
measured first: OpenTelemetry's global providers can be set once per process.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence

from liveact.config import get_preset
from liveact.sampling.chunking import video_frames_per_chunk
from services.common.settings import ServerSettings
from services.common.stream_metrics import StreamMetrics
from services.common.telemetry import Telemetry, Tracing
from services.generator.metrics import GeneratorMetrics
from services.generator.tracing import ChunkTraces

FPS = 20.0
log = logging.getLogger("bench.telemetry")


class _Session:
    def queue_depths(self) -> dict[str, int]:
        return {"audio": 0, "decoder": 0, "client": 0}


def _one_pass(tracing: Tracing, chunks: int, pieces: int) -> float:
    """Seconds for ``chunks`` chunks of a session's telemetry calls."""
    generator = GeneratorMetrics(lambda: [_Session()])
    encoder = StreamMetrics("audio_encoder", lambda: 1, work="encode", output="rows")
    decoder = StreamMetrics("decoder", lambda: 1, work="decode", output="frames")
    traces = ChunkTraces(tracing, "bench-session")
    t0 = time.perf_counter()
    for k in range(chunks):
        for _ in range(pieces):  # generator -> encoder: each PCM piece names chunk k's trace
            carrier = traces.carrier(k)
            span = tracing.start_from("audio_encoder.encode", carrier)
            encoder.duration.record(0.001)
            encoder.output.add(2)
            span.end()
        denoise = traces.child(k, "generator.denoise")
        with traces.current(denoise):
            denoise.end()
            generator.chunk_denoise.record(0.1)
            log.debug("chunk generated", extra={"session": "bench-session", "chunk": k})
        span = tracing.start_from("decoder.decode", traces.carrier(k))
        decoder.duration.record(0.01)
        decoder.output.add(32)
        span.end()
        generator.chunk_latency.record(0.2)
        generator.sent(32)
        traces.delivered(k, 32 * k, 32)
    return time.perf_counter() - t0


def _timed(tracing: Tracing, chunks: int, pieces: int, repeats: int) -> dict:
    _one_pass(tracing, min(chunks, 50), pieces)  # warm-up
    runs = [_one_pass(tracing, chunks, pieces) for _ in range(repeats)]
    us = 1e6 * statistics.median(runs) / chunks
    return {"us_per_chunk": round(us, 2), "runs_us_per_chunk": [round(1e6 * r / chunks, 2) for r in runs]}


def _providers() -> tuple[object, object, Tracing]:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(Drop()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    trace.set_tracer_provider(tp)
    metrics.set_meter_provider(mp)
    return tp, mp, Tracing(trace.get_tracer("liveact.generator"), enabled=True)


def run(chunks: int = 2000, pieces_per_chunk: int = 16, repeats: int = 5, preset: str = "tiny") -> dict:
    logging.getLogger().setLevel(logging.INFO)  # the services' default: debug lines are filtered
    chunk_seconds = video_frames_per_chunk(get_preset(preset), 1) / FPS
    off = Telemetry(ServerSettings(), "generator")
    if off.tracing.enabled or off.meter_provider is not None:
        raise RuntimeError("telemetry must be off with the default settings")
    result_off = _timed(off.tracing, chunks, pieces_per_chunk, repeats)
    tp, mp, tracing = _providers()
    try:
        result_on = _timed(tracing, chunks, pieces_per_chunk, repeats)
    finally:
        tp.shutdown()
        mp.shutdown()
    for r in (result_off, result_on):
        r["percent_of_chunk_duration"] = round(100 * r["us_per_chunk"] / (chunk_seconds * 1e6), 5)
    return {
        "benchmark": "telemetry",
        "chunks": chunks,
        "pieces_per_chunk": pieces_per_chunk,
        "repeats": repeats,
        "chunk_seconds": chunk_seconds,
        "off": result_off,
        "on": result_on,
    }
