"""Start LiveAct services as separate processes and stop them cleanly.

One helper for everything that runs the services on this machine: ``liveact up``, the benchmarks
(``liveact bench pipeline``) and the tests (``tests/servers.py``).

``service_process`` runs ``python -m services.<module> --port PORT --port-file F ...`` (from a
checkout's tree or an image's, ``liveact.source_tree``). A service
writes its bound port to ``--port-file`` only once it has warmed up and reports SERVING, so the
address is yielded only when the service takes requests. On exit the process gets SIGTERM and must
exit by itself (it drains for its ``--grace-s``); one that does not is killed and ``ServiceError``
is raised. ``local_cluster`` starts audio encoder, decoder and generator the way ``liveact up`` does,
with a throw-away ``redis-server`` (``redis_process``) for durable sessions when one is installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from liveact.source_tree import child_env

SERVICES = {"audio-encoder": "audio_encoder", "generator": "generator", "decoder": "decoder"}
START_TIMEOUT_S = 300.0  # model loading on a busy machine
STOP_TIMEOUT_S = 60.0  # after SIGTERM; longer than a service's default --grace-s (20 s)
LOG_TAIL_CHARS = 3000


class ServiceError(RuntimeError):
    """A service exited during start-up, did not start in time, or ignored SIGTERM."""


@contextmanager
def service_process(
    service: str,
    *args: str,
    port: int = 0,
    capture: bool = True,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    start_timeout_s: float = START_TIMEOUT_S,
    stop_timeout_s: float = STOP_TIMEOUT_S,
    log_file: str | Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run one service until it is SERVING; yield (``127.0.0.1:port``, process); SIGTERM it on exit.

    service: ``audio-encoder`` / ``audio_encoder``, ``decoder`` or ``generator``. ``port`` 0 takes any
    free port. ``capture``: the service's output goes to a temporary log file whose tail is quoted in
    errors (keeps the caller's stdout clean); False: it shares the caller's stdout/stderr. ``env``:
    variables set on top of this process's environment (e.g. ``OMP_NUM_THREADS``). ``log_file``: keep
    the captured output there (it outlives the process) instead of in a temporary file.
    """
    module = SERVICES.get(service, service)
    if module not in SERVICES.values():
        raise ValueError(f"unknown service {service!r}: one of {sorted(SERVICES)}")
    with tempfile.TemporaryDirectory(prefix=f"liveact-{module}-") as tmp, ExitStack() as files:
        port_file = Path(tmp) / "port"
        log_path = Path(log_file) if log_file is not None else Path(tmp) / "output.log"
        out = files.enter_context(open(log_path, "wb")) if capture else None
        cmd = [sys.executable, "-m", f"services.{module}", "--port", str(port), "--port-file", str(port_file), *args]
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=child_env({**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}),
            stdout=out, stderr=subprocess.STDOUT if capture else None,
        )  # fmt: skip

        def output() -> str:
            return f":\n{log_path.read_text(errors='replace')[-LOG_TAIL_CHARS:]}" if capture else " (see its log above)"

        try:
            deadline = time.monotonic() + start_timeout_s
            while not (port_file.exists() and port_file.read_text().strip()):
                if proc.poll() is not None:
                    raise ServiceError(f"{module} exited with status {proc.returncode} during start-up{output()}")
                if time.monotonic() > deadline:
                    raise ServiceError(f"{module} was not serving after {start_timeout_s:.0f} s{output()}")
                time.sleep(0.05)
            yield f"127.0.0.1:{int(port_file.read_text())}", proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=stop_timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise ServiceError(f"{module} ignored SIGTERM for {stop_timeout_s:.0f} s{output()}") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_process(port: int = 0, start_timeout_s: float = 10.0) -> Iterator[str]:
    """A private ``redis-server`` on loopback, nothing saved to disk; yields its ``redis://`` URL.

    Raises ``ServiceError`` if ``redis-server`` is not installed or does not answer in time.
    """
    exe = shutil.which("redis-server")
    if exe is None:
        raise ServiceError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def local_cluster(
    preset: str = "tiny",
    port: int = 0,
    max_sessions: int = 4,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    start_timeout_s: float = START_TIMEOUT_S,
    redis_url: str | None = None,
    generator_args: tuple[str, ...] = (),
) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """Audio encoder and decoder on free loopback ports, then the generator on ``port`` wired to them.

    ``redis_url``: where the generator checkpoints sessions; None starts a private redis-server when
    one is installed (else sessions are not durable); "" turns checkpoints off.
    Yields (generator address, [encoder, decoder, generator] processes). On exit the generator is
    stopped first (its streams drain while its peers still serve), then the decoder and the encoder.
    """
    from liveact.config import get_preset

    common = {"capture": capture, "env": env, "start_timeout_s": start_timeout_s}
    with ExitStack() as stack:
        if redis_url is None:
            redis_url = stack.enter_context(redis_process()) if shutil.which("redis-server") else ""
        durable = ("--redis-url", redis_url) if redis_url else ()
        enc, enc_proc = stack.enter_context(service_process("audio-encoder", "--preset", preset, **common))
        dec, dec_proc = stack.enter_context(
            service_process("decoder", "--vae-preset", get_preset(preset).vae, **common)
        )
        gen, gen_proc = stack.enter_context(
            service_process(
                "generator", "--preset", preset, "--max-sessions", str(max_sessions),
                "--audio-encoder", enc, "--decoder", dec, *durable, *generator_args, port=port, **common,
            )
        )  # fmt: skip
        yield gen, [enc_proc, dec_proc, gen_proc]
