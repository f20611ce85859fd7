"""Group commit: many coroutines' database steps run as one batch in one thread hop.

The stream path does its database work in short synchronous steps (before
the first byte and after the last). Done one request at a time, each step is
a thread hop and a transaction of half a dozen queries, and every query drops
and retakes the GIL while the event loop thread holds it for up to the switch
interval (5 ms): measured at 500 simultaneous questions, the database thread
was 80% busy and a question waited seconds for its turn. A `Batcher` collects
the items that arrive while a batch is running and hands them all to the next
one: one hop, one transaction and a few bulk queries for the lot. Under light
load a batch is one item, so nothing waits for company.

Batches run through `sync_to_async` (thread-sensitive, as Django's ORM needs),
one at a time per event loop; `_database_step` counts the ones waiting for
that thread, so a long run of batches lets the others in.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from asgiref.sync import sync_to_async

Item = TypeVar("Item")
Result = TypeVar("Result")

_waiting_lock = threading.Lock()
_waiting = 0  # batched steps waiting for the database thread


class _Ticket:
    """One step's place in the count of `_waiting`, given up once (when it runs, or if it never does)."""

    __slots__ = ("taken",)

    def __init__(self) -> None:
        global _waiting
        with _waiting_lock:
            _waiting += 1
        self.taken = False

    def take(self) -> None:
        global _waiting
        with _waiting_lock:
            if not self.taken:
                self.taken = True
                _waiting -= 1


def others_waiting() -> bool:
    """Whether another batched step waits for the database thread (asked from that thread)."""
    return _waiting > 0


def _database_step(function: Callable[..., Any]) -> Callable[..., Any]:
    """`sync_to_async(function, thread_sensitive=True)`, counted as waiting until the thread takes it."""

    def in_thread(ticket: _Ticket, *args: Any) -> Any:
        ticket.take()
        return function(*args)

    run = sync_to_async(in_thread, thread_sensitive=True)

    async def step(*args: Any) -> Any:
        ticket = _Ticket()
        try:
            return await run(ticket, *args)
        finally:
            ticket.take()  # a step cancelled before the thread took it waits no more

    return step


