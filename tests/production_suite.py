"""Runs the whole suite again against PostgreSQL and Redis, when they are reachable.

`make test` calls this after the SQLite run. Where a server is absent it prints
the reason and exits 0, so a machine without them still passes; CI here has both.
Override the targets with COMBO_TEST_POSTGRES_URL / COMBO_TEST_REDIS_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys

POSTGRES = os.environ.get("COMBO_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/combo")
REDIS = os.environ.get("COMBO_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES.rsplit("/", 1)[0] + "/postgres", connect_timeout=3):
            pass
    except Exception as exc:  # any failure means: not here
        return f"PostgreSQL not reachable at {POSTGRES}: {type(exc).__name__}: {exc}".strip()
    try:
        import redis

        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis not reachable at {REDIS}: {type(exc).__name__}: {exc}".strip()
    return None


def main() -> int:
    reason = reachable()
    if reason:
        print(f"SKIPPED the PostgreSQL + Redis run: {reason}")
        return 0
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    print(f"Running the suite against PostgreSQL ({POSTGRES}) and Redis ({REDIS})")
    env = {**os.environ, "DATABASE_URL": POSTGRES, "REDIS_URL": REDIS}
    return subprocess.call([sys.executable, "-m", "pytest", *sys.argv[1:]], env=env)


if __name__ == "__main__":
    sys.exit(main())
