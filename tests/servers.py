"""Start a LiveAct service as a real process for a test, and stop it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0


@contextmanager
def service_process(
    module: str, *args: str, timeout_s: float = START_TIMEOUT_S
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``python -m services.<module> --port 0 ...`` until it is SERVING; yield (address, process).

    The service writes its port to ``--port-file`` once warm. On exit the process gets SIGTERM and
    must exit by itself within its grace period (killed, and the test fails, if it does not).
    """
    with tempfile.TemporaryDirectory(prefix="liveact-test-") as tmp:
        port_file = Path(tmp) / "port"
        log_path = Path(tmp) / "stderr.log"
        cmd = [sys.executable, "-m", f"services.{module}", "--port", "0", "--port-file", str(port_file), *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                deadline = time.monotonic() + timeout_s
                while not port_file.exists() or not port_file.read_text().strip():
                    if proc.poll() is not None:
                        raise RuntimeError(f"{module} exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{module} not serving after {timeout_s} s: {log_path.read_text()[-3000:]}")
                    time.sleep(0.05)
                yield f"127.0.0.1:{int(port_file.read_text())}", proc
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                        raise AssertionError(f"{module} ignored SIGTERM: {log_path.read_text()[-3000:]}") from None
