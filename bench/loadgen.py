"""The load generator: N concurrent SSE streams over raw HTTP/1.1 sockets.

Runs in its own process (bench/run.py starts one or two of these) so that
reading the streams does not compete with the orchestrator. Each stream is a
fresh TCP connection to 127.0.0.1 with `Connection: close`; the per-read work
is an incremental de-chunker and a `find(b"\\n\\n")`, nothing is parsed after
the first answer event. Whole bodies are checked after the round, when timing
no longer matters.

Protocol with the parent: one JSON config line on stdin, `READY` on stdout,
then a `GO` line on stdin, then one JSON result line on stdout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import resource
import sys
import time

_MAX_BODY = 4 << 20  # a stream body above this is an error, not a memory leak


class Stream(asyncio.Protocol):
    """One request and its response; timings are time.monotonic() values."""

    __slots__ = (
        "request", "mode", "done", "transport", "t0", "head", "status", "headers",
        "chunked", "length", "raw", "pos", "remaining", "skip", "body", "scan",
        "event_times", "first", "first_index", "finished", "error", "end",
    )

    def __init__(self, request: bytes, mode: str, done: asyncio.Future) -> None:
        self.request = request
        self.mode = mode  # "combo" or "direct": which first event counts
        self.done = done
        self.transport = None
        self.t0 = 0.0
        self.head = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunked = False
        self.length: int | None = None
        self.raw = bytearray()
        self.pos = 0
        self.remaining = 0
        self.skip = 0
        self.body = bytearray()
        self.scan = 0
        self.event_times: list[float] = []
        self.first: float | None = None  # time of the first event carrying answer text
        self.first_index = 0
        self.finished = False
        self.error: str | None = None
        self.end = 0.0

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.status:
            self.head += data
            cut = self.head.find(b"\r\n\r\n")
            if cut < 0:
                if len(self.head) > 65536:
                    self._fail("response head too large")
                return
            self._parse_head(bytes(self.head[:cut]))
            data = bytes(self.head[cut + 4:])
            self.head = bytearray()
            if self.finished:
                return
        if self.chunked:
            self._dechunk(data)
        else:
            self.body += data
            if self.length is not None and len(self.body) >= self.length:
                self._finish(now)
        if len(self.body) > _MAX_BODY:
            self._fail("response body too large")
            return
        if self.status == 200:
            self._events(now)
        if self.finished and not self.done.done():
            self._finish(now)

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            if self.chunked or not self.status:
                self.error = self.error or f"connection closed before the end ({exc or 'EOF'})"
            elif self.length is None:
                self.finished = True  # a body delimited by the connection's end
            self.end = time.monotonic()
            self.done.set_result(None)

    # -- parsing ---------------------------------------------------------------

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            self.status = int(parts[1])
        except (IndexError, ValueError):
            self._fail(f"bad status line {lines[0][:80]!r}")
            return
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if "content-length" in self.headers:
            self.length = int(self.headers["content-length"])

    def _dechunk(self, data: bytes) -> None:
        raw = self.raw
        raw += data
        pos = self.pos
        while True:
            if self.skip:
                take = min(self.skip, len(raw) - pos)
                pos += take
                self.skip -= take
                if self.skip:
                    break
            if self.remaining:
                take = min(self.remaining, len(raw) - pos)
                self.body += raw[pos:pos + take]
                pos += take
                self.remaining -= take
                if self.remaining:
                    break
                self.skip = 2  # the CRLF after the chunk
                continue
            line_end = raw.find(b"\r\n", pos)
            if line_end < 0:
                break
            try:
                size = int(bytes(raw[pos:line_end]).split(b";", 1)[0], 16)
            except ValueError:
                self._fail("bad chunk size")
                break
            pos = line_end + 2
            if size == 0:
                self.finished = True
                break
            self.remaining = size
        del raw[:pos]
        self.pos = 0

    def _events(self, now: float) -> None:
        body = self.body
        start = self.scan
        while True:
            cut = body.find(b"\n\n", start)
            if cut < 0:
                break
            event = bytes(body[start:cut])
            start = cut + 2
            if event[:1] == b":":
                continue  # an SSE comment (heartbeat)
            self.event_times.append(now)
            if self.first is None and _carries_answer(event, self.mode):
                self.first = now
                self.first_index = len(self.event_times) - 1
        self.scan = start

    def _fail(self, reason: str) -> None:
        self.error = self.error or reason
        self.finished = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self, now: float) -> None:
        self.finished = True
        self.end = now
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


def _event_data(event: bytes) -> tuple[str, bytes]:
    name, data = "message", []
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data.append(line[5:].strip())
    return name, b"\n".join(data)


def _carries_answer(event: bytes, mode: str) -> bool:
    name, data = _event_data(event)
    try:
        if mode == "combo":
            return name == "message" and bool(json.loads(data).get("answer"))
        if data == b"[DONE]":
            return False
        choices = json.loads(data).get("choices") or []
        return bool(choices and (choices[0].get("delta") or {}).get("content"))
    except ValueError:
        return False


def check(stream: Stream, expected: str) -> str | None:
    """Why this stream is not a correct answer, or None."""
    if stream.error:
        return stream.error
    if stream.status != 200:
        snippet = bytes(stream.body[:160]).decode("utf-8", "replace")
        return f"HTTP {stream.status}: {snippet}"
    if not stream.headers.get("content-type", "").startswith("text/event-stream"):
        return f"content-type {stream.headers.get('content-type')!r}"
    if not stream.finished:
        return "body not finished"
    events = [_event_data(e) for e in bytes(stream.body).split(b"\n\n") if e.strip() and e[:1] != b":"]
    parts: list[str] = []
    if stream.mode == "combo":
        if not events or events[-1][0] != "done":
            return f"does not end with event: done (last: {events[-1][0] if events else None})"
        for name, data in events[:-1]:
            payload = json.loads(data)
            if name == "error":
                return f"error event {payload.get('code')}: {payload.get('message', '')[:120]}"
            if name != "message":
                return f"unexpected event {name!r}"
            if payload.get("type") != "message":
                return "message without its type field"
            parts.append(payload["answer"])
    else:
        if not events or events[-1][1] != b"[DONE]":
            return "does not end with [DONE]"
        finished = False
        for _name, data in events[:-1]:
            payload = json.loads(data)
            for choice in payload.get("choices") or []:
                parts.append((choice.get("delta") or {}).get("content") or "")
                finished = finished or choice.get("finish_reason") is not None
        if not finished:
            return "no finish_reason"
    answer = "".join(parts)
    if answer != expected:
        return f"answer differs: got {answer[:60]!r}..., {len(answer)} chars, expected {len(expected)}"
    if stream.first is None:
        return "no event carried answer text"
    return None


async def run(config: dict) -> dict:
    loop = asyncio.get_running_loop()
    host, port = "127.0.0.1", int(config["port"])
    jobs = config["jobs"]  # [{"request": str (latin-1), "expected": str}]
    deadline = float(config["timeout"])
    streams: list[Stream] = []
    waits = []

    async def one(stream: Stream) -> None:
        stream.t0 = time.monotonic()
        try:
            await loop.create_connection(lambda: stream, host, port)
        except OSError as exc:
            stream.error = f"connect failed: {exc}"
            stream.end = time.monotonic()
            if not stream.done.done():
                stream.done.set_result(None)
            return
        await stream.done

    for job in jobs:
        stream = Stream(job["request"].encode("latin-1"), config["mode"], loop.create_future())
        streams.append(stream)
    started = time.monotonic()
    waits = [loop.create_task(one(stream)) for stream in streams]
    _, pending = await asyncio.wait(waits, timeout=deadline)
    for task in pending:
        task.cancel()
    for stream in streams:
        if not stream.done.done() or not stream.end:
            stream.error = stream.error or f"not finished within {deadline:g} s"
            if stream.transport is not None:
                stream.transport.abort()
    await asyncio.sleep(0)

    results = []
    for stream, job in zip(streams, jobs):
        reason = check(stream, job["expected"])
        times = stream.event_times
        gaps = []
        if stream.first is not None:
            tail = times[stream.first_index:]
            gaps = [round(b - a, 6) for a, b in itertools.pairwise(tail)]
        results.append(
            {
                "error": reason,
                "ttfe": (stream.first - stream.t0) if stream.first is not None else None,
                "gaps": gaps,
                "events": len(times),
                "end": stream.end,
            }
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"started": started, "streams": results, "cpu_s": usage.ru_utime + usage.ru_stime}


def main() -> int:
    config = json.loads(sys.stdin.readline())
    # Imports and parsing are done before the parent says go.
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    result = asyncio.run(run(config))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
