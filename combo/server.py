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

- daphne given twisted.web.http itself, not Twisted's deprecation proxy of
  it, which cost about 2 us on every body chunk daphne writes.

- No form parsing inside Twisted (`_no_form_parsing`). Twisted parses every
  POST body sent as multipart/form-data or urlencoded into `request.args`,
  on the event loop, before daphne hands the body on untouched; daphne never
  reads `args`. For a 19 MB file upload that stopped every other request and
  stream for a quarter of a second or more, and a malformed multipart body
  got a bare `400 Bad Request` from Twisted instead of the API's envelope.
  Django parses uploads itself, in the request's thread.

`manage.py serve`, the benchmark and the live tests all start the server
through `daphne_command()`.
"""

from __future__ import annotations

import sys
import types

LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn


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


def main() -> None:
    _reason_phrases()
    _install_nodelay()
    _install_direct_writes()
    _cache_content_type_parsing()
    _no_form_parsing()
    _tune_gc_before_serving()
    _plain_twisted_http_module()
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
