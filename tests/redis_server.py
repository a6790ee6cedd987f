"""A throwaway ``redis-server`` for tests: its own free port, no persistence, killed at the end.

Never the shared Redis on 6379: every test module starts its own server (``redis_server`` fixture)
and may kill and restart it to test outages. Tests skip cleanly if ``redis-server`` is not installed
(``scripts/setup`` installs it, so CI has it).
"""

from __future__ import annotations

import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REDIS_SERVER = "redis-server"
REDIS_CLI = "redis-cli"
CLUSTER_SIZE = 3  # masters: the smallest cluster redis-cli creates
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
POLL_S = 0.02
PROBE_TIMEOUT_S = 0.5
START_ATTEMPTS = 3


CLUSTER_BUS_OFFSET = 10_000  # a cluster node also listens on port + 10000, so its port must be <= 55535
CLUSTER_PORTS = (20_000, 65_535 - CLUSTER_BUS_OFFSET)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (the OS's ephemeral ports reach past 55535)."""
    rng = random.Random()
    while True:
        port = rng.randint(*CLUSTER_PORTS)
        if _bindable(port) and _bindable(port + CLUSTER_BUS_OFFSET):
            return port


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (PEM paths)."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a CA and two certificates it signed with ``openssl`` (skips the test without it)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = Path(directory)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=liveact-test-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=liveact-test-{name}")
        sign = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "san.ext"]
        openssl("x509", "-req", "-in", f"{name}.csr", "-out", f"{name}.crt", *sign)
    return TlsFiles(
        str(d / "ca.crt"), str(d / "server.crt"), str(d / "server.key"), str(d / "client.crt"), str(d / "client.key")
    )


def _answers(port: int, tls: TlsFiles | None = None) -> bool:
    """True once the server answers a PING (+PONG, or -NOAUTH when a password is required)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S) as raw:
            s = raw
            if tls is not None:
                ctx = ssl.create_default_context(cafile=tls.ca)
                ctx.load_cert_chain(tls.client_cert, tls.client_key)
                s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def _kill_quietly(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


class RedisServer:
    """``redis-server`` as a child process (not daemonized) on 127.0.0.1:``port``."""

    def __init__(
        self,
        password: str | None = None,
        port: int | None = None,
        tls: TlsFiles | None = None,
        extra_args: tuple[str, ...] = (),
        pick_port: Callable[[], int] = free_port,
    ) -> None:
        self.password = password
        self.tls = tls  # serve TLS only (mutual: clients must present a certificate the CA signed)
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="liveact-redis-")
        for attempt in range(START_ATTEMPTS):  # a free port can be taken between probe and bind
            self.port = port or pick_port()
            try:
                self.start()
                return
            except RuntimeError:
                if port or attempt == START_ATTEMPTS - 1:
                    self._dir.cleanup()
                    raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", self._dir.name, "--daemonize", "no"]
        if self.tls:
            args[2] = "0"  # no plain-text port
            args += ["--tls-port", str(self.port), "--tls-cert-file", self.tls.server_cert]
            args += [
                "--tls-key-file",
                self.tls.server_key,
                "--tls-ca-cert-file",
                self.tls.ca,
                "--tls-auth-clients",
                "yes",
            ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        weakref.finalize(self, _kill_quietly, self.proc)  # never outlive the tests, even if close() is missed
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(self.port, self.tls):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.poll() is not None else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}: {out[-2000:]}")
            time.sleep(POLL_S)

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, every connection dropped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def restart(self) -> None:
        """Kill and start again on the same port, with no data (no persistence)."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RedisClusterServers:
    """A Redis Cluster of ``size`` masters (no replicas) on free ports, created with ``redis-cli --cluster``."""

    def __init__(self, size: int = CLUSTER_SIZE) -> None:
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(size):
                self.nodes.append(RedisServer(extra_args=args, pick_port=free_cluster_port))
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=START_TIMEOUT_S * 3,
            )
            self._wait_ok()
        except BaseException:
            self.close()
            raise

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S * 3
        while True:
            states = [self.info(n) for n in self.nodes]
            if all("cluster_state:ok" in s for s in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not become ok: {states}")
            time.sleep(POLL_S * 10)

    @staticmethod
    def info(node: RedisServer) -> str:
        out = subprocess.run(
            [REDIS_CLI, "-p", str(node.port), "cluster", "info"], capture_output=True, text=True, timeout=5
        )
        return out.stdout

    @property
    def url(self) -> str:
        """One node's URL: a cluster client discovers the others from it."""
        return self.nodes[0].url

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def require_redis_server() -> None:
    if shutil.which(REDIS_SERVER) is None:
        pytest.skip(f"{REDIS_SERVER} is not installed (scripts/setup installs it)")
