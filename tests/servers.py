"""Start a LiveAct service as a real process for a test, and stop it cleanly (``liveact.launch``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from liveact import launch

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


@contextmanager
def service_process(
    module: str, *args: str, timeout_s: float = START_TIMEOUT_S, **kwargs
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``python -m services.<module> --port 0 ...`` until it is SERVING; yield (address, process).

    The service writes its port to ``--port-file`` once warm; its output goes to a log file quoted in
    errors. On exit the process gets SIGTERM and must exit by itself within its grace period (killed,
    and the test fails with ``launch.ServiceError``, if it does not). ``kwargs``: ``env``, ``log_file``.
    """
    with launch.service_process(
        module, *args, cwd=ROOT, start_timeout_s=timeout_s, stop_timeout_s=STOP_TIMEOUT_S, **kwargs
    ) as running:
        yield running
