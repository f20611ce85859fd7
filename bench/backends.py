"""The production backend both benchmarks use: PostgreSQL + Redis on this machine.

BENCH_POSTGRES_URL (a server URL, no database) and BENCH_REDIS_URL override
the defaults. Every round gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from typing import Self

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def postgres_unreachable() -> str | None:
    """Why PostgreSQL or Redis cannot be used (one line), or None."""

    def why(exc: Exception) -> str:
        return " ".join(str(exc).split()) or type(exc).__name__

    try:
        import psycopg
        import redis
    except ImportError as exc:
        return f"{exc.name} is not installed"
    try:
        with psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001 - any failure is a reason to skip
        return f"PostgreSQL at {POSTGRES} is not reachable ({why(exc)})"
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis at {REDIS} is not reachable ({why(exc)})"
    return None


class FreshPostgres:
    """A new PostgreSQL database (dropped afterwards) and a flushed Redis database for one round."""

    def __init__(self) -> None:
        self.name = f"combo_bench_{uuid.uuid4().hex[:8]}"
        self.env = {"DATABASE_URL": f"{POSTGRES}/{self.name}", "REDIS_URL": REDIS}

    def __enter__(self) -> Self:
        import psycopg
        import redis

        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        redis.Redis.from_url(REDIS).flushdb()
        return self

    def __exit__(self, *exc) -> None:
        import psycopg

        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
