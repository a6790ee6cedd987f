"""One life cycle for every service: bind, warm up, serve, drain on SIGTERM.

``run(settings, name, add_servicers, warm_up)``:
1. a ``grpc.aio`` server with message limits and keepalive suited to hour-long streams, whose requests
   that do not decode are INVALID_ARGUMENT (``decoding.RequestDecodingGuard``);
2. the standard health service, NOT_SERVING until ``warm_up`` (model loading) has finished;
3. reflection when ``--reflection``;
4. on SIGTERM/SIGINT: NOT_SERVING at once, then ``stop(grace)`` lets in-flight streams finish for
   ``--grace-s`` seconds before cancelling them; ``on_drain`` lets a service hand sessions off first;
5. if ``warm_up`` raises, the error is logged and the process exits with status 1 (never NOT_SERVING forever);
6. ``monitor(health)``, if given, runs once warm: a service reports a dependency under its own health
   name (e.g. the generator's ``liveact.v1.Generator.checkpoints``: degraded, not down, while Redis is
   away), stopped at drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.decoding import RequestDecodingGuard
from services.common.settings import ServerSettings

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    ms = lambda s: int(s * 1000)  # noqa: E731
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", ms(settings.keepalive_s)),
        ("grpc.keepalive_timeout_ms", ms(settings.keepalive_timeout_s)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),  # pings keep an idle hour-long stream open
        ("grpc.http2.min_ping_interval_without_data_ms", ms(settings.keepalive_s) // 2),
    ]


class Health:
    """The health servicer plus the names of the services it reports for."""

    def __init__(self, services: Sequence[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self.services = ["", *services]

    async def set(self, status: int) -> None:
        for name in self.services:
            await self.servicer.set(name, status)

    async def set_one(self, name: str, status: int) -> None:
        """One extra name (a dependency), also turned NOT_SERVING by ``set`` from then on."""
        if name not in self.services:
            self.services.append(name)
        await self.servicer.set(name, status)


class StartRefused(Exception):
    """A configuration this server cannot serve, said in one message: logged without a traceback, exit 1."""


async def run(
    settings: ServerSettings,
    service_names: Sequence[str],
    add_servicers: Callable[[grpc.aio.Server], None],
    warm_up: Callable[[], Awaitable[None]],
    on_drain: Callable[[], Awaitable[None]] | None = None,
    monitor: Callable[[Health], Coroutine[Any, Any, None]] | None = None,
) -> None:
    server = grpc.aio.server(options=server_options(settings), interceptors=[RequestDecodingGuard()])
    add_servicers(server)
    status = Health(service_names)
    health_pb2_grpc.add_HealthServicer_to_server(status.servicer, server)
    await status.set(NOT_SERVING)
    if settings.reflection:
        names = [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise RuntimeError(f"could not bind {settings.host}:{settings.port}")
    await server.start()
    log.info("listening", extra={"host": settings.host, "port": port, "services": list(service_names)})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    monitoring: list[asyncio.Task] = []

    async def serve_when_warm() -> None:
        await warm_up()
        await status.set(SERVING)
        if monitor is not None:
            monitoring.append(asyncio.create_task(monitor(status), name="monitor"))
        if settings.port_file:
            Path(settings.port_file).write_text(f"{port}\n")
        log.info("serving", extra={"port": port})

    warm = asyncio.create_task(serve_when_warm())

    def stop_if_failed(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            stop.set()

    warm.add_done_callback(stop_if_failed)
    await stop.wait()
    if warm.done() and not warm.cancelled() and warm.exception() is not None:
        # a failed warm-up (missing weights, ...) must not leave a process that is NOT_SERVING forever
        failure = warm.exception()
        if isinstance(failure, StartRefused):
            log.error("refusing to start: %s", failure)
        else:
            log.error("warm-up failed: stopping", exc_info=failure)
        await server.stop(0)
        raise SystemExit(1)
    log.info("draining", extra={"grace_s": settings.grace_s})
    for task in monitoring:
        task.cancel()
    await status.set(NOT_SERVING)
    warm.cancel()
    if on_drain is not None:
        await on_drain()
    await server.stop(settings.grace_s)
    log.info("stopped")
