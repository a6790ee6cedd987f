"""``liveact serve SERVICE`` (one service in this process) and ``liveact up`` (a one-machine cluster)."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import time

from liveact.launch import SERVICES, local_cluster
from liveact.source_tree import require

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run one gRPC service (audio-encoder, generator, decoder)",
        description="Run one LiveAct gRPC service in this process. Options after the service name go to it "
        "(see `liveact serve generator -- --help`); each also reads LIVEACT_* environment variables.",
    )
    p.add_argument("service", choices=sorted(SERVICES))
    p.add_argument("args", nargs=argparse.REMAINDER, help="options for the service")
    p.set_defaults(func=run_serve)

    up = sub.add_parser(
        "up",
        help="start the three services on this machine and print the client endpoint",
        description="Start audio-encoder, decoder and generator as separate processes on loopback, wait until "
        "each is serving, print the generator's address, and stop them all cleanly on Ctrl-C. Sessions are "
        "checkpointed to a private redis-server started alongside when one is installed (resumable with "
        "`liveact client --resume`), or to --redis-url.",
    )
    up.add_argument("--port", type=int, default=50051, help="generator port (default: 50051)")
    up.add_argument("--preset", default="tiny")
    up.add_argument("--max-sessions", type=int, default=4)
    up.add_argument(
        "--redis-url",
        default=None,
        help="Redis for session checkpoints (default: start a private redis-server if installed; '' = none)",
    )
    up.set_defaults(func=run_up)


def run_serve(args: argparse.Namespace) -> int:
    require("services", "serve")
    module = importlib.import_module(f"services.{SERVICES[args.service]}.server")
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    module.serve(extra)
    return 0


def run_up(args: argparse.Namespace) -> int:
    require("services", "up")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        with local_cluster(args.preset, args.port, args.max_sessions, capture=False, redis_url=args.redis_url) as (
            address,
            procs,
        ):
            log.info("LiveAct is up: generator at %s (Ctrl-C stops)", address)
            print(address, flush=True)
            while not stop["now"] and all(p.poll() is None for p in procs):
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    return 0
