"""Server-sent events, the way LLM APIs stream: split a byte stream into the `data` of its events."""

from __future__ import annotations

MAX_EVENT_BYTES = 8 << 20  # one event; real ones are a few hundred bytes


class SSEParser:
    """Splits a server-sent-events byte stream into the `data` of its events.

    Fed whole network reads, returns a list per read rather than yielding
    per event, so the per-token cost is a bytes split and a list append.
    """

    __slots__ = ("_buffer", "_more", "_more_size", "_data", "_size")

    def __init__(self) -> None:
        self._buffer = b""  # the start of a line not ended yet
        self._more: list[bytes] = []  # later reads of that line, none with a line end
        self._more_size = 0
        self._data: list[bytes] = []
        self._size = 0  # bytes in _data: an event of endless `data:` lines is refused too

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._buffer:
            if 10 not in chunk and 13 not in chunk:  # no LF, no CR (an int is looked for by memchr: fast)
                # Still inside one line: its pieces are joined once, when it
                # ends, so a long line costs time in proportion to its length.
                self._more.append(chunk)
                self._more_size += len(chunk)
                if len(self._buffer) + self._more_size > MAX_EVENT_BYTES:
                    raise ValueError("an event in the stream exceeds the size limit")
                return []
            if self._more:
                chunk = b"".join([self._buffer, *self._more, chunk])
                self._more, self._more_size = [], 0
            else:
                chunk = self._buffer + chunk
            if len(chunk) > MAX_EVENT_BYTES:
                raise ValueError("an event in the stream exceeds the size limit")
        held = b""
        if 13 in chunk:  # a CR
            # CRLF and a lone CR end a line as LF does. A CR that ends this
            # read may be the first half of a CRLF: it waits for the next.
            if chunk[-1:] == b"\r":
                chunk, held = chunk[:-1], b"\r"
            chunk = chunk.replace(b"\r\n", b"\n")
            if 13 in chunk:
                chunk = chunk.replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        self._buffer = lines.pop() + held
        events: list[bytes] = []
        for line in lines:
            if line:
                # Only `data:` matters; `event:`, `id:` and `: keep-alive`
                # comment lines are ignored.
                if line[:5] == b"data:":
                    piece = line[6:] if line[5:6] == b" " else line[5:]
                    self._data.append(piece)
                    self._size += len(piece)
                    if self._size > MAX_EVENT_BYTES:
                        raise ValueError("an event in the stream exceeds the size limit")
            elif self._data:
                data = self._data
                events.append(data[0] if len(data) == 1 else b"\n".join(data))
                self._data = []
                self._size = 0
        return events

    def finish(self) -> list[bytes]:
        """Events left when the body ends without a final blank line."""
        return self.feed(b"\n\n") if self._buffer or self._data else []
