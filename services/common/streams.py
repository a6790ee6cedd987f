"""What every streaming servicer does first: take a slot, then read the stream's config.

``Slots`` bounds a servicer's concurrent streams (RESOURCE_EXHAUSTED past the limit); it may be
released from a worker thread (the decoder frees a stream when its last job ends). ``read_config``
takes a bidirectional stream's first request, which must carry ``config``: a stream that ends
before it is INVALID_ARGUMENT, any other first message FAILED_PRECONDITION, each saying what to send.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

import grpc

from services.common.errors import RequestError

__all__ = ["Slots", "read_config"]


class _Request(Protocol):
    def WhichOneof(self, oneof_group: str) -> str | None: ...


R = TypeVar("R", bound=_Request)


class Slots:
    def __init__(self, limit: int, busy_message: str) -> None:
        """``busy_message``: the RESOURCE_EXHAUSTED details when every slot is taken."""
        self.limit, self.busy_message = limit, busy_message
        self.active = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        """Take a slot, or raise RESOURCE_EXHAUSTED."""
        with self._lock:
            if self.active >= self.limit:
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, self.busy_message)
            self.active += 1

    def release(self) -> None:
        with self._lock:
            self.active -= 1


def _article(name: str) -> str:
    return "an" if name[0].lower() in "aeiou" else "a"


async def read_config(requests: AsyncIterator[R], config_type: str) -> R:
    """The stream's first request, whose ``kind`` must be ``config`` (a ``config_type`` message)."""
    first = await anext(aiter(requests), None)
    send = f"send {_article(config_type)} {config_type} first"
    if first is None:
        # A client that cancels also ends the request iterator; its cancellation reaches the
        # handler at its next await, so a real cancel is not reported as a protocol error.
        await asyncio.sleep(0)
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"the request stream ended before its config: {send}")
    kind = first.WhichOneof("kind")
    if kind != "config":
        raise RequestError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"the first message must be {_article(config_type)} {config_type}, got {kind or 'an empty message'}: "
            f"{send}",
        )
    return first
