"""``liveact serve SERVICE`` (one service in this process) and ``liveact up`` (a one-machine cluster)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

SERVICES = {"audio-encoder": "audio_encoder", "generator": "generator", "decoder": "decoder"}
START_TIMEOUT_S = 300.0


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
        "each is serving, print the generator's address, and stop them all cleanly on Ctrl-C.",
    )
    up.add_argument("--port", type=int, default=50051, help="generator port (default: 50051)")
    up.add_argument("--preset", default="tiny")
    up.add_argument("--max-sessions", type=int, default=4)
    up.set_defaults(func=run_up)


def run_serve(args: argparse.Namespace) -> int:
    module = __import__(f"services.{SERVICES[args.service]}.server", fromlist=["serve"])
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    module.serve(extra)
    return 0


def _start(name: str, args: list[str], workdir: Path) -> tuple[subprocess.Popen, Path]:
    port_file = workdir / f"{name}.port"
    cmd = [sys.executable, "-m", f"services.{SERVICES[name]}", "--port-file", str(port_file), *args]
    return subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}), port_file


def _wait_port(name: str, proc: subprocess.Popen, port_file: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode} during start-up (see its log above)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} was not serving after {START_TIMEOUT_S:.0f} s")
        time.sleep(0.1)
    return int(port_file.read_text())


def run_up(args: argparse.Namespace) -> int:
    procs: list[subprocess.Popen] = []
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    with tempfile.TemporaryDirectory(prefix="liveact-up-") as tmp:
        work = Path(tmp)
        try:
            peers = {}
            peer_args = {
                "audio-encoder": ["--port", "0", "--preset", args.preset],
                "decoder": ["--port", "0", "--vae-preset", _vae_of(args.preset)],
            }
            for name, extra in peer_args.items():
                proc, port_file = _start(name, extra, work)
                procs.append(proc)
                peers[name] = f"127.0.0.1:{_wait_port(name, proc, port_file)}"
            gen_args = ["--port", str(args.port), "--preset", args.preset, "--max-sessions", str(args.max_sessions),
                        "--audio-encoder", peers["audio-encoder"], "--decoder", peers["decoder"]]  # fmt: skip
            proc, port_file = _start("generator", gen_args, work)
            procs.append(proc)
            port = _wait_port("generator", proc, port_file)
            log.info("LiveAct is up: generator at 127.0.0.1:%d (Ctrl-C stops)", port)
            print(f"127.0.0.1:{port}", flush=True)
            while not stop["now"] and all(p.poll() is None for p in procs):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
    return 0


def _vae_of(preset: str) -> str:
    from liveact.config import get_preset

    return get_preset(preset).vae
