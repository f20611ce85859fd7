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
one at a time per event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from asgiref.sync import sync_to_async

Item = TypeVar("Item")
Result = TypeVar("Result")


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
        self._process = sync_to_async(process, thread_sensitive=True)
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
