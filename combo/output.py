"""A server process's stdout and stderr, written by a thread of their own: a log line never blocks a request.

daphne writes its access log (a line per request) and Combo's logging
writes its lines from the thread that logs, the event loop's included. The
output is often a pipe (a container's log driver, a supervisor, `make run |
tee`), which holds 64 KiB: while its reader stalls, a write into the full
pipe waits, and a write made on the event loop stopped every request of the
process until the reader came back.

`BackgroundStream` takes a write at once (it appends to a list, under a
lock) and its thread writes what waits to the real stream, a batch at a time.
What waits is bounded (`MAX_PENDING_CHARS`): past it, writes are dropped and
counted, and a line saying how many were dropped goes out once the reader
is back. At exit (atexit) what waits is written, for up to a few seconds.
"""

from __future__ import annotations

import atexit
import io
import sys
import threading
import time

MAX_PENDING_CHARS = 8_000_000  # about 80,000 access-log lines
BATCH_SECONDS = 0.02  # lines that come within this long go out in one write
EXIT_SECONDS = 3.0


class BackgroundStream(io.TextIOBase):
    """A text stream whose write() never waits for the stream below it."""

    def __init__(self, stream, *, max_pending_chars: int = MAX_PENDING_CHARS) -> None:
        super().__init__()
        self._stream = stream
        self._max = max_pending_chars
        self._pending: list[str] = []
        self._size = 0
        self._dropped = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        thread = threading.Thread(target=self._run, name=f"combo-output-{getattr(stream, 'name', '?')}", daemon=True)
        thread.start()

    # What logging, print() and daphne's access log use.
    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            if self._size + len(text) > self._max:
                self._dropped += 1
            else:
                self._pending.append(text)
                self._size += len(text)
            self._idle.clear()
        self._wake.set()
        return len(text)

    def flush(self) -> None:
        """Returns at once: the thread flushes after each batch (drain() waits for it)."""

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:
        return getattr(self._stream, "errors", None)

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until everything written so far is out; whether it is."""
        self._wake.set()
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(BATCH_SECONDS)
            with self._lock:
                pending, self._pending, self._size = self._pending, [], 0
                dropped, self._dropped = self._dropped, 0
            if dropped:
                pending.append(f"[{dropped} writes to this output were dropped while it was not being read]\n")
            try:
                self._stream.write("".join(pending))
                self._stream.flush()
            except (OSError, ValueError):  # the output was closed: nothing more can be written
                pass
            with self._lock:
                if not self._pending and not self._dropped:
                    self._idle.set()


def install() -> None:
    """Give this process's stdout and stderr a thread of their own (before anything keeps a reference to them)."""
    streams = []
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if current is None or isinstance(current, BackgroundStream):
            continue
        background = BackgroundStream(current)
        setattr(sys, name, background)
        streams.append(background)

    def drain_at_exit() -> None:
        deadline = time.monotonic() + EXIT_SECONDS
        for stream in streams:
            stream.drain(max(0.0, deadline - time.monotonic()))

    atexit.register(drain_at_exit)
