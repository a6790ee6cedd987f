"""One trace per chunk: its root span lives from the chunk's first audio to its frames at the client.

A session's chunks overlap (the encoder reads ahead, the decoder works behind the DiT), so each
chunk k gets its own trace, rooted at a ``liveact.chunk`` span (attributes: session id, chunk
index, frames) in the generator:

- it starts when the first PCM that chunk k waits for goes to the encoder (``chunk_needing_row``),
  or when the DiT takes the chunk if no audio was its own (chunk 1 shares chunk 0's window; after a
  resume the audio may already be in);
- the encoder's span for that PCM, ``generator.denoise`` (the DiT step) and the decoder's span for
  the chunk's latents are its children (the context travels in the messages' ``trace_context``);
- it ends when the chunk's frames are handed to gRPC for the client (or when the session ends).

Open roots are bounded by the read-ahead (``ROWS_KEPT`` rows) plus ``--chunk-queue``: nothing grows
with the session's length. With tracing off every method returns at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Status, StatusCode

from services.common.telemetry import CHUNK_KEY, SESSION_KEY, Tracing

ROOT_SPAN = "liveact.chunk"


class ChunkTraces:
    def __init__(self, tracing: Tracing, session_id: str, client: trace.SpanContext | None = None) -> None:
        self.tracing = tracing
        self.enabled = tracing.enabled
        self.session_id = session_id
        self._links = [Link(client)] if client is not None else []  # the client's span (Tracing.remote)
        self._open: dict[int, tuple[trace.Span, Context]] = {}  # chunk index -> root span, its context
        self._ended_below = 0  # every chunk before this one has had its root ended

    def _root(self, k: int) -> tuple[trace.Span, Context] | None:
        if k < self._ended_below:
            return None
        if k not in self._open:
            span = self.tracing.tracer.start_span(
                ROOT_SPAN, attributes={SESSION_KEY: self.session_id, CHUNK_KEY: k}, links=self._links
            )
            context = baggage.set_baggage(SESSION_KEY, self.session_id, trace.set_span_in_context(span))
            self._open[k] = (span, context)
        return self._open[k]

    def carrier(self, k: int) -> dict[str, str]:
        """``trace_context`` for a message doing chunk k's work (empty: tracing off)."""
        if not self.enabled or (root := self._root(k)) is None:
            return {}
        return self.tracing.carrier(root[1])

    def child(self, k: int, name: str) -> trace.Span:
        """A span under chunk k's root; the caller ends it."""
        if not self.enabled or (root := self._root(k)) is None:
            return trace.INVALID_SPAN
        return self.tracing.tracer.start_span(name, context=root[1], attributes={SESSION_KEY: self.session_id})

    @contextlib.contextmanager
    def current(self, span: trace.Span) -> Iterator[None]:
        """Make ``span`` current (log lines inside carry its trace and span ids)."""
        if not self.enabled:
            yield
            return
        with trace.use_span(span, end_on_exit=False):
            yield

    def delivered(self, k: int, first_frame: int = 0, frames: int = 0) -> None:
        """Chunk k's frames reached gRPC: end its root (and any earlier one still open)."""
        if not self.enabled:
            return
        for index in [i for i in self._open if i <= k]:
            span, _ = self._open.pop(index)
            if index == k:
                span.set_attributes({"liveact.first_frame": first_frame, "liveact.frame_count": frames})
            span.end()
        self._ended_below = max(self._ended_below, k + 1)

    def close(self, error: str | None = None) -> None:
        """The session ended: end the roots of chunks that will not be delivered."""
        for span, _ in self._open.values():
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
            span.end()
        self._open.clear()
