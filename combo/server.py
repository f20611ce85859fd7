"""How the product runs daphne: `python -m combo.server <daphne options>`.

It is daphne, with its own command line, plus what streams need that
daphne's `-b/-p` options do not give:

- A deep listen backlog. Twisted's default is 50 connections; a burst of
  clients beyond that overflows the kernel's accept queue, and the dropped
  handshakes are retried by the clients only after a second or more.
- TCP_NODELAY on every accepted connection. Twisted leaves Nagle's algorithm
  on, so a small write (an SSE frame) that follows another one still in
  flight waits for the client's ACK, which the client delays by up to 40 ms:
  measured, half of the time to the first event at 50 concurrent streams.
- A cache in front of Twisted's Content-Type parser, which builds an
  `email.message.EmailMessage` for every request with a body (~70 us for
  `application/json`, a pure function of the header's bytes).
- Writes sent at once when nothing is waiting to be sent, as asyncio's own
  transports do. Twisted's TCP transport buffers every write until the
  reactor reports the socket writable: per SSE frame an epoll registration,
  a loop turn, the send and an epoll deregistration (profiled: about a
  third of the event loop's time at 50 streams).

- The cyclic garbage collector kept off the stream path (`tune_gc`, run
  once daphne has loaded the application, before it serves): what was
  loaded at start (Django, the apps, Twisted: about 127,000 objects) is
  frozen out of every collection, and the youngest generation is collected
  after 10,000 new container objects rather than 700. With the defaults, a burst of 500
  streams ran some 150 young and 13 middle collections and one full one
  (74 to 126 ms, the event loop stopped) in its first seconds; measured, the
  median time to the first event at N=500 fell by about a third.

- A response that says `Connection: close` (a completion refused while the
  process drains after SIGTERM, a body refused for its size) closes its
  connection once sent, as RFC 9112 asks; Twisted would keep it open.

- daphne given twisted.web.http itself, not Twisted's deprecation proxy of
  it, which cost about 2 us on every body chunk daphne writes.

- No form parsing inside Twisted (`_no_form_parsing`). Twisted parses every
  POST body sent as multipart/form-data or urlencoded into `request.args`,
  on the event loop, before daphne hands the body on untouched; daphne never
  reads `args`. For a 19 MB file upload that stopped every other request and
  stream for a quarter of a second or more, and a malformed multipart body
  got a bare `400 Bad Request` from Twisted instead of the API's envelope.
  Django parses uploads itself, in the request's thread.

- Requests broken at the HTTP level answered in the API's envelope
  (`_enveloped_protocol_errors`), with `Connection: close` and an
  `X-Request-Id`. Twisted closed the connection without a word on a request
  line or header line over 16 KiB, and answered every other broken request
  (headers over 16 KiB together, more than 500 of them, a malformed request
  line or header, bad body framing) with a bare `400 Bad Request`; daphne
  answered bytes outside ASCII in the URL and control bytes in a header with
  an HTML page and kept the connection open. Now: 414 (10071) for an
  over-long request line, 431 (10072) for header fields over the limits,
  400 (10004) for the rest. The rest of a refused request is read and
  dropped for up to `LINGER_SECONDS` before the connection closes, so the
  client is not reset before it reads the answer. Only the error paths are
  replaced: a well-formed request runs no new code. daphne's own HTML pages
  for an application that raised before it answered (500) or did not answer
  within `--http-timeout` (503; Combo sets no such timeout, an operator may)
  are the envelope too: 20001 and 20002, no traceback (daphne logs it). One
  that raised after its answer began has its connection closed, so the client
  sees the response cut short (daphne's page there raised out of its
  application check and stopped it for the whole process).

- stdout and stderr (the access log, the logs) written from a thread of
  their own (combo.output), so a log reader that stalls never stops a request.

- A response finished as its body reaches its `Content-Length`
  (`_finish_when_the_body_is_complete`), so a client that closes the moment
  it has the body still gets its access-log line.

- daphne's access log as `LOG_FORMAT` says (`_access_log_format`): its own
  text lines, or with `json` one JSON object a request
  (combo.logformat.JsonAccessLog), carrying the response's `X-Request-Id`,
  noted as daphne finishes the response (per request, not per chunk).

`manage.py serve`, the benchmark and the live tests all start the server
through `daphne_command()`.
"""

from __future__ import annotations

import logging
import sys
import types

logger = logging.getLogger("combo.server")

LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn

