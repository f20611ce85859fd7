"""Graceful shutdown under daphne: finish or cleanly end open answers on SIGTERM.

Daphne (Twisted) stops at once on SIGTERM and kills every application instance,
so streams would end mid-frame and detached answers would never be recorded.
This module puts a handler in front of Twisted's: it refuses new completions,
gives running answers COMBO_SHUTDOWN_GRACE_SECONDS to finish, interrupts the
rest (each is recorded `interrupted` and its stream gets `event: error` then
`event: done`), lets the last frames flush, then hands over to Twisted.

A process killed outright records nothing; agents.reaper marks what it left.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from django.conf import settings

logger = logging.getLogger("combo.shutdown")

draining = False


def running_under_daphne() -> bool:
    return "twisted.internet.reactor" in sys.modules


def install() -> None:
    from twisted.internet import reactor

    def take_over_sigterm():
        previous = signal.getsignal(signal.SIGTERM)
        loop = asyncio.get_event_loop()

        def on_sigterm(signum, frame):
            global draining
            if draining:
                return
            draining = True
            loop.call_soon_threadsafe(lambda: loop.create_task(_drain_then(previous, signum, frame)))

        signal.signal(signal.SIGTERM, on_sigterm)

    reactor.callWhenRunning(take_over_sigterm)


async def _drain_then(previous, signum, frame) -> None:
    from agents.completions import cancel_running, running_count

    grace = settings.COMBO_SHUTDOWN_GRACE_SECONDS
    logger.info("SIGTERM: waiting up to %ss for %d running answer(s)", grace, running_count())
    try:
        await cancel_running(grace)
        await asyncio.sleep(0.3)  # let the last frames reach the clients
    finally:
        if callable(previous):
            previous(signum, frame)
        else:
            from twisted.internet import reactor

            reactor.stop()
