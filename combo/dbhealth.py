"""The database away: what start-up says about it.

`manage.py migrate` and `manage.py serve` (so `make run`) ask the database
once, on a connection of their own (not the pool's: its timeout would hide the
reason behind "couldn't get a connection after 10 s"), before anything else
touches it; one that cannot be reached ends the command with one line naming
where and why, and no traceback. The line names the host, port and database,
never the user or password of DATABASE_URL. Every other command ends with the
same line (manage.py, through `explain`). Each attempt gives up after
DB_CONNECT_TIMEOUT (libpq's connect_timeout, in the settings' OPTIONS).
"""

from __future__ import annotations

import re

from django.core.management.base import CommandError
from django.db import connections

from combo.errors import DATABASE_UNAVAILABLE_ERRORS


def database_address(alias: str = "default") -> str:
    """Where the database is, as a URL without credentials: postgres://host:port/name, sqlite:///path."""
    settings_dict = connections[alias].settings_dict
    vendor = connections[alias].vendor
    if vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    scheme = "postgres" if vendor == "postgresql" else vendor
    host = settings_dict.get("HOST") or ""
    port = settings_dict.get("PORT")
    return f"{scheme}://{host}{f':{port}' if port else ''}/{settings_dict.get('NAME') or ''}"


def unreachable(alias: str = "default") -> str | None:
    """None when the database accepts a connection; else one line saying where and why not."""
    connection = connections[alias]
    try:
        if connection.vendor == "postgresql":
            # A connection of its own, not the pool's (whose failure says only that it timed out).
            connection.Database.connect(**connection.get_connection_params()).close()
        else:
            connection.ensure_connection()
    except (*DATABASE_UNAVAILABLE_ERRORS, connection.Database.Error) as exc:
        return f"cannot reach the database at {database_address(alias)}: {_reason(exc, connection.settings_dict)}"
    return None


def require_database(alias: str = "default") -> None:
    """Raise CommandError (one line, exit status 1) when the database cannot be reached."""
    problem = unreachable(alias)
    if problem:
        raise CommandError(problem)


def explain(exc: BaseException, alias: str = "default") -> str | None:
    """The one line for an error a command ended with, when it is the database being unreachable; else None.

    A connection attempt that timed out says so itself: asking again would
    only wait as long once more. Any other error is checked with a connection
    of its own, so a missing table (an OperationalError too) is not called an
    unreachable database.
    """
    if not isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        return None
    from psycopg.errors import ConnectionTimeout

    if isinstance(exc.__cause__, ConnectionTimeout):
        settings_dict = connections[alias].settings_dict
        return f"cannot reach the database at {database_address(alias)}: {_reason(exc.__cause__, settings_dict)}"
    return unreachable(alias)


def _reason(exc: BaseException, settings_dict: dict) -> str:
    """libpq's or SQLite's reason on one line: 'connection refused', 'database "x" does not exist'."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = text.rsplit(" failed: ", 1)[-1]  # 'connection to server at "h", port p failed: <reason>'
    text = re.sub(r"^(FATAL|ERROR):\s+", "", text)
    password = settings_dict.get("PASSWORD")
    if password:
        text = text.replace(str(password), "***")
    return text[:1].lower() + text[1:] if re.match(r"[A-Z][a-z]*\b", text) else text