# The request line, and the request line plus all header fields, may each be
# at most this long (bytes, line ends not counted): Twisted's own defaults,
# set here because the API documents them.
REQUEST_HEAD_BYTES = 16384
MAX_HEADER_FIELDS = 500
# How long the rest of a refused request is read and dropped before closing.
LINGER_SECONDS = 5.0


def endpoint(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> str:
    """A Twisted endpoint description for daphne's `-e`."""
    host = host.strip("[]").replace(":", r"\:")
    return f"tcp:port={int(port)}:interface={host}:backlog={int(backlog)}"


def daphne_command(
    host: str | None = None,
    port: int | None = None,
    *,
    fd: int | None = None,
    verbosity: int = 1,
    application: str = "combo.asgi:application",
) -> list[str]:
    """The command line of one server process: on host:port, or on an inherited socket `fd`.

    No --proxy-headers: daphne would then take the left-most X-Forwarded-For
    from any client, so anyone could pick their own IP (and rate-limit budget).
    Combo reads that header itself, only from COMBO_TRUSTED_PROXIES
    (combo.ratelimit.client_ip); Django reads X-Forwarded-Proto (BEHIND_TLS_PROXY).
    """
    command = [sys.executable, "-m", "combo.server", "-v", str(min(verbosity, 1))]
    if fd is not None:
        # `manage.py serve` listens itself (backlog LISTEN_BACKLOG) and shares the socket.
        command += ["--fd", str(fd)]
    else:
        command += ["-e", endpoint(host or "127.0.0.1", port or 9380)]
    return command + [application]


def _install_nodelay() -> None:
    from daphne import server as daphne_server
    from daphne.http_protocol import HTTPFactory

    class NoDelayHTTPFactory(HTTPFactory):
        def buildProtocol(self, addr):
            protocol = super().buildProtocol(addr)
            make_connection = protocol.makeConnection

            def makeConnection(transport):  # noqa: N802 - Twisted's name
                set_nodelay = getattr(transport, "setTcpNoDelay", None)
                if set_nodelay is not None:
                    try:
                        set_nodelay(True)
                    except OSError:
                        pass  # not a TCP socket after all: nothing to tune
                make_connection(transport)

            protocol.makeConnection = makeConnection
            return protocol

    daphne_server.HTTPFactory = NoDelayHTTPFactory


def _install_direct_writes() -> None:
    """Accepted TCP connections send a write at once when their buffer is empty.

    What the kernel does not take at once is buffered by Twisted as before (it
    is sent, in order, when the socket is writable), and a write that fails
    goes through Twisted's own path, which meets the error and closes the
    connection as it always did. TLS connections are left as they are.
    """
    from twisted.internet import tcp

    if getattr(tcp.Server, "_combo_direct_writes", False):
        return
    buffered_write = tcp.Server.write

    def write(self, data):
        if (
            self.TLS or not data or not self.connected or self.disconnecting or self._writeDisconnected
            or self._tempDataBuffer or len(self.dataBuffer) > self.offset
            or not isinstance(data, bytes)
        ):
            return buffered_write(self, data)  # Twisted's own checks and buffering
        try:
            sent = self.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return buffered_write(self, data)
        if sent < len(data):
            buffered_write(self, data[sent:])

    def write_sequence(self, iovec):
        if self.TLS:
            return tcp.Connection.writeSequence(self, iovec)
        try:
            data = b"".join(iovec)
        except TypeError:
            return tcp.Connection.writeSequence(self, iovec)  # which says what is wrong
        write(self, data)

    tcp.Server.write = write
    tcp.Server.writeSequence = write_sequence
    tcp.Server._combo_direct_writes = True


# (young, middle, old) thresholds of the cyclic collector in a server process.
GC_THRESHOLDS = (10_000, 50, 100)


def tune_gc() -> None:
    """Freeze what is loaded now out of future collections, and collect the young generation less often.

    Reference counting still frees almost every object at once; the cyclic
    collector only finds garbage in reference cycles, which then lives a
    little longer (at most 10,000 container allocations) before it is freed.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _plain_twisted_http_module() -> None:
    """Give daphne twisted.web.http itself rather than Twisted's deprecation proxy of it.

    daphne writes every body chunk as `http.Request.write(...)`; through the
    proxy each such attribute read costs about 2 us (a per-read wrapper
    object and a deprecation lookup), which at thousands of SSE frames a
    second is CPU the event loop needs. daphne reads no deprecated name.
    """
    from daphne import http_protocol

    try:
        module = object.__getattribute__(http_protocol.http, "_module")
    except AttributeError:  # not a proxy: nothing to do
        return
    if isinstance(module, types.ModuleType):
        http_protocol.http = module


def _tune_gc_before_serving() -> None:
    from daphne.server import Server

    run = Server.run

    def run_tuned(self):
        tune_gc()
        return run(self)

    Server.run = run_tuned


def _no_form_parsing() -> None:
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "_combo_no_form_parsing", False):
        return
    init = WebRequest.__init__

    def __init__(self, *args, **kwargs):  # noqa: N807 - wraps daphne's
        init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False  # read by twisted.web.http.Request.requestReceived

    WebRequest.__init__ = __init__
    WebRequest._combo_no_form_parsing = True


def _cache_content_type_parsing() -> None:
    import functools

    from twisted.web import http

    parse = getattr(http, "_parseContentType", None)
    if callable(parse) and not hasattr(parse, "cache_info"):
        http._parseContentType = functools.lru_cache(maxsize=256)(parse)


def _reason_phrases() -> None:
    """Status lines for the codes Twisted's table lacks ("HTTP/1.1 429 Unknown Status" otherwise)."""
    from http import HTTPStatus

    from twisted.web import http

    for status in HTTPStatus:
        http.RESPONSES.setdefault(status.value, status.phrase.encode("ascii"))


def _refusal(error, message: str | None, headers) -> tuple[str, bytes]:
    """(request id, envelope body) of a refusal made before the application: the client's
    X-Request-Id when it sent an acceptable one among `headers`, else a new one."""
    import json

    from combo.api.envelope import error_body
    from combo.api.middleware import new_request_id

    incoming = headers.getRawHeaders(b"x-request-id") if headers is not None else None
    request_id = new_request_id(incoming[0].decode("latin-1") if incoming else None)
    return request_id, json.dumps(error_body(error, message, request_id), separators=(",", ":")).encode()


# RFC 9110's reason phrases (Python 3.11 still says "Request-URI Too Long" for 414).
_REFUSAL_REASONS = {400: b"Bad Request", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


def _access_log(channel, status: int, size: int, request_id: str) -> None:
    """The refusal's line in daphne's access log, as a served request gets one."""
    try:
        peer = channel.transport.getPeer()
        method = getattr(channel, "_command", b"-").decode("ascii", "replace")
        path = getattr(channel, "_path", b"-")[:200].decode("ascii", "backslashreplace")
        channel.factory.server.log_action("http", "complete", {
            "path": path, "status": status, "method": method, "client": f"{peer.host}:{peer.port}",
            "time_taken": 0.0, "size": size, "request_id": request_id,
        })
    except Exception:  # noqa: BLE001 - a log line must never cost the answer
        pass


def _refuse_and_close(channel, error, message: str) -> None:
    """Answer `error` on a channel whose request could not be parsed, then close it.

    What else the client sends is read and dropped: closing a socket with
    unread data resets the connection, and a client still sending its
    oversized request could lose the answer to that reset. The write side is
    shut once the answer is out; the connection ends when the client closes
    it, or after LINGER_SECONDS.
    """
    from twisted.internet import reactor

    if getattr(channel, "_combo_refused", False):
        return
    channel._combo_refused = True
    request = channel.requests[-1] if channel.requests else None
    request_id, body = _refusal(error, message, request.requestHeaders if request is not None else None)
    head = (
        b"HTTP/1.1 %d %s\r\n" % (error.status, _REFUSAL_REASONS[error.status])
        + b"Content-Type: application/json\r\n"
        + b"Content-Length: %d\r\n" % len(body)
        + b"Cache-Control: no-store\r\n"
        + b"X-Request-Id: " + request_id.encode("ascii") + b"\r\n"
        + b"Connection: close\r\n\r\n"
    )

    def discard(*args):
        return None

    # Parse nothing more: not the rest of this line's buffer, nor what follows.
    channel.dataReceived = channel.lineReceived = channel.rawDataReceived = discard
    channel.clearLineBuffer()
    transport = channel.transport
    transport.write(head + body)
    _access_log(channel, error.status, len(body), request_id)
    channel._networkProducer.unregisterProducer()  # as HTTPChannel.loseConnection does
    half_close = getattr(transport, "loseWriteConnection", None)
    if half_close is None:  # a transport that cannot shut one side only (TLS)
        transport.loseConnection()
        return
    half_close()
    transport.resumeProducing()  # reading, to drop the rest of the request
    abort = getattr(transport, "abortConnection", transport.loseConnection)
    reactor.callLater(LINGER_SECONDS, lambda: None if transport.disconnected else abort())


def _enveloped_protocol_errors() -> None:
    from daphne.http_protocol import WebRequest
    from twisted.web import http

    from combo.errors import ErrorCode

    channel_class = http.HTTPChannel
    if getattr(channel_class, "_combo_enveloped_errors", False):
        return
    channel_class.MAX_LENGTH = REQUEST_HEAD_BYTES
    channel_class.totalHeadersSize = REQUEST_HEAD_BYTES
    channel_class.maxHeaders = MAX_HEADER_FIELDS
    request_line_too_long = (
        f"The request line (method, URL and version) is over the limit of {REQUEST_HEAD_BYTES:,} bytes."
    )
    headers_too_large = (
        f"The request line and header fields are over the limit of {REQUEST_HEAD_BYTES:,} bytes together, "
        "or one header field is."
    )

    def line_length_exceeded(self, line):
        # A line over MAX_LENGTH: the request line while it is awaited, else a header field.
        if self._HTTPChannel__first_line:
            _refuse_and_close(self, ErrorCode.URI_TOO_LONG, request_line_too_long)
        else:
            _refuse_and_close(self, ErrorCode.HEADERS_TOO_LARGE, headers_too_large)

    def respond_to_bad_request(self):
        if self._receivedHeaderSize > self.totalHeadersSize:
            if self._HTTPChannel__first_line:
                _refuse_and_close(self, ErrorCode.URI_TOO_LONG, request_line_too_long)
            else:
                _refuse_and_close(self, ErrorCode.HEADERS_TOO_LARGE, headers_too_large)
        elif self._receivedHeaderCount > self.maxHeaders:
            _refuse_and_close(
                self, ErrorCode.HEADERS_TOO_LARGE, f"The request has more than {MAX_HEADER_FIELDS} header fields."
            )
        elif not hasattr(self, "_command"):  # set once the request line is parsed
            _refuse_and_close(
                self, ErrorCode.BAD_REQUEST,
                "The request line is not valid HTTP/1.1: it must be `METHOD /target HTTP/1.1`, the target in "
                "printable ASCII (percent-encode other bytes).",
            )
        else:
            _refuse_and_close(
                self, ErrorCode.BAD_REQUEST,
                "The request is not valid HTTP/1.1: a malformed header field, Content-Length or chunked body.",
            )

    channel_class.lineLengthExceeded = line_length_exceeded
    channel_class._respondToBadRequestAndDisconnect = respond_to_bad_request
    channel_class._combo_enveloped_errors = True

    # daphne's own answers to a parsed request (its basic_error, an HTML page): its
    # refusals (400), an application that raised before it answered (500; daphne
    # has logged the traceback), and one that did not answer within --http-timeout (503).
    messages = {
        "Invalid characters in path": "The URL's path has bytes outside ASCII; percent-encode them.",
        "Invalid query string": "The URL's query string has bytes outside ASCII; percent-encode them.",
        "Invalid header name": "A header field's name has characters HTTP does not allow.",
        "Invalid header value": "A header field's value has characters HTTP does not allow.",
    }
    basic_error = WebRequest.basic_error

    def enveloped_basic_error(self, status, status_text, body):
        if status == 400:
            error, message = ErrorCode.BAD_REQUEST, messages.get(body)
        elif status == 500:
            error, message = ErrorCode.INTERNAL_ERROR, None
        elif status == 503:
            error, message = ErrorCode.SERVICE_UNAVAILABLE, (
                f"The server did not answer within its time limit ({self.server.http_timeout:g} seconds). "
                "The request may still have been carried out: check before you send a change again."
            )
        else:
            return basic_error(self, status, status_text, body)
        if self._response_started:
            # Too late for an answer: end the connection, so the client sees the response cut
            # short rather than waiting for the rest. daphne's own page would raise here ("HTTP
            # response has already been started") out of its once-a-second application check,
            # which then never ran again: no failed application answered, none reaped.
            logger.warning("application failed after its response started; connection closed (%s)", status)
            self.loseConnection()
            return None
        request_id, content = _refusal(error, message, self.requestHeaders)
        if status == 400:
            self.channel.persistent = False  # Twisted closes the connection once this answer is sent
            self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        self.handle_reply({
            "type": "http.response.start",
            "status": error.status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content)),
                        (b"cache-control", b"no-store"), (b"x-request-id", request_id.encode("ascii"))],
        })
        self.handle_reply({"type": "http.response.body", "body": content})

    WebRequest.basic_error = enveloped_basic_error


