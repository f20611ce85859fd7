"""One event loop per process for async work started from synchronous code.

Synchronous views run on a2wsgi's thread pool (combo.asgi). `async_to_sync`
there gives every call an event loop of its own, but some process-wide
objects keep state bound to the loop that first used them: channels-redis's
`RedisChannelLayer` lets only one loop receive at a time (concurrent health
checks failed with "Two event loops are trying to receive() on one channel
layer at once!", then "Lock ... is bound to a different event loop", then
`ChannelFull` from the messages those left behind), and asyncio's queues and
locks belong to one loop.

`run()` runs a coroutine on the process's loop instead and waits for it from
the calling thread: under daphne the server's own loop (the one its streams
run on), remembered once the reactor runs; elsewhere (the test client,
management commands) one long-lived loop in a daemon thread. No loop, thread
or connection pool is made per call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_server_loop: asyncio.AbstractEventLoop | None = None
_own_loop: asyncio.AbstractEventLoop | None = None
_own_loop_lock = threading.Lock()


def remember_server_loop() -> None:
    """Under daphne: use the reactor's asyncio loop once it runs (combo.asgi)."""
    from twisted.internet import reactor

    def remember():
        global _server_loop
        _server_loop = asyncio.get_event_loop()

    reactor.callWhenRunning(remember)


def process_loop() -> asyncio.AbstractEventLoop:
    """The server's loop while it runs, else this module's own loop (started on first use)."""
    global _own_loop
    server_loop = _server_loop
    if server_loop is not None and server_loop.is_running():
        return server_loop
    with _own_loop_lock:
        if _own_loop is None or _own_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="combo-event-loop", daemon=True).start()
            _own_loop = loop
        return _own_loop


def run(coroutine_function: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Run `coroutine_function()` on the process's loop; wait at most `timeout` seconds for it.

    On timeout the coroutine is cancelled and TimeoutError raised: a loop that
    does not answer in time (blocked, or stopping) is reported, not waited on.
    Never call it from the process loop's own thread: it would wait on itself.
    """
    loop = process_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("combo.eventloop.run() called from the process loop itself")
    future = asyncio.run_coroutine_threadsafe(coroutine_function(), loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:  # TimeoutError itself since Python 3.11
        future.cancel()
        raise TimeoutError(f"no answer from the event loop in {timeout} s") from None
