"""A real OTLP/gRPC receiver for tests: the services export spans and metrics to it as to a collector.

It implements the two OpenTelemetry collector services (``opentelemetry.proto.collector.{trace,
metrics}.v1``) on a free port and keeps what arrives, flattened: one ``Span`` per span with its
service name, and the metric data points by metric name.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(v: AnyValue) -> object:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    attributes: dict
    links: tuple[str, ...]  # trace ids of linked spans
    status: int  # 0 unset, 1 ok, 2 error


@dataclass
class Collector:
    spans: list[Span] = field(default_factory=list)
    metrics: dict[str, list] = field(default_factory=dict)  # name -> [(service, data point)]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, predicate, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.1)
        return False


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Collector) -> None:
        self.sink = sink

    def Export(self, request, context):
        with self.sink.lock:
            for rs in request.resource_spans:
                service = next((_value(a.value) for a in rs.resource.attributes if a.key == "service.name"), "")
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.sink.spans.append(
                            Span(
                                service=service, name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                                parent_id=s.parent_span_id.hex(),
                                attributes={a.key: _value(a.value) for a in s.attributes},
                                links=tuple(link.trace_id.hex() for link in s.links), status=s.status.code,
                            )
                        )  # fmt: skip
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: Collector) -> None:
        self.sink = sink

    def Export(self, request, context):
        with self.sink.lock:
            for rm in request.resource_metrics:
                service = next((_value(a.value) for a in rm.resource.attributes if a.key == "service.name"), "")
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        data = getattr(m, m.WhichOneof("data"))
                        self.sink.metrics.setdefault(m.name, []).extend((service, p) for p in data.data_points)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def start_collector() -> tuple[grpc.Server, int, Collector]:
    sink = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(sink), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(sink), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, sink
