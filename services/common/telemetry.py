"""OpenTelemetry for the services: traces, metrics and the trace ids in logs. Off unless configured.

``Telemetry(settings, service)`` reads the common flags once (``services/common/settings.py``):

- ``--otel-endpoint http://collector:4317``: spans (batched) and metrics (every ``--otel-export-s``)
  go to that OTLP/gRPC collector; standard ``OTEL_*`` variables (``OTEL_RESOURCE_ATTRIBUTES``,
  ``OTEL_BSP_SCHEDULE_DELAY``, ...) apply as usual.
- ``--metrics-port N``: Prometheus scrapes ``http://host:N/metrics`` (names like
  ``liveact_generator_active_sessions``; units become suffixes: ``_seconds``, ``_bytes``, ``_total``).

With neither, no provider is installed: the instruments the services hold are OpenTelemetry's no-op
proxies and ``Tracing.enabled`` is False, so the per-chunk code skips span work entirely (``bench
telemetry`` measures what is left). ``shutdown()`` flushes what is buffered at drain.

Traces cross the services in the messages, not in gRPC metadata: one ``Animate`` stream lasts hours
and carries thousands of chunks, so every ``EncodeRequest`` and ``LatentChunk`` has a
``trace_context`` map (W3C ``traceparent`` plus ``baggage`` with the session id) naming the chunk
trace its work belongs to (``services/generator/tracing.py``).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import baggage, metrics, trace
from opentelemetry.context import Context
from opentelemetry.propagate import get_global_textmap

from services.common.settings import ServerSettings

log = logging.getLogger(__name__)

SESSION_KEY = "liveact.session_id"  # span attribute and baggage entry: the Animate session a chunk belongs to
CHUNK_KEY = "liveact.chunk_index"
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BYTES_BUCKETS = tuple(float(4**k * 1024) for k in range(3, 14))  # 64 KiB .. 64 GiB, x4 apart


@dataclass
class Tracing:
    """What a service needs for spans: a tracer and whether anything records them."""

    tracer: trace.Tracer
    enabled: bool

    def carrier(self, context: Context | None = None) -> dict[str, str]:
        """``traceparent`` (+ ``baggage``) of ``context`` for a message's ``trace_context`` map."""
        if not self.enabled:
            return {}
        out: dict[str, str] = {}
        get_global_textmap().inject(out, context=context)
        return out

    def remote(self, carrier: Mapping[str, str]) -> trace.SpanContext | None:
        """The span a carrier (``trace_context``, gRPC metadata) names; None when off or it names none."""
        if not self.enabled or not carrier:
            return None
        context = trace.get_current_span(get_global_textmap().extract(dict(carrier))).get_span_context()
        return context if context.is_valid else None

    def start_from(self, name: str, carrier: Mapping[str, str], **attributes: str | int | float | bool) -> trace.Span:
        """A span continuing the trace a message's ``trace_context`` names (none: a no-op span)."""
        if not self.enabled or not carrier:
            return trace.INVALID_SPAN
        parent = get_global_textmap().extract(dict(carrier))
        session = baggage.get_baggage(SESSION_KEY, parent)
        if session is not None:
            attributes[SESSION_KEY] = str(session)
        return self.tracer.start_span(name, context=parent, attributes=attributes)


class Telemetry:
    """The providers of one process (when configured) and their shutdown."""

    def __init__(self, settings: ServerSettings, service: str) -> None:
        """``service``: ``generator``, ``audio_encoder`` or ``decoder`` (resource ``service.name``
        ``liveact-generator``, ...; instrumentation scope ``liveact.generator``, ...)."""
        self.service = service
        self.tracer_provider = None
        self.meter_provider = None
        self.metrics_server: Any = None  # prometheus_client's WSGI server, once --metrics-port starts it
        endpoint = settings.otel_endpoint
        on = bool(endpoint or settings.metrics_port)
        if on:
            from opentelemetry.sdk.resources import Resource

            name = "liveact-" + service.replace("_", "-")
            resource = Resource.create({"service.name": name, "service.instance.id": _instance_id()})
        if endpoint:
            self.tracer_provider = _tracer_provider(resource, endpoint, settings.trace_ratio)
            trace.set_tracer_provider(self.tracer_provider)
        readers = []
        if settings.metrics_port:
            readers.append(self._prometheus(settings.host, settings.metrics_port))
        if endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            exporter = OTLPMetricExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
            readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=settings.otel_export_s * 1e3))
        if readers:
            from opentelemetry.sdk.metrics import MeterProvider

            self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
            metrics.set_meter_provider(self.meter_provider)
        self.tracing = Tracing(trace.get_tracer(f"liveact.{service}"), enabled=self.tracer_provider is not None)
        if on:
            log.info(
                "telemetry on",
                extra={"otel_endpoint": endpoint or None, "metrics_port": settings.metrics_port or None},
            )

    def _prometheus(self, host: str, port: int):
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        self.metrics_server, _ = start_http_server(port, addr=host)  # a daemon thread; closed at shutdown
        return PrometheusMetricReader()

    def shutdown(self) -> None:
        """Flush buffered spans and metrics (drain); idempotent."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
            self.tracer_provider = None
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
            self.meter_provider = None
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server = None


def _tracer_provider(resource, endpoint: str, ratio: float):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    # parent-based: the generator decides per chunk; the encoder and decoder follow its decision
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://")))
    )
    return provider


def _instance_id() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def meter(service: str) -> metrics.Meter:
    """The service's meter: a no-op proxy until ``Telemetry`` installs a provider (then it records)."""
    return metrics.get_meter(f"liveact.{service}")
