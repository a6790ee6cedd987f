"""The generator's metrics (OpenTelemetry instruments; no-ops until ``Telemetry`` installs a provider).

Prometheus names (``--metrics-port``), all per pod:

==================================================  ==========================================================
``liveact_generator_active_sessions``               running Animate sessions (the chart's HPA metric)
``liveact_generator_frames_total``                  video frames handed to clients
``liveact_generator_fps``                           frames per second handed to clients, last ``RATE_WINDOW_S``
``liveact_generator_chunk_denoise_seconds``         one chunk's DiT step (histogram)
``liveact_generator_chunk_latency_seconds``         a chunk's audio window complete -> its frames handed to gRPC
``liveact_generator_time_to_first_frame_seconds``   session start (or resume) -> first frames handed to gRPC
``liveact_generator_queue_depth{queue=...}``        items waiting in all sessions' queues: ``audio`` (PCM for the
                                                    encoder), ``decoder`` (latents), ``client`` (responses)
``liveact_generator_checkpoint_size_bytes``         bytes of one checkpoint's tensors (histogram)
``liveact_generator_checkpoint_written_bytes_total`` bytes checkpoints sent to Redis: parts Redis did not hold yet
                                                    (a version shares what did not change with the previous)
``liveact_generator_checkpoint_duration_seconds``   snapshot ready -> checkpoint committed in Redis
``liveact_generator_checkpoint_stall_seconds``      the DiT thread's copy into the session's host buffers: all a
                                                    checkpoint holds generation up (the longest rank's)
``liveact_generator_checkpoint_replay_seconds``     the longest expected wait to the next checkpoint after one is
                                                    committed: what an EXACT resume may have to replay (histogram)
``liveact_generator_checkpoints_failed_total{reason=...}`` checkpoint writes that failed: ``full`` (Redis at
                                                    maxmemory), ``unavailable`` (retried after a backoff), ``refused``
``liveact_generator_checkpoints_skipped_total``     checkpoints due while the session's previous one was still
                                                    being written (not taken)
``liveact_generator_resumes_total{mode=...}``       sessions resumed here (EXACT or LIVE)
==================================================  ==========================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Observation

from services.common.telemetry import BYTES_BUCKETS, SECONDS_BUCKETS, meter
from services.generator.checkpoint import CommitReport

RATE_WINDOW_S = 10  # liveact_generator_fps averages over this many whole seconds


class Queued(Protocol):
    """What the queue-depth gauge reads of a running session."""

    def queue_depths(self) -> dict[str, int]: ...


class RateWindow:
    """Events per second over the last ``seconds`` whole seconds, in fixed memory (one slot per second)."""

    def __init__(self, seconds: int = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self.slots = [0] * seconds
        self.now = int(clock())

    def _advance(self) -> None:
        now = int(self.clock())
        for second in range(max(self.now + 1, now - self.seconds + 1), now + 1):
            self.slots[second % self.seconds] = 0
        self.now = max(self.now, now)

    def add(self, n: int) -> None:
        self._advance()
        self.slots[self.now % self.seconds] += n

    def rate(self) -> float:
        self._advance()
        return sum(self.slots) / self.seconds


class GeneratorMetrics:
    def __init__(self, sessions: Callable[[], Iterable[Queued]]) -> None:
        m = meter("generator")
        self._sessions = sessions
        self.frame_rate = RateWindow()

        def histogram(name: str, unit: str, description: str, buckets=SECONDS_BUCKETS):
            return m.create_histogram(
                name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
            )

        self.frames = m.create_counter("liveact.generator.frames", unit="{frame}", description="video frames sent")
        self.chunk_denoise = histogram("liveact.generator.chunk.denoise", "s", "one chunk's DiT step")
        self.chunk_latency = histogram(
            "liveact.generator.chunk.latency", "s", "a chunk's audio window complete to its frames handed to gRPC"
        )
        self.first_frame = histogram(
            "liveact.generator.time_to_first_frame", "s", "session start or resume to its first frames handed to gRPC"
        )
        self.checkpoint_size = histogram(
            "liveact.generator.checkpoint.size", "By", "bytes of one checkpoint's tensors", BYTES_BUCKETS
        )
        self.checkpoint_written = m.create_counter(
            "liveact.generator.checkpoint.written", unit="By", description="checkpoint bytes sent to Redis"
        )
        self.checkpoint_duration = histogram(
            "liveact.generator.checkpoint.duration", "s", "snapshot ready to checkpoint committed in Redis"
        )
        self.checkpoint_stall = histogram(
            "liveact.generator.checkpoint.stall", "s", "the DiT thread's copy of a checkpoint into host buffers"
        )
        self.checkpoint_replay = histogram(
            "liveact.generator.checkpoint.replay",
            "s",
            "longest expected audio an EXACT resume replays after a checkpoint",
        )
        self.checkpoints_skipped = m.create_counter(
            "liveact.generator.checkpoints.skipped", unit="{checkpoint}", description="checkpoints due but not taken"
        )
        self.checkpoints_failed = m.create_counter(
            "liveact.generator.checkpoints.failed", unit="{checkpoint}", description="checkpoint writes that failed"
        )
        self.resumes = m.create_counter("liveact.generator.resumes", unit="{session}", description="sessions resumed")
        m.create_observable_gauge(
            "liveact.generator.active_sessions", [self._active], unit="{session}", description="running sessions"
        )
        m.create_observable_gauge(
            "liveact.generator.queue.depth", [self._queues], unit="{item}", description="items queued in sessions"
        )
        m.create_observable_gauge(
            "liveact.generator.fps", [self._fps], unit="", description=f"frames/s sent, over {RATE_WINDOW_S} s"
        )

    def checkpoint_committed(self, report: CommitReport) -> None:
        """``CheckpointWriter``'s ``on_commit``."""
        self.checkpoint_size.record(report.bytes_total)
        self.checkpoint_written.add(report.written_total)
        self.checkpoint_duration.record(report.seconds)
        self.checkpoint_stall.record(report.stall_s)
        self.checkpoint_replay.record(report.replay_s)

    def checkpoint_failed(self, reason: str) -> None:
        """``CheckpointWriter``'s ``on_fail``."""
        self.checkpoints_failed.add(1, {"reason": reason})

    def checkpoint_skipped(self) -> None:
        """``CheckpointWriter``'s ``on_skip``: a due checkpoint not taken (the previous one still being written)."""
        self.checkpoints_skipped.add(1)

    def sent(self, frames: int) -> None:
        self.frames.add(frames)
        self.frame_rate.add(frames)

    def _active(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sum(1 for _ in self._sessions()))

    def _queues(self, options: CallbackOptions) -> Iterable[Observation]:
        totals = {"audio": 0, "decoder": 0, "client": 0}
        for session in self._sessions():
            for queue, depth in session.queue_depths().items():
                totals[queue] += depth
        for queue, depth in totals.items():
            yield Observation(depth, {"queue": queue})

    def _fps(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.frame_rate.rate())
