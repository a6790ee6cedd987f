"""What the audio encoder and the decoder report: open streams, time per unit of work, output counted.

Prometheus names, for ``service`` = ``audio_encoder`` (work ``encode``, output ``rows``) and
``decoder`` (work ``decode``, output ``frames``):
``liveact_<service>_active_streams``, ``liveact_<service>_<work>_duration_seconds`` (histogram: one PCM
piece encoded / one chunk decoded) and ``liveact_<service>_<output>_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from services.common.telemetry import SECONDS_BUCKETS, meter


class StreamMetrics:
    def __init__(self, service: str, active: Callable[[], int], work: str, output: str) -> None:
        m = meter(service)
        self._active = active
        self.duration = m.create_histogram(
            f"liveact.{service}.{work}.duration", unit="s", description=f"one {work} step",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )  # fmt: skip
        self.output = m.create_counter(f"liveact.{service}.{output}", unit=f"{{{output}}}", description=f"{output} out")
        m.create_observable_gauge(
            f"liveact.{service}.active_streams", [self._observe], unit="{stream}", description="open streams"
        )

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._active())
