"""Server-Sent Events: an incremental parser and the completion stream objects.

`SSEDecoder` follows the WHATWG event-stream rules: lines end in CRLF, LF or
CR (a CR at the end of one network chunk and the LF at the start of the next
are one line ending), lines starting with ":" are comments (the server's
`: keep-alive`), several `data:` lines join with "\\n", a blank line
dispatches the event, and an event cut off by the end of the stream is
dropped. Bytes are decoded incrementally, so a UTF-8 character split across
two chunks survives.

`Stream` / `AsyncStream` turn those events into typed ones (`MessageEvent`,
`ErrorEvent`, `DoneEvent`), remember what they saw so `final()` / `text()`
can return the whole answer, and close the HTTP response when iteration ends,
when the caller leaves the loop early, or on `close()` / the `with` block.
"""

from __future__ import annotations

import codecs
import inspect
import json
import re
from dataclasses import dataclass
from typing import (
    Any,
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Dict,
    Generator,
    Iterator,
    List,
    Optional,
    Type,
)

import httpx

from .errors import APIConnectionError, APITimeoutError, StreamIncompleteError
from .types import (
    Completion,
    DoneEvent,
    ErrorEvent,
    MessageEvent,
    Reference,
    StreamEvent,
)

__all__ = ["ServerSentEvent", "SSEDecoder", "parse_event", "Stream", "AsyncStream"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: Optional[str] = None
    retry: Optional[int] = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSEDecoder:
    """Feed it chunks of bytes (or text) as they arrive; it returns the events completed so far."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""  # an incomplete line
        self._skip_lf = False  # the last chunk ended in CR: a leading LF is part of that line end
        self._started = False
        self._event = ""
        self._data: List[str] = []
        self._retry: Optional[int] = None
        self.last_event_id: Optional[str] = None

    def feed(self, chunk: Any) -> List[ServerSentEvent]:
        text = self._decoder.decode(chunk) if isinstance(chunk, (bytes, bytearray)) else str(chunk)
        return self._feed_text(text)

    def flush(self) -> List[ServerSentEvent]:
        """The end of the stream: decode what is left; an unfinished event is dropped."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        self._tail = ""
        self._event, self._data, self._retry = "", [], None
        return events

    def _feed_text(self, text: str) -> List[ServerSentEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        buffer = self._tail + text
        events: List[ServerSentEvent] = []
        start = 0
        for match in _LINE_END.finditer(buffer):
            event = self._line(buffer[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
            if match.group() == "\r" and start == len(buffer):
                self._skip_lf = True
        self._tail = buffer[start:]
        return events

    def _line(self, line: str) -> Optional[ServerSentEvent]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, e.g. ": keep-alive"
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self) -> Optional[ServerSentEvent]:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self.last_event_id,
            retry=self._retry,
        )
        self._event, self._data = "", []
        return event


def parse_event(sse: ServerSentEvent) -> StreamEvent:
    """A typed event from a raw one: by the JSON's `type`, else by the SSE event name."""
    try:
        payload = json.loads(sse.data)
    except ValueError:
        payload = {"data": sse.data}
    if not isinstance(payload, dict):
        payload = {"data": payload}
    kind = payload.get("type") or sse.event
    kinds: Dict[str, Type[StreamEvent]] = {"message": MessageEvent, "error": ErrorEvent, "done": DoneEvent}
    cls = kinds.get(kind, StreamEvent)
    event = cls.from_dict(payload)
    if event.type is None:
        event.type = kind
    return event


def _connection_error(exc: Exception) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError("The completion stream timed out.")
    return APIConnectionError(f"The completion stream broke off: {exc}")


class _Accumulator:
    """What a stream has seen so far, for final() and text()."""

    def __init__(self, on_done: Optional[Callable[[DoneEvent], None]]) -> None:
        self._on_done = on_done
        self.parts: List[str] = []
        self.reference: List[Reference] = []
        self.error: Optional[ErrorEvent] = None
        self.done: Optional[DoneEvent] = None

    def record(self, event: StreamEvent) -> None:
        if isinstance(event, MessageEvent):
            self.parts.append(event.answer or "")
            if event.reference:
                self.reference = list(event.reference)
        elif isinstance(event, ErrorEvent):
            self.error = event
        elif isinstance(event, DoneEvent):
            self.done = event
            if self._on_done is not None:
                self._on_done(event)

    def completion(self, request_id: Optional[str]) -> Completion:
        if self.error is not None:
            raise self.error.to_exception(request_id=request_id)
        if self.done is None:
            raise StreamIncompleteError(
                "The stream ended before its done event (it was closed early or the connection broke)."
            )
        answer = "".join(self.parts)
        raw: Dict[str, Any] = {
            "answer": answer,
            "reference": [r.to_dict() for r in self.reference],
            "session_id": self.done.session_id,
            "message_id": self.done.message_id,
            "usage": self.done.usage.to_dict() if self.done.usage is not None else None,
            "finish_reason": self.done.finish_reason,
        }
        return Completion.from_dict(raw)


class Stream:
    """A completion stream (sync). Iterate it for typed events; or call `text()` / `final()`.

        with client.completions.create(session_id=sid, question="hi", stream=True) as stream:
            for event in stream:
                if event.type == "message":
                    print(event.answer, end="")

    Leaving the loop early (break, an exception) closes the HTTP response; the
    server keeps generating and stores the complete answer regardless.
    Iterate a stream once.
    """

    def __init__(self, response: httpx.Response, *, on_done: Optional[Callable[[DoneEvent], None]] = None) -> None:
        self.response = response
        self._acc = _Accumulator(on_done)
        self._closed = False
        self._events = self._iter_events()

    @property
    def request_id(self) -> Optional[str]:
        value: Optional[str] = self.response.headers.get("x-request-id")
        return value

    @property
    def closed(self) -> bool:
        return self._closed

    def _iter_events(self) -> Generator[StreamEvent, None, None]:
        decoder = SSEDecoder()
        try:
            for chunk in self.response.iter_bytes():
                for sse in decoder.feed(chunk):
                    event = parse_event(sse)
                    self._acc.record(event)
                    yield event
            for sse in decoder.flush():
                event = parse_event(sse)
                self._acc.record(event)
                yield event
        except Exception as exc:
            if self._closed:
                return  # the caller closed the stream; there is nothing more to read
            if isinstance(exc, (httpx.HTTPError, httpx.StreamError)):
                raise _connection_error(exc) from exc
            raise
        finally:
            self._close_response()

    def __iter__(self) -> Iterator[StreamEvent]:
        finished = False
        try:
            yield from self._events
            finished = True
        finally:
            if not finished:
                # The caller stopped early (break, exception, dropped iterator).
                self.close()

    def final(self) -> Completion:
        """Read to the end; the whole answer with its reference, session_id and message_id.

        Raises the matching ComboAPIError when the stream carried an `error`
        event, and StreamIncompleteError when it ended without `done`.
        """
        for _ in self:
            pass
        return self._acc.completion(self.request_id)

    def text(self) -> str:
        """Read to the end and return the full answer (the concatenated deltas)."""
        return self.final().answer or ""

    def _close_response(self) -> None:
        self._closed = True
        self.response.close()

    def close(self) -> None:
        """Close the HTTP response (idempotent)."""
        self._closed = True
        if inspect.getgeneratorstate(self._events) in (inspect.GEN_CREATED, inspect.GEN_SUSPENDED):
            self._events.close()
        self.response.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncStream:
    """A completion stream (async). `async for event in stream`, or `await stream.text()`.

        async with await client.completions.create(session_id=sid, question="hi", stream=True) as stream:
            async for event in stream:
                ...

    Leaving the loop early closes the HTTP response (immediately with
    `async with` or `await stream.aclose()`, else when the loop's async-generator
    finaliser runs).
    """

    def __init__(self, response: httpx.Response, *, on_done: Optional[Callable[[DoneEvent], None]] = None) -> None:
        self.response = response
        self._acc = _Accumulator(on_done)
        self._closed = False
        self._events = self._iter_events()

    @property
    def request_id(self) -> Optional[str]:
        value: Optional[str] = self.response.headers.get("x-request-id")
        return value

    @property
    def closed(self) -> bool:
        return self._closed

    async def _iter_events(self) -> AsyncGenerator[StreamEvent, None]:
        decoder = SSEDecoder()
        try:
            async for chunk in self.response.aiter_bytes():
                for sse in decoder.feed(chunk):
                    event = parse_event(sse)
                    self._acc.record(event)
                    yield event
            for sse in decoder.flush():
                event = parse_event(sse)
                self._acc.record(event)
                yield event
        except Exception as exc:
            if self._closed:
                return
            if isinstance(exc, (httpx.HTTPError, httpx.StreamError)):
                raise _connection_error(exc) from exc
            raise
        finally:
            self._closed = True
            await self.response.aclose()

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        finished = False
        try:
            async for event in self._events:
                yield event
            finished = True
        finally:
            if not finished:
                await self.aclose()

    async def final(self) -> Completion:
        """Read to the end; see `Stream.final()`."""
        async for _ in self:
            pass
        return self._acc.completion(self.request_id)

    async def text(self) -> str:
        """Read to the end and return the full answer."""
        return (await self.final()).answer or ""

    async def aclose(self) -> None:
        """Close the HTTP response (idempotent)."""
        self._closed = True
        events: Any = self._events
        if not events.ag_running and events.ag_frame is not None:  # neither running nor finished
            await events.aclose()
        await self.response.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
