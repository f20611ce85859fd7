#!/usr/bin/env python
import os
import sys

# Commands that run until stopped keep PostgreSQL's connection pool, whose
# warnings while the database is away say what the process is doing.
SERVERS = {"serve", "db_worker", "runserver"}


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "combo.settings")
    from django.core.management import execute_from_command_line

    if (sys.argv[1] if len(sys.argv) > 1 else "help") not in SERVERS:
        connect_directly()
    try:
        execute_from_command_line(sys.argv)
    except Exception as exc:
        # Any command (createsuperuser, createapikey, shell...) with the database
        # away: the one line that `migrate` and `serve` print, not a traceback.
        from combo.dbhealth import explain

        problem = explain(exc)
        if problem is None:
            raise
        sys.stderr.write(f"CommandError: {problem}\n")
        sys.exit(1)


def connect_directly():
    """A command that runs once (createapikey, shell, migrate...) connects to PostgreSQL without the pool.

    It needs one connection, not a pool: an unreachable database fails its
    first query at once (or after DB_CONNECT_TIMEOUT), with the reason, and
    the command ends with the one line, rather than after DB_POOL_TIMEOUT
    and the pool's warnings about each try.
    """
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        databases = settings.DATABASES
    except (ImproperlyConfigured, ImportError):
        return  # Django says what is wrong with the settings, as before
    for database in databases.values():
        database.get("OPTIONS", {}).pop("pool", None)


if __name__ == "__main__":
    main()
