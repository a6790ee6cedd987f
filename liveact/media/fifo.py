"""``AudioFifo``: a named pipe carrying raw PCM to ffmpeg as its second live input.

Only one stream fits through ffmpeg's stdin (the video), so audio goes through a FIFO in a private
temporary directory. The FIFO is opened and written by a thread: ffmpeg opens its inputs in order
and probes stdin first, so opening the FIFO on the caller's thread would deadlock. Chunks wait in a
bounded queue (``max_pending`` chunks); ``push`` raises if ffmpeg stops taking audio for
``io_timeout_s``. ``finish`` ends the audio (EOF), ``abort`` unblocks and stops the thread, and
``cleanup`` removes the FIFO and its directory; all three are safe to call more than once.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from liveact.media.errors import MediaError
from liveact.media.process import write_all

__all__ = ["AudioFifo"]

log = logging.getLogger(__name__)

_JOIN_S = 5.0
_POLL_S = 0.1


class AudioFifo:
    def __init__(self, io_timeout_s: float, max_pending: int = 8, temp_dir: str | os.PathLike | None = None) -> None:
        self.io_timeout_s = io_timeout_s
        self.directory = Path(tempfile.mkdtemp(prefix="liveact-audio-", dir=temp_dir))
        self.path = self.directory / "audio.fifo"
        os.mkfifo(self.path, 0o600)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max_pending)
        self._aborted = threading.Event()
        self._finished = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="liveact-audio-fifo", daemon=True)
        self._thread.start()

    def push(self, pcm: bytes) -> None:
        """Queue PCM bytes for ffmpeg; raises MediaError if the writer failed or ffmpeg stopped reading."""
        self._put(pcm)

    def _put(self, item: bytes | None) -> None:
        if self.error is not None:
            raise MediaError(f"audio pipe to ffmpeg failed: {self.error!r}")
        try:
            self._queue.put(item, timeout=self.io_timeout_s)
        except queue.Full:
            raise MediaError(f"ffmpeg took no audio for {self.io_timeout_s} s") from None

    def finish(self, timeout_s: float, reader_alive: Callable[[], bool] = lambda: True) -> None:
        """Send EOF after the queued audio and wait until it is written (MediaError after ``timeout_s``).

        ``reader_alive`` tells whether ffmpeg still runs; if it exited, the writer is stopped at once
        (ffmpeg's exit status, not this pipe, then explains what went wrong).
        """
        if not reader_alive():
            self.abort()
            return
        if not self._finished:
            self._finished = True
            self._put(None)  # end marker
        deadline = time.monotonic() + timeout_s
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(_POLL_S)
            if self._thread.is_alive() and not reader_alive():
                self.abort()
                return
        if self._thread.is_alive():
            raise MediaError(f"ffmpeg did not read the rest of the audio within {timeout_s} s")
        if self.error is not None:
            raise MediaError(f"audio pipe to ffmpeg failed: {self.error!r}")

    def abort(self) -> None:
        """Stop the writer thread whatever it is blocked on (ffmpeg is already dead or being killed)."""
        self._aborted.set()
        while True:  # make room for the end marker
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        deadline = time.monotonic() + _JOIN_S
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._unblock_open()  # repeated: the thread may reach open() just after an attempt
            self._thread.join(_POLL_S)
        if self._thread.is_alive():
            log.error("audio FIFO writer thread did not stop")

    def cleanup(self) -> None:
        """Abort if still running, then remove the FIFO and its directory."""
        if self._thread.is_alive():
            self.abort()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _unblock_open(self) -> None:
        """A writer blocked in open() returns once a reader appears: be that reader for a moment."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return
        os.close(fd)

    def _run(self) -> None:
        fd = -1
        try:
            fd = os.open(self.path, os.O_WRONLY)  # blocks until ffmpeg opens its audio input
            os.set_blocking(fd, False)
            while not self._aborted.is_set():
                chunk = self._queue.get()
                if chunk is None:
                    break
                write_all(fd, chunk, self.io_timeout_s)
        except (OSError, TimeoutError) as exc:
            if not self._aborted.is_set():
                self.error = exc
                log.debug("audio FIFO writer stopped: %r", exc)
        finally:
            if fd >= 0:
                os.close(fd)
