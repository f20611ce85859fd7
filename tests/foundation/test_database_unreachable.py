"""Start-up with the database unreachable: one plain line and a failed exit status, not a traceback.

`make run` runs `manage.py migrate` and then `manage.py serve`; with
DATABASE_URL pointing where nothing listens, each says where and why in one
line on stderr, never DATABASE_URL's password, and exits 1. So does every
other command. An address that accepts connections and never answers (a hung
server, a half-dead proxy) is given up on after DB_CONNECT_TIMEOUT, by the
commands and by a server's connection pool alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from combo.server import daphne_command
from tests.live import ROOT, free_port
from tests.tcprelay import TcpRelay

PASSWORD = "s3cret-Pa55word"
CONNECT_TIMEOUT = 2  # libpq's least


def run(tmp_path, database_url: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DB_CONNECT_TIMEOUT")}
    full_env |= {"DJANGO_SETTINGS_MODULE": "combo.settings", "COMBO_DATA_DIR": str(tmp_path),
                 "DATABASE_URL": database_url, **(env or {})}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, check=False, timeout=120)


@pytest.fixture
def silent():
    """An address that accepts connections and never answers."""
    relay = TcpRelay.silent()
    yield relay
    relay.close()


def assert_one_line(done: subprocess.CompletedProcess, expected: str) -> None:
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback (most recent call last)" not in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"CommandError: {expected}"], done.stderr[-2000:]


@pytest.mark.parametrize("command", [
    ["migrate", "--noinput", "-v", "0"],
    ["migrate", "--plan"],
    ["serve", "--port", "0", "--no-worker"],
])
def test_a_closed_postgresql_port_is_one_line_naming_it(tmp_path, command):
    port = free_port()  # nothing listens there
    done = run(tmp_path, f"postgres://combo:{PASSWORD}@127.0.0.1:{port}/combo", *command)
    assert_one_line(done, f"cannot reach the database at postgres://127.0.0.1:{port}/combo: connection refused")
    assert "Combo is starting" not in done.stdout


def test_an_sqlite_file_that_cannot_be_opened_is_one_line_too(tmp_path):
    path = tmp_path / "missing-folder" / "combo.sqlite3"
    done = run(tmp_path, f"sqlite:///{path}", "migrate", "--noinput")
    assert_one_line(done, f"cannot reach the database at sqlite:///{path}: unable to open database file")


@pytest.mark.parametrize("command", [
    ["createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com"],
    ["createapikey", "alice", "--create-user"],
])
def test_every_other_command_ends_with_the_same_line(tmp_path, command):
    # Only that line: no warning from a connection pool's tries before it, and no 10 s wait for them.
    port = free_port()
    started = time.monotonic()
    done = run(tmp_path, f"postgres://combo:{PASSWORD}@127.0.0.1:{port}/combo", *command)
    assert_one_line(done, f"cannot reach the database at postgres://127.0.0.1:{port}/combo: connection refused")
    assert time.monotonic() - started < 8


@pytest.mark.parametrize("command", [
    ["migrate", "--noinput", "-v", "0"],
    ["createapikey", "alice", "--create-user"],
    ["createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com"],
])
def test_an_address_that_never_answers_is_given_up_on_after_the_connect_timeout(tmp_path, silent, command):
    started = time.monotonic()
    done = run(tmp_path, f"postgres://combo:{PASSWORD}@127.0.0.1:{silent.port}/combo", *command,
               env={"DB_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT)})
    took = time.monotonic() - started
    assert_one_line(done, f"cannot reach the database at postgres://127.0.0.1:{silent.port}/combo: "
                          "connection timeout expired")
    assert took < CONNECT_TIMEOUT + 6, f"{took:.1f} s"  # Python and Django start in 1-2 s of it
    assert silent.hung_at, "the command never tried the database"


def test_a_connect_timeout_in_database_url_wins_over_the_variable(tmp_path, silent):
    started = time.monotonic()
    done = run(tmp_path, f"postgres://combo:{PASSWORD}@127.0.0.1:{silent.port}/combo?connect_timeout=2",
               "migrate", "--noinput", env={"DB_CONNECT_TIMEOUT": "60"})
    took = time.monotonic() - started
    assert_one_line(done, f"cannot reach the database at postgres://127.0.0.1:{silent.port}/combo: "
                          "connection timeout expired")
    assert took < 2 + 6, f"{took:.1f} s"


def test_a_connect_timeout_under_two_seconds_stops_the_command(tmp_path):
    done = run(tmp_path, f"postgres://combo@127.0.0.1:{free_port()}/combo", "migrate", env={"DB_CONNECT_TIMEOUT": "1"})
    assert done.returncode != 0
    assert "DB_CONNECT_TIMEOUT must be at least 2, got 1" in done.stderr


def test_a_server_answers_503_when_the_database_never_answers_and_its_pool_gives_up_each_try(tmp_path, silent):
    pool_timeout = 4
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"DJANGO_SETTINGS_MODULE": "combo.settings", "COMBO_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": f"postgres://combo:{PASSWORD}@127.0.0.1:{silent.port}/combo",
            "DB_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT), "DB_POOL_TIMEOUT": str(pool_timeout)}
    port = free_port()
    log = Path(tmp_path) / "daphne.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(daphne_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # up when it answers anything (health would wait for the database)
            try:
                httpx.get(f"{url}/v1/openapi.json", timeout=5)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        started = time.monotonic()
        response = httpx.post(f"{url}/v1/auth/token", json={"username": "alice", "password": "x"}, timeout=60)
        took = time.monotonic() - started
        tries = silent.hung_at
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == 20002 and "database" in body["message"], body
    assert took < pool_timeout + 3, f"{took:.1f} s"
    assert PASSWORD not in response.text + log.read_text()
    # The pool's first tries were given up after DB_CONNECT_TIMEOUT and it tried again
    # while the request waited. Left alone, psycopg waits 130 s on each try, and the
    # pool's workers with it: a database back meanwhile would not be asked again.
    assert tries, "the server never tried the database"
    assert any(at > tries[0] + CONNECT_TIMEOUT for at in tries), [round(at - tries[0], 1) for at in tries]


def test_a_missing_table_is_not_called_an_unreachable_database(tmp_path):
    # The database is there, only not migrated: Django's own error stands (it names the table).
    done = run(tmp_path, f"sqlite:///{tmp_path / 'empty.sqlite3'}", "createapikey", "alice", "--create-user")
    assert done.returncode != 0
    assert "cannot reach the database" not in done.stderr
    assert "no such table" in done.stderr
