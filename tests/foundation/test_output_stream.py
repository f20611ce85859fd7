"""combo.output.BackgroundStream: writes that never wait for the stream below, bounded, and said when dropped."""

from __future__ import annotations

import io
import os
import threading
import time

from combo.output import BackgroundStream


def test_writes_return_at_once_into_a_full_pipe_and_drops_are_counted_then_said():
    read_end, write_end = os.pipe()
    pipe = io.TextIOWrapper(os.fdopen(write_end, "wb"), encoding="utf-8", write_through=True)
    stream = BackgroundStream(pipe, max_pending_chars=10_000)
    line = "x" * 99 + "\n"
    started = time.monotonic()
    for _ in range(3000):  # 300 KB: the pipe (64 KiB) fills, then the pending 10,000 characters
        stream.write(line)
    assert time.monotonic() - started < 1.0  # nothing waited for the pipe's reader

    received = bytearray()

    def read_all() -> None:
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    assert stream.drain(10)
    stream.write("after\n")
    assert stream.drain(10)
    pipe.close()
    reader.join(10)
    os.close(read_end)
    text = received.decode()
    lines = text.splitlines()
    notices = [item for item in lines if "were dropped while it was not being read" in item]
    written = sum(1 for item in lines if item == line.strip())
    assert len(notices) == 1 and lines[-1] == "after"
    dropped = int(notices[0].strip("[").split()[0])
    assert written + dropped == 3000 and dropped > 0 and written >= 100  # the pipe's share and the pending bound


def test_at_rest_it_is_a_plain_text_stream():
    target = io.StringIO()
    stream = BackgroundStream(target)
    print("one", file=stream)
    stream.write("two\n")
    stream.flush()  # returns at once
    assert stream.drain(5) and target.getvalue() == "one\ntwo\n"
    assert stream.writable() and stream.encoding == target.encoding and not stream.isatty()
