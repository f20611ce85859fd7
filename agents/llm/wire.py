"""A lean HTTP/1.1 client for one kind of exchange: POST a JSON body, stream the answer back.

The OpenAI-compatible provider sends its streamed completions through this
rather than through httpx when it can (see openai_compat): at hundreds of
concurrent streams the general-purpose stack costs more CPU than everything
else on the path together (about 0.5 ms per request in the connection pool,
which also rescans every pooled connection on each request, and a dozen
Python calls per network read through anyio and h11). Here a request is one
`transport.write` on a pooled keep-alive connection, and a network read is
de-chunked and split into server-sent events inside `data_received`, so a read
that carries several events costs one wake-up of the reader.

Scope, on purpose: HTTP/1.1 over TCP or TLS, keep-alive, chunked, sized and
close-delimited bodies, gzip/deflate (though `identity` is asked for). No
proxies, redirects or HTTP/2: the caller falls back to the SDK's own client
for those.

Failures are plain exceptions for the caller to classify: `OSError` (and
`socket.gaierror`) while connecting, `TimeoutError` when connecting, the
answer's head or any gap between two reads takes longer than the timeout,
`ConnectionError` when the connection ends mid-body, `ProtocolError` for a
malformed response.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Callable

from .sse import SSEParser

_MAX_HEAD = 64 << 10
_MAX_BODY = 8 << 20  # a non-streamed body (an error or a whole answer)
_PAUSE_EVENTS = 4096  # stop reading when this many events wait for the reader


class TLSContextError(Exception):
    """The TLS context for https upstreams could not be made (its CA certificates did not load)."""


class ProtocolError(ValueError):
    """The server's answer is not well-formed HTTP/1.1."""


