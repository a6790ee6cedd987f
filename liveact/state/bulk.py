"""Where a checkpoint's part bytes leave the process: a blocking connection in a worker thread.

The asyncio client copies every value it sends while holding the GIL (``writelines`` joins the
command into one bytes object; a partial send copies the rest into the transport's buffer): for
hundreds of MB per checkpoint that is seconds of GIL held by the event loop, and the DiT thread,
which needs the GIL between kernels, slows down with it. The blocking client sends each part as its
own ``memoryview`` of the capture buffer (``socket.sendall``: no copy, the GIL released while the
kernel takes the bytes), so a checkpoint's bytes cost the DiT thread nothing but the wait for a free
core. Only the part SETs go this way; the small commands (refresh, commit, GC) stay on the asyncio
client. redis-py raises the same exceptions either way (``redis_errors`` translates both).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import redis
import redis.cluster

from liveact.state.parts import PIPELINE_BYTES
from liveact.state.settings import StoreSettings

__all__ = ["BulkWriter"]


class BulkWriter:
    """Part SETs on a blocking client in one worker thread per store (connects on the first write)."""

    def __init__(self, settings: StoreSettings, ttl_ms: int) -> None:
        self.settings, self.ttl_ms = settings, ttl_ms
        self._client: redis.Redis | redis.cluster.RedisCluster | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liveact-bulk")

    async def write(self, parts: list[tuple[str, memoryview]]) -> None:
        """SET every part with the TTL, in pipelined rounds of about PIPELINE_BYTES, off the event loop."""
        if parts:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._write, parts)

    def _write(self, parts: list[tuple[str, memoryview]]) -> None:
        client = self._connected()
        pipe, in_flight = client.pipeline(transaction=False), 0
        for key, view in parts:
            pipe.set(key, view, px=self.ttl_ms)  # a memoryview: sent as it is (no copy)
            in_flight += len(view)
            if in_flight >= PIPELINE_BYTES:
                pipe.execute()
                pipe, in_flight = client.pipeline(transaction=False), 0
        if len(pipe):
            pipe.execute()

    def _connected(self) -> redis.Redis | redis.cluster.RedisCluster:
        with self._lock:
            if self._client is None:
                self._client = self.settings.connect_blocking()
            return self._client

    def close(self) -> None:
        """Stop the thread (after the write it runs, if any) and close the connections."""
        self._pool.shutdown(wait=True)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
