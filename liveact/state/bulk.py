"""Where part commands run: one blocking connection in one worker thread per store.

Every part is a command per write, refresh, touch, delete and read (liveact-18b at TP2: about 140
parts per rank and version as streams, ``liveact.state.streams``; about 2,200 when each tensor was
cut alone). On the asyncio client each command costs tens of microseconds of Python while holding
the GIL (a timeout handle per reply, a copy of every value sent: ``writelines`` joins the command
into one bytes object), and
the DiT thread, which needs the GIL between kernels, waits for it: the rehearsal measured about
0.7 s of GIL per checkpoint on the event loop. The blocking client parses replies in hiredis with no
timer, sends each part as its own ``memoryview`` of the capture buffer (``socket.sendall``: no copy,
the GIL released while the kernel takes the bytes), and waits for replies with the GIL released. So
every part command runs here (``liveact.state.parts.PartIO`` says which); the small keys (record,
lease, manifests, audio) stay on the asyncio client. redis-py raises the same exceptions either way
(``redis_errors`` translates both).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import redis
import redis.cluster

from liveact.state.settings import StoreSettings

__all__ = ["BlockingClient", "PartConnection"]

BlockingClient = redis.Redis | redis.cluster.RedisCluster
T = TypeVar("T")


class PartConnection:
    """A blocking client and the one worker thread that uses it (connects on the first call)."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self._client: BlockingClient | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liveact-parts")

    async def run(self, command: Callable[[BlockingClient], T]) -> T:
        """``command(client)`` in the worker thread (calls run one at a time, in order)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, command)

    def _call(self, command: Callable[[BlockingClient], T]) -> T:
        with self._lock:
            if self._client is None:
                self._client = self.settings.connect_blocking()
            client = self._client
        return command(client)

    def close(self) -> None:
        """Stop the thread (after the command it runs, if any) and close the connections."""
        self._pool.shutdown(wait=True)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