class Response:
    """The head of an answer; the body is read through its `Exchange`."""

    __slots__ = ("status", "headers", "reason")

    def __init__(self, status: int, reason: str, headers: dict[str, str]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-cased names; repeated ones joined with ", "


class Exchange(asyncio.Protocol):
    """One connection, used by one request at a time (then returned to its pool)."""

    def __init__(self, pool: Pool, key: tuple, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self._reset()

    def _reset(self) -> None:
        self._buffer = bytearray()  # raw bytes not parsed yet
        self._response: Response | None = None
        self._framing = ""  # "chunked", "length" or "close"
        self._left = 0  # bytes left in the current chunk or sized body
        self._chunk_crlf = False  # a chunk's data ended, its CRLF is still due
        self._trailers = False  # after the last chunk: skipping trailer lines
        self._decoder = None
        self._sse: SSEParser | None = None
        self._body = bytearray()
        self._events: list[bytes] = []
        self._complete = False
        self._keep_alive = True
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._got_bytes = False
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._timeout = 0.0
        self._paused = False
        self._stream_sse = False
        self._busy = False  # a request is in flight (bytes while idle are a protocol error)

    # -- the exchange, as the provider drives it --------------------------------

    def send(self, data: bytes, timeout: float, stream_sse: bool) -> None:
        """Write a whole request. `stream_sse`: split a text/event-stream answer into events."""
        self._stream_sse = stream_sse
        self._busy = True
        self._timeout = timeout
        self._last = self.loop.time()
        self._timer = self.loop.call_at(self._last + timeout, self._check_timeout)
        self.transport.write(data)

    async def response(self) -> Response:
        """Wait for the answer's head."""
        while self._response is None:
            await self._wait()
        return self._response

    async def events(self) -> list[bytes]:
        """The `data` of the events received since the last call; [] once the body has ended."""
        while True:
            if self._events:
                events, self._events = self._events, []
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return events
            if self._complete:
                return self._sse.finish() if self._sse is not None else []
            await self._wait()

    async def read(self) -> bytes:
        """The whole (non-event) body."""
        while not self._complete:
            await self._wait()
        return bytes(self._body)

    def release(self) -> None:
        """Done with this exchange: back to the pool if the body was read to its end."""
        self._cancel_timer()
        if self._complete and self._keep_alive and self._error is None and not self.closed:
            self._reset()
            self.pool._put(self)
        else:
            self.close()

    def close(self) -> None:
        self._cancel_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- internals ---------------------------------------------------------------

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None and not self._complete:
            self._error = error
        self._cancel_timer()
        self._wake()
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_timeout(self) -> None:
        # One timer per exchange, moved forward only when it fires: reads
        # just note their time, so a token costs no timer operations.
        self._timer = None
        if self._complete or self._error is not None:
            return
        due = self._last + self._timeout
        if self.loop.time() >= due:
            self._fail(TimeoutError(f"no data for {self._timeout:g} s"))
        else:
            self._timer = self.loop.call_at(due, self._check_timeout)

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.pool._forget(self)
        if self._complete or self._error is not None:
            return
        if self._response is not None and self._framing == "close":
            self._finish_body()
            return
        if self._response is None and not self._got_bytes and self.reused:
            self._fail(_StaleConnection("the pooled connection was closed by the server"))
            return
        self._fail(ConnectionError(f"the connection was closed before the answer ended ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        if not self._busy:
            # Nothing was asked on this (pooled) connection: whatever this is,
            # it must not be read as the answer to the next request.
            self.pool._forget(self)
            self.close()
            return
        self._last = self.loop.time()
        self._got_bytes = True
        try:
            if self._response is None:
                self._buffer += data
                if not self._parse_head():
                    return
                data = bytes(self._buffer)
                self._buffer.clear()
            if self._complete:
                if data:
                    self._keep_alive = False  # bytes after the body: do not reuse
            elif data:
                self._body_bytes(data)
        except ValueError as exc:  # ProtocolError, or an event over the size limit
            self._fail(exc if isinstance(exc, ProtocolError) else ProtocolError(str(exc)))
            return
        except zlib.error as exc:
            self._fail(ProtocolError(f"undecodable compressed body: {exc}"))
            return
        if self._events and len(self._events) > _PAUSE_EVENTS and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self):
        return False  # close the transport; connection_lost does the rest

    # -- parsing ---------------------------------------------------------------------

    def _parse_head(self) -> bool:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    raise ProtocolError("the response head is too large")
                return False
            head = bytes(self._buffer[:end]).decode("latin-1")
            del self._buffer[: end + 4]
            lines = head.split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
            status = int(parts[1])
            if 100 <= status < 200:
                continue  # 100 Continue and friends: the real head follows
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ProtocolError("a malformed header line")
                name = name.strip().lower()
                value = value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            self._start_body(Response(status, parts[2] if len(parts) > 2 else "", headers), parts[0])
            return True

    def _start_body(self, response: Response, version: str) -> None:
        headers = response.headers
        connection = headers.get("connection", "").lower()
        self._keep_alive = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = _Deflate()
        elif encoding not in ("", "identity"):
            raise ProtocolError(f"unsupported content-encoding {encoding!r}")
        if self._stream_sse and headers.get("content-type", "").lower().startswith("text/event-stream"):
            self._sse = SSEParser()
        self._response = response
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._framing = "chunked"
        elif "content-length" in headers:
            try:
                self._left = int(headers["content-length"])
            except ValueError:
                raise ProtocolError("a malformed content-length") from None
            self._framing = "length"
            if self._left == 0 or response.status in (204, 304):
                self._finish_body()
        elif response.status in (204, 304):
            self._finish_body()
        else:
            self._framing = "close"
            self._keep_alive = False

    def _body_bytes(self, data: bytes) -> None:
        framing = self._framing
        if framing == "length":
            if len(data) >= self._left:
                extra = len(data) > self._left
                self._payload(data[: self._left])
                self._left = 0
                if extra:
                    self._keep_alive = False
                self._finish_body()
            else:
                self._left -= len(data)
                self._payload(data)
        elif framing == "chunked":
            self._dechunk(data)
        else:
            self._payload(data)

    def _dechunk(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer:
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        pos, size = 0, len(data)
        pieces = []
        while pos < size:
            if self._left:
                take = min(self._left, size - pos)
                pieces.append(data[pos: pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._chunk_crlf = True
                continue
            if self._chunk_crlf:
                if size - pos < 2:
                    break
                if data[pos: pos + 2] != b"\r\n":
                    raise ProtocolError("a chunk does not end with CRLF")
                pos += 2
                self._chunk_crlf = False
                continue
            end = data.find(b"\r\n", pos)
            if end < 0:
                if size - pos > 1024:
                    raise ProtocolError("a malformed chunk size line")
                break
            line = data[pos:end]
            pos = end + 2
            if self._trailers:
                if not line:
                    self._trailers = False
                    if pos < size:
                        self._keep_alive = False
                    if pieces:
                        self._payload(b"".join(pieces))
                    self._finish_body()
                    return
                continue
            try:
                length = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError("a malformed chunk size line") from None
            if length == 0:
                self._trailers = True
            else:
                self._left = length
        if pos < size:
            buffer += data[pos:]
        if pieces:
            self._payload(pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def _payload(self, data: bytes) -> None:
        if not data:
            return
        if self._decoder is not None:
            data = self._decoder.decompress(data)
        if self._sse is not None:
            events = self._sse.feed(data)
            if events:
                self._events.extend(events)
        else:
            self._body += data
            if len(self._body) > _MAX_BODY:
                raise ProtocolError("the response body is too large")

    def _finish_body(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            self._decoder = None
            if tail:
                self._payload(tail)
        self._complete = True
        self._cancel_timer()
        self._wake()


class _Deflate:
    """'deflate' is zlib-wrapped by the standard and raw by many servers: accept both."""

    def __init__(self) -> None:
        self._inner = None
        self._first = b""

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            try:
                inner = zlib.decompressobj()
                out = inner.decompress(data)
            except zlib.error:
                inner = zlib.decompressobj(-zlib.MAX_WBITS)
                out = inner.decompress(data)
            self._inner = inner
            return out
        return self._inner.decompress(data)

    def flush(self) -> bytes:
        return self._inner.flush() if self._inner is not None else b""


class _StaleConnection(ConnectionError):
    """A reused keep-alive connection was closed before any byte came back: retry once."""


class Pool:
    """Keep-alive connections per (scheme, host, port), for one event loop.

    Idle connections are a stack (the most recently used first, the ones the
    server is least likely to have dropped); a connection that closes while
    idle removes itself, so taking one is O(1) however many are pooled.
    """

    def __init__(
        self,
        *,
        connect_timeout: float,
        max_idle: int = 1000,
        keepalive_expiry: float = 30.0,
        ssl_context_factory: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._ssl_factory = ssl_context_factory
        self._ssl: ssl.SSLContext | None = None
        self._ssl_making: asyncio.Future[ssl.SSLContext] | None = None
        self._idle: dict[tuple, dict[Exchange, None]] = {}
        self._idle_count = 0
        self.loop = asyncio.get_running_loop()

    async def request(
        self, scheme: str, host: str, port: int, data: bytes, timeout: float, stream_sse: bool
    ) -> tuple[Exchange, Response]:
        """Send `data` (a whole request) and wait for the answer's head.

        A pooled connection that turns out to be closed before any byte of
        the answer came back is replaced by a new one, once, as other HTTP
        clients do for this keep-alive race. The caller must `release()` the
        exchange when done with it, or `close()` it.
        """
        key = (scheme, host, port)
        conn = self._take(key)
        if conn is not None:
            conn.send(data, timeout, stream_sse)
            try:
                return conn, await conn.response()
            except _StaleConnection:
                pass
            except BaseException:
                conn.close()
                raise
        conn = await self._connect(key)
        conn.send(data, timeout, stream_sse)
        try:
            return conn, await conn.response()
        except BaseException:
            conn.close()
            raise

    def _take(self, key: tuple) -> Exchange | None:
        idle = self._idle.get(key)
        now = self.loop.time()
        while idle:
            conn = next(reversed(idle))
            del idle[conn]
            self._idle_count -= 1
            if conn.closed:
                continue
            if now - conn.idle_since > self.keepalive_expiry:
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    async def _connect(self, key: tuple) -> Exchange:
        scheme, host, port = key
        ssl_context = await self._ssl_context() if scheme == "https" else None
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await self.loop.create_connection(
                lambda: Exchange(self, key, self.loop), host, port, ssl=ssl_context,
                server_hostname=host if ssl_context else None,
            )
        return conn

    async def _ssl_context(self) -> ssl.SSLContext:
        """The pool's TLS context, made once, in a worker thread.

        Loading the CA bundle takes 50-90 ms, in OpenSSL with the GIL released:
        on the event loop it would stall every running stream on the first
        https question. The questions that arrive meanwhile wait for the same one.
        """
        if self._ssl is None:
            if self._ssl_making is None:
                self._ssl_making = asyncio.ensure_future(
                    asyncio.to_thread(self._ssl_factory or ssl.create_default_context)
                )
            making = self._ssl_making
            try:
                context = await asyncio.shield(making)
            except BaseException as err:
                failed = making.done() and (making.cancelled() or making.exception() is not None)
                if failed and self._ssl_making is making:
                    self._ssl_making = None  # it failed: the next connection tries again
                if failed and isinstance(err, Exception):
                    raise TLSContextError(str(err)) from err
                raise
            self._ssl = context
        return self._ssl

    def _put(self, conn: Exchange) -> None:
        if self._idle_count >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.key, {})[conn] = None
        self._idle_count += 1

    def _forget(self, conn: Exchange) -> None:
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            del idle[conn]
            self._idle_count -= 1

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in list(idle):
                conn.close()
        self._idle.clear()
        self._idle_count = 0