class Batcher(Generic[Item, Result]):
    """`await batcher(item)` runs `process([... item ...])` and returns that item's result.

    `process` takes a list of items and returns one result per item, in order;
    a result that is an exception is raised to that item's caller only. If
    `process` itself fails, every item of the batch gets the exception.
    `orphan` is called (in the loop) with results whose caller stopped
    waiting, so work that was done on its behalf is not lost.
    """

    def __init__(
        self,
        process: Callable[[list[Item]], Sequence[Result | BaseException]],
        *,
        max_batch: int = 100,
        orphan: Callable[[Result], Any] | None = None,
    ) -> None:
        self._process = _database_step(process)
        self._max_batch = max_batch
        self._orphan = orphan
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Item, asyncio.Future]]] = {}
        self._draining: set[asyncio.AbstractEventLoop] = set()
        self._tasks: set[asyncio.Task] = set()

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.setdefault(loop, []).append((item, future))
        if loop not in self._draining:
            self._draining.add(loop)
            # Starts on the next loop turn, so items arriving in this one join.
            task = loop.create_task(self._drain(loop))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._pending[loop]
        try:
            while pending:
                batch = pending[: self._max_batch]
                del pending[: self._max_batch]
                try:
                    results: Sequence[Any] = await self._process([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError("a batch returned the wrong number of results")
                except BaseException as exc:  # noqa: BLE001 - handed to every waiter
                    results = [exc] * len(batch)
                    if isinstance(exc, asyncio.CancelledError):
                        for _, future in batch + pending:
                            if not future.done():
                                future.cancel()
                        pending.clear()
                        raise
                for (_, future), result in zip(batch, results):
                    if future.done():  # the caller went away
                        if self._orphan is not None and not isinstance(result, BaseException):
                            self._orphan(result)
                    elif isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining.discard(loop)
            if not pending:
                self._pending.pop(loop, None)


Record = TypeVar("Record")

# How long one hop of a CheckThenRecord keeps the database thread while other steps wait for it.
HOP_SECONDS = 0.05


class CheckThenRecord(Generic[Item, Result, Record]):
    """A batched step in two halves: checks that read, then the writes they lead to.

    `await pipeline(item)` runs `check([... item ...])` in a batch, as a
    `Batcher` does, and returns `(result, recorded)`: `check` gives each item
    its result and the record it must write, and `recorded` is a future that
    completes (None, or the exception) once `record` has written it.

    Both halves run in one hop into the database thread, but the results are
    handed to their callers as soon as the checks are done: the callers go on
    (the stream path starts the upstream request) while the same hop writes
    the records. The next batch starts after that, so a check never runs
    ahead of the records of earlier checks (a question sees the questions
    asked before it in its session).

    The database thread takes the next batch itself, as soon as one is
    written, for as long as items are waiting: it does not wait for the event
    loop to send it (measured at 500 simultaneous questions, a busy loop left
    the thread idle 10 to 30 ms between batches, 40% of the burst). It hands
    the thread over after HOP_SECONDS only when another batched step is
    waiting for it: a hop that returned while nothing else waited left the
    thread idle 20 to 60 ms, until the busy loop sent the next one.

    `orphan(result, recorded)` is called with results whose caller stopped
    waiting; their records are written all the same.
    """

    def __init__(
        self,
        check: Callable[[list[Item]], Sequence[tuple[Result, Record] | BaseException]],
        record: Callable[[list[Record]], Sequence[BaseException | None]],
        *,
        max_batch: int = 100,
        orphan: Callable[[Result, asyncio.Future], Any] | None = None,
    ) -> None:
        self._check = check
        self._record = record
        self._max_batch = max_batch
        self._orphan = orphan
        # Per loop: the items waiting for a batch, and the batch in the thread.
        # Both threads use them, under the lock.
        self._lock = threading.Lock()
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Item, asyncio.Future]]] = {}
        self._in_hop: dict[asyncio.AbstractEventLoop, list[tuple[Item, asyncio.Future]]] = {}
        self._tasks: set[asyncio.Task] = set()

    async def __call__(self, item: Item) -> tuple[Result, asyncio.Future]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            pending = self._pending.get(loop)
            if pending is None:
                pending = self._pending[loop] = []
                # Starts on the next loop turn, so items arriving in this one join.
                task = loop.create_task(self._drain(loop, pending))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            pending.append((item, future))
        return await future

    async def _drain(self, loop: asyncio.AbstractEventLoop, pending: list) -> None:
        hop = _database_step(self._hop)
        try:
            while await hop(loop, pending):
                pass  # the hop used its time; others who share the thread go first
        except BaseException as exc:  # handed to every waiter not served yet
            cancelled = isinstance(exc, asyncio.CancelledError)
            with self._lock:
                unserved = self._in_hop.pop(loop, []) + pending
                pending.clear()  # the thread takes no further batch
                if self._pending.get(loop) is pending:
                    del self._pending[loop]
            for _, future in unserved:
                if future.done():
                    continue
                if cancelled:
                    future.cancel()
                else:
                    future.set_exception(exc)
            if cancelled:
                raise

    def _next_batch(self, loop: asyncio.AbstractEventLoop, pending: list) -> list:
        with self._lock:
            batch = pending[: self._max_batch]
            del pending[: self._max_batch]
            if batch:
                self._in_hop[loop] = batch
            else:
                self._in_hop.pop(loop, None)
                if self._pending.get(loop) is pending:
                    del self._pending[loop]  # the next caller starts a new hop
            return batch

    def _hop(self, loop: asyncio.AbstractEventLoop, pending: list) -> bool:
        """In the database thread: batch after batch while items wait.

        True if items may still be waiting: after HOP_SECONDS, when another
        batched step waits for the thread, a long burst lets it in and goes
        on in another hop.
        """
        deadline = time.monotonic() + HOP_SECONDS
        while batch := self._next_batch(loop, pending):
            self._hop_one(loop, batch)
            if time.monotonic() >= deadline and others_waiting():
                with self._lock:
                    self._in_hop.pop(loop, None)
                return True
        return False

    def _hop_one(self, loop: asyncio.AbstractEventLoop, batch: list) -> None:
        """Check one batch, hand the results over, then write the records."""
        try:
            results = self._check([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError("a batch returned the wrong number of results")
        except Exception as exc:  # noqa: BLE001 - handed to every waiter
            results = [exc] * len(batch)
        recorded: list[asyncio.Future] = []  # filled in the loop by _deliver, before _settle runs
        # In a context of its own: this thread's says "inside the database thread", and
        # tasks started by `_deliver` (an orphan's answer) would inherit it (asgiref then
        # refuses their own database steps as a deadlock).
        loop.call_soon_threadsafe(self._deliver, loop, batch, results, recorded, context=contextvars.Context())
        records = [result[1] for result in results if not isinstance(result, BaseException)]
        if not records:
            return
        try:
            outcomes = self._record(records)
            if len(outcomes) != len(records):
                raise RuntimeError("a batch returned the wrong number of results")
        except Exception as exc:  # noqa: BLE001 - handed to every waiter
            outcomes = [exc] * len(records)
        loop.call_soon_threadsafe(_settle, recorded, outcomes)

    def _deliver(self, loop: asyncio.AbstractEventLoop, batch: list, results: Sequence, recorded: list) -> None:
        for (_, future), result in zip(batch, results):
            if isinstance(result, BaseException):
                if not future.done():
                    future.set_exception(result)
                continue
            value, _ = result
            done = loop.create_future()
            recorded.append(done)
            if not future.done():
                future.set_result((value, done))
            elif self._orphan is not None:  # the caller went away
                self._orphan(value, done)


def _settle(waiters: list[asyncio.Future], outcomes: Sequence[BaseException | None]) -> None:
    for future, outcome in zip(waiters, outcomes):
        if future.done():
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
