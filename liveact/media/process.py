"""One ffmpeg child process that can never hang its caller.

* stdin (optional) is written non-blocking with a no-progress timeout: if ffmpeg accepts nothing
  for ``io_timeout_s`` the child is killed and ``FfmpegError`` raised.
* stderr is read by a thread into a bounded tail, which every ``FfmpegError`` carries.
* stdout (optional) is read by a thread into a bounded queue of pieces (at most
  ``max_pending_pieces`` pieces of at most ``read_size`` bytes). When the consumer falls behind, the
  reader blocks, the OS pipe fills, ffmpeg blocks on its output and stops reading its input, and
  ``write`` blocks in turn: back-pressure reaches the producer and memory stays bounded.
* ``kill`` (idempotent) stops the child and unblocks every thread; ``wait`` bounds the exit wait.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence

from liveact.media.errors import FfmpegError, MediaError

__all__ = ["FfmpegProcess", "write_all"]

log = logging.getLogger(__name__)

_STDERR_TAIL_LINES = 40
_THREAD_POLL_S = 0.1  # how often a blocked reader re-checks whether the process was killed
_EXIT_GRACE_S = 5.0  # wait for a child that closed a pipe on us to exit, to report its stderr


def write_all(fd: int, data: bytes | memoryview, timeout_s: float) -> None:
    """Write every byte to a non-blocking ``fd``; TimeoutError if no byte is accepted for ``timeout_s``."""
    view = memoryview(data).cast("B")
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            written = 0
        if written:
            view = view[written:]
            continue
        if not poller.poll(timeout_s * 1000):
            raise TimeoutError(f"no bytes accepted for {timeout_s} s")


class FfmpegProcess:
    """Spawn ``argv``; ``stdin``/``stdout`` choose which of the child's pipes are connected."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        stdin: bool,
        stdout: bool,
        io_timeout_s: float,
        max_pending_pieces: int = 64,
        read_size: int = 64 * 1024,
        name: str = "ffmpeg",
    ) -> None:
        if shutil.which(argv[0]) is None:
            raise MediaError(f"{argv[0]!r} was not found on PATH; install ffmpeg (e.g. apt-get install ffmpeg)")
        self.name = name
        self.io_timeout_s = io_timeout_s
        self.read_size = read_size
        self._tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self._killed = threading.Event()
        self._eof = False
        self.pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=max_pending_pieces)
        log.debug("starting %s: %s", name, " ".join(argv))
        self._proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if stdin:
            os.set_blocking(self._proc.stdin.fileno(), False)
        self._stderr_reader = threading.Thread(target=self._read_stderr, name=f"liveact-{name}-stderr", daemon=True)
        self._stderr_reader.start()
        self._stdout_reader: threading.Thread | None = None
        if stdout:
            self._stdout_reader = threading.Thread(target=self._read_stdout, name=f"liveact-{name}-stdout", daemon=True)
            self._stdout_reader.start()

    # -- state -----------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def stderr_tail(self) -> str:
        return "\n".join(self._tail)

    def error(self, message: str) -> FfmpegError:
        return FfmpegError(f"{self.name}: {message}", self._proc.poll(), self.stderr_tail())

    # -- input -----------------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        """Send bytes to the child's stdin; on a dead or stalled child kill it and raise FfmpegError."""
        try:
            write_all(self._proc.stdin.fileno(), data, self.io_timeout_s)
        except TimeoutError:
            self.kill()
            raise self.error(
                f"accepted no input for {self.io_timeout_s} s (stalled, or its output is not read)"
            ) from None
        except (OSError, ValueError):  # broken pipe; or stdin closed by a concurrent kill()
            self._settle()
            raise self.error("exited while receiving input") from None

    def close_input(self) -> None:
        """End of input: ffmpeg flushes its encoders and finishes the container."""
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass

    # -- output ----------------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> bytes | None:
        """Next stdout piece, blocking up to ``timeout`` (queue.Empty); ``None`` once stdout ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._eof:
            wait = _THREAD_POLL_S if deadline is None else min(_THREAD_POLL_S, deadline - time.monotonic())
            try:
                piece = self.pieces.get(timeout=max(wait, 0.0))
            except queue.Empty:
                if self._killed.is_set() and self.pieces.empty():
                    self._eof = True  # killed before its reader could queue the end marker
                elif deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            if piece is not None:
                return piece
            self._eof = True
        return None

    # -- exit ------------------------------------------------------------------------------------

    def wait(self, timeout_s: float, check: bool = True) -> int:
        """Wait for exit; kill and raise if it takes longer than ``timeout_s``; raise on non-zero when ``check``."""
        try:
            code = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self.error(f"did not finish within {timeout_s} s and was killed") from None
        self._stderr_reader.join(timeout_s)  # complete stderr; stdout ends when the consumer drains it
        if check and code != 0:
            raise self.error("failed")
        return code

    def kill(self) -> None:
        """Stop the child now (idempotent) and release every pipe and thread."""
        self._killed.set()
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.wait(timeout=_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            log.error("%s (pid %d) did not exit after SIGKILL", self.name, self._proc.pid)
        self.close_input()
        for reader in (self._stderr_reader, self._stdout_reader):
            if reader is not None and reader is not threading.current_thread():
                reader.join(_EXIT_GRACE_S)

    def _settle(self) -> None:
        """The child closed a pipe: give it a moment to exit (so its stderr is complete), else kill it."""
        try:
            self._proc.wait(timeout=_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    # -- threads ---------------------------------------------------------------------------------

    def _read_stderr(self) -> None:
        with self._proc.stderr as stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace").rstrip()
                if line:
                    self._tail.append(line)
                    log.debug("%s: %s", self.name, line)

    def _read_stdout(self) -> None:
        """Move stdout into the bounded queue, ending with None; stops early once the child is killed."""
        with self._proc.stdout as stream:
            fd = stream.fileno()
            while True:
                piece = os.read(fd, self.read_size)
                if not self._put(piece or None) or not piece:
                    return

    def _put(self, item: bytes | None) -> bool:
        """Queue an item, blocking while the queue is full; False once the process was killed."""
        while not self._killed.is_set():
            try:
                self.pieces.put(item, timeout=_THREAD_POLL_S)
                return True
            except queue.Full:
                continue
        return False
