"""PostgreSQL's connection pool (psycopg_pool, through Django's OPTIONS "pool") back soon after an outage.

Left to its defaults the pool took 15-30 s to serve again once the database
was back, for two reasons, each fixed here:

- A connection that fails to open is tried again after 1, 2, 4, 8, 16... s
  (for up to 5 minutes): after an outage of 20 s the next try came about 10 s
  after the database was back, and every request waited for it. Settings give
  the pool a short `reconnect_timeout` (RECONNECT_SECONDS): a failing attempt
  gives up after its tries at 0, 1 and 2 s, and `reconnect_failed` below
  starts another at once while requests are waiting for a connection. So a
  server process connects within about a second of the database's return,
  and while it is down asks it about once a second (several attempts only in
  the first seconds, one per connection lost), and not at all while no
  request waits.
- Idle connections that the database closed (a restart, connections killed)
  stay in the pool, unnoticed, until a request takes one: each failed one
  request with 503, one after the other, for as many requests as the pool
  held connections (up to DB_POOL_MAX). A request that fails because the
  database is unavailable now has the pool test every idle connection
  (`after_database_failure`, at most once a second, in the background), so
  the dead ones are replaced at once.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("combo.db")

# psycopg_pool's reconnect_timeout: how long one attempt to open a connection keeps trying (at 0, 1, 2 s).
RECONNECT_SECONDS = 2.0
# The shortest time between two checks of the idle connections after failures.
CHECK_INTERVAL_SECONDS = 1.0

_lock = threading.Lock()
_checking = False
_last_check = 0.0


def reconnect_failed(pool) -> None:
    """psycopg_pool's `reconnect_failed` callback: an attempt to connect gave up; try again if a request waits."""
    if pool.closed or not pool.get_stats().get("requests_waiting"):
        return  # nobody waits: the next request that finds no connection starts an attempt
    logger.warning("the database is still unreachable; trying again")
    pool.check()  # grows the pool by one connection when it has none: a new attempt, starting now


def after_database_failure() -> None:
    """A query failed because the database is unavailable: test the pool's idle connections soon.

    Returns at once; the test runs in a thread, one at a time, at most once
    every CHECK_INTERVAL_SECONDS in a process.
    """
    global _checking, _last_check
    pools = _open_pools()
    if not pools:
        return
    with _lock:
        now = time.monotonic()
        if _checking or now - _last_check < CHECK_INTERVAL_SECONDS:
            return
        _checking, _last_check = True, now
    threading.Thread(target=_check, args=(pools,), name="combo-db-pool-check", daemon=True).start()


def _open_pools() -> list:
    from django.db import connections

    pools = []
    for alias in connections:
        pool = getattr(connections[alias], "pool", None)
        if pool is not None and not pool.closed:
            pools.append(pool)
    return pools


def _check(pools: list) -> None:
    global _checking
    try:
        for pool in pools:
            pool.check()  # dead connections are dropped and replaced (psycopg_pool), the good ones kept
    except Exception:  # noqa: BLE001 - a failed check changes nothing; the next failure tries again
        logger.warning("checking the database pool's connections failed", exc_info=True)
    finally:
        with _lock:
            _checking = False
