"""A TCP relay a test can cut and restore: a database that goes away and comes back.

`TcpRelay(("127.0.0.1", 5432))` listens on a free loopback port and copies
bytes both ways to the target. `cut()` closes every relayed connection and
stops listening (new connections are refused, as by a stopped server);
`restore()` listens on the same port again. `cut(refuse=False)` keeps
accepting while cut and closes each connection at once, counting them in
`attempts_while_cut`: how often the client tried a database that was away.
`cut(refuse=False, hang=True)` accepts and never answers (a hung server, a
half-dead proxy): each such connection is held open, and `hung_at` lists when
each was accepted (time.monotonic()). `TcpRelay.silent()` is such an address
from the start, relaying nowhere.
"""

from __future__ import annotations

import socket
import threading
import time


class TcpRelay:
    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._dead: socket.socket | None = None
        self.port = port
        self.attempts_while_cut = 0
        self._hung: list[tuple[socket.socket, float]] = []
        self.restore()

    @classmethod
    def silent(cls) -> TcpRelay:
        """An address that accepts connections and never answers."""
        relay = cls(("127.0.0.1", 9))
        relay.cut(refuse=False, hang=True)
        return relay

    @property
    def hung_at(self) -> list[float]:
        """When each connection held unanswered (cut with hang=True) was accepted, time.monotonic()."""
        with self._lock:
            return [accepted_at for _, accepted_at in self._hung]

    def restore(self) -> None:
        """Relay (again) on the relay's port."""
        self._stop_listening("_dead")
        self._listener = self._listen()
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self, *, refuse: bool = True, hang: bool = False) -> None:
        """Close every relayed connection; until restore(), connecting is refused (or, with
        refuse=False, accepted, counted and closed at once, or with hang=True held unanswered)."""
        self._stop_listening("_listener")
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)
        if not refuse:
            self._dead = self._listen()
            threading.Thread(target=self._drop, args=(self._dead, hang), daemon=True).start()

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        return listener

    def _stop_listening(self, name: str) -> None:
        listener = getattr(self, name)
        setattr(self, name, None)
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()

    def _drop(self, listener: socket.socket, hang: bool) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # restored
            self.attempts_while_cut += 1
            if not hang:
                _close(client)
                continue
            with self._lock:
                self._hung.append((client, time.monotonic()))

    def close(self) -> None:
        self.cut()
        self._stop_listening("_dead")
        with self._lock:
            hung, self._hung = self._hung, []
        for sock, _ in hung:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    continue
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets -= {source, sink}
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
