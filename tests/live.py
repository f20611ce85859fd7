"""Live servers for tests that must cross real boundaries (HTTP, SSE, processes).

`LiveCombo` runs the product as `make run` does (daphne serving combo.asgi) in
a subprocess with its own data folder, so a test talks to it over real sockets.

The data folders (a database, collected static files, server logs: about 17 MB
each) live in one folder per test run, removed when the run ends;
COMBO_KEEP_TEST_DATA=1 keeps it to read the servers' logs afterwards.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from combo.server import daphne_command

ROOT = Path(__file__).resolve().parent.parent

_data_root: str | None = None


def data_root() -> str:
    """This test run's folder for live servers' data, removed at its end (unless COMBO_KEEP_TEST_DATA=1)."""
    global _data_root
    if _data_root is None:
        _data_root = tempfile.mkdtemp(prefix="combo-live-")
        if os.environ.get("COMBO_KEEP_TEST_DATA") != "1":
            atexit.register(shutil.rmtree, _data_root, True)
    return _data_root


def wait_until_serving(url: str, process: subprocess.Popen, output=lambda: "", seconds: float = 30) -> None:
    """Until the server at `url` answers /v1/health (200, or 503 while a dependency is away).

    RuntimeError with the server's `output()` if its process exits first, or after `seconds`.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {output()}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code in (200, 503):
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not start in {seconds:g} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveCombo:
    """One daphne process (or several sharing a data folder/database)."""

    def __init__(self, env: dict[str, str] | None = None, data_dir: str | None = None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="server-", dir=data_root())
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "combo.settings",
            "COMBO_DATA_DIR": self.data_dir,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.processes: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self._own_database = None
        if self.env.get("DATABASE_URL", "").startswith("postgres") and not (env or {}).get("DATABASE_URL"):
            self._own_database = _create_pg_database(self.env["DATABASE_URL"])
            self.env["DATABASE_URL"] = self._own_database

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    def migrate(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")

    def create_key(self, username: str) -> str:
        return self.manage("createapikey", username, "--create-user").strip()

    def create_user(self, username: str, password: str, *, staff: bool = False) -> None:
        """A user who can sign in to the console (and Django admin when `staff`)."""
        code = (
            "from accounts.services import user_create; "
            f"u = user_create(username={username!r}, password={password!r}, is_staff={staff!r}); "
            f"u.is_superuser = {staff!r}; u.save()"
        )
        self.manage("shell", "-c", code)

    def collectstatic(self) -> None:
        """What `make run` does before serving: the console's CSS/JS and Swagger UI's files."""
        self.manage("collectstatic", "--noinput", "-v", "0")

    def start(
        self,
        extra_env: dict[str, str] | None = None,
        *,
        application: str = "combo.asgi:application",
        options: tuple[str, ...] = (),
    ) -> str:
        """Serve `application` (a test may name its own) with extra daphne `options`; the server's URL."""
        port = free_port()
        log = open(Path(self.data_dir) / f"daphne-{port}.log", "wb")
        command = daphne_command("127.0.0.1", port, application=application)  # as `manage.py serve` starts it
        command[-1:-1] = options
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        self.ports.append(port)
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, process, lambda: self.log(port)[-2000:])
        return url

    def log(self, port: int) -> str:
        return (Path(self.data_dir) / f"daphne-{port}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        if self._own_database:
            _drop_pg_database(self._own_database)
            self._own_database = None

    def shell(self, code: str) -> str:
        """Run Python in `manage.py shell` against this server's database."""
        return self.manage("shell", "-v", "0", "-c", code).strip()


def _admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


_created_databases: set[str] = set()  # live servers' databases not dropped yet: dropped at exit at the latest


def _create_pg_database(url: str) -> str:
    """A fresh database per live server, so parallel servers of one test share it and others don't."""
    import uuid

    import psycopg

    name = f"combo_live_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    created = url.rsplit("/", 1)[0] + "/" + name
    if not _created_databases:
        atexit.register(_drop_the_rest)
    _created_databases.add(created)
    return created


def _drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _created_databases.discard(url)


def _drop_the_rest() -> None:
    """A server some test left running (or a test that failed before its stop) leaves no database behind."""
    for url in list(_created_databases):
        try:
            _drop_pg_database(url)
        except Exception:  # noqa: BLE001 - the database server itself may be gone by now
            pass


def read_sse(response: httpx.Response) -> list[tuple[str, dict | str]]:
    """Parse a text/event-stream body into (event, data) pairs; comments as ('comment', text)."""
    return read_sse_lines(response.iter_lines())


def read_sse_lines(lines) -> list[tuple[str, dict | str]]:
    import json

    events: list[tuple[str, dict | str]] = []
    event, data_lines = "message", []
    for line in lines:
        if line.startswith(":"):
            events.append(("comment", line[1:].strip()))
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data_lines.append(line[5:].strip())
        elif line == "" and data_lines:
            events.append((event, json.loads("\n".join(data_lines))))
            event, data_lines = "message", []
    return events


def console_server(env: dict[str, str] | None = None, password: str = "correct horse battery") -> LiveCombo:
    """A live server for browser tests: migrated, static files collected, alice with a password and a key."""
    combo = LiveCombo(env=env)
    combo.migrate()
    combo.collectstatic()
    combo.create_user("alice", password)
    combo.alice_key = combo.create_key("alice")
    combo.url = combo.start()
    return combo