def _close_when_the_response_says_so() -> None:
    """A response with `Connection: close` closes its connection once sent, as RFC 9112 asks of a server.

    Twisted keeps an HTTP/1.1 connection open unless the request said
    `close`, whatever the application's response says. The check runs once
    per response, when its head is written, never per body chunk.
    """
    from twisted.web import http

    if getattr(http.HTTPChannel, "_combo_close_when_asked", False):
        return
    write_headers = http.HTTPChannel.writeHeaders

    def writeHeaders(self, version, code, reason, headers):  # noqa: N802 - Twisted's name
        if self.persistent and isinstance(headers, http.Headers):
            connection = headers.getRawHeaders(b"connection")
            if connection and any(b"close" in value.lower() for value in connection):
                self.persistent = False  # requestDone then loses the connection
        return write_headers(self, version, code, reason, headers)

    http.HTTPChannel.writeHeaders = writeHeaders
    http.HTTPChannel._combo_close_when_asked = True


def _finish_when_the_body_is_complete() -> None:
    """A response whose body has reached its Content-Length is finished then, not at the next message.

    An application may send its whole body with `more_body` and then an
    empty last message (Django through a2wsgi does). A client that has all
    the Content-Length's bytes may close at once (curl, httpx.get): the last
    message then found the connection gone, so daphne never finished the
    response and never wrote its access-log line. Finished as its last byte
    is written, the empty message that follows is ignored (daphne's own
    check for a finished response). A body without Content-Length (the SSE
    stream) is untouched: one attribute read per chunk.
    """
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "_combo_finish_when_complete", False):
        return
    handle_reply = WebRequest.handle_reply

    def handle_reply_finishing(self, message):
        kind = message.get("type")
        if kind == "http.response.body" and message.get("more_body"):
            length = self.__dict__.get("_combo_length")
            if length is not None and self.sentLength + len(message.get("body", b"")) >= length:
                message = {**message, "more_body": False}
        handle_reply(self, message)
        if kind == "http.response.start" and self._response_started:
            declared = self.responseHeaders.getRawHeaders(b"content-length")
            if declared and self.method != b"HEAD":
                try:
                    self._combo_length = int(declared[0])
                except ValueError:
                    pass

    WebRequest.handle_reply = handle_reply_finishing
    WebRequest._combo_finish_when_complete = True


# The X-Request-Id of the response daphne finished last, for its access log line
# (LOG_FORMAT=json). daphne writes that line right after it finishes the
# response, on the reactor's thread, with no other response finished between.
_finished = {"request_id": None}


def _note_request_ids() -> None:
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "_combo_notes_request_ids", False):
        return
    finish = WebRequest.finish

    def finish_noted(self):
        try:
            finish(self)
        finally:
            ids = self.responseHeaders.getRawHeaders(b"x-request-id")
            _finished["request_id"] = ids[0].decode("latin-1") if ids else None

    WebRequest.finish = finish_noted
    WebRequest._combo_notes_request_ids = True


def _finished_request_id() -> str | None:
    request_id, _finished["request_id"] = _finished["request_id"], None
    return request_id


def _access_log_format() -> None:
    """daphne's access log as LOG_FORMAT says: daphne's own lines for text, JSON objects for json.

    daphne builds its access log once the application (and with it Django's
    settings) is loaded, before it serves: the choice is made then.
    """
    from daphne import cli
    from daphne.access import AccessLogGenerator

    if getattr(cli, "_combo_access_log_format", False):
        return

    def access_log(stream):
        from django.conf import settings

        if not settings.configured or getattr(settings, "LOG_FORMAT", "text") != "json":
            return AccessLogGenerator(stream)
        from combo.logformat import JsonAccessLog

        _note_request_ids()
        return JsonAccessLog(stream, request_id=_finished_request_id)

    cli.AccessLogGenerator = access_log
    cli._combo_access_log_format = True


def main() -> None:
    from combo import output

    output.install()  # first: daphne and logging take sys.stdout and sys.stderr as they start
    _reason_phrases()
    _enveloped_protocol_errors()
    _close_when_the_response_says_so()
    _install_nodelay()
    _install_direct_writes()
    _cache_content_type_parsing()
    _no_form_parsing()
    _tune_gc_before_serving()
    _plain_twisted_http_module()
    _access_log_format()
    _finish_when_the_body_is_complete()
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
