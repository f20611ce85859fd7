"""Start-up with the database unreachable: one plain line and a failed exit status, not a traceback.

`make run` runs `manage.py migrate` and then `manage.py serve`; with
DATABASE_URL pointing where nothing listens, each says where and why in one
line on stderr, never DATABASE_URL's password, and exits 1.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.live import ROOT, free_port

PASSWORD = "s3cret-Pa55word"


def run(tmp_path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"DJANGO_SETTINGS_MODULE": "combo.settings", "COMBO_DATA_DIR": str(tmp_path), "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=120)


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
    # These meet the database through the pool, whose attempts are logged as warnings
    # first; the command then ends with the same line and status, not a traceback.
    port = free_port()
    done = run(tmp_path, f"postgres://combo:{PASSWORD}@127.0.0.1:{port}/combo", *command)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback (most recent call last)" not in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    assert done.stderr.splitlines()[-1] == (
        f"CommandError: cannot reach the database at postgres://127.0.0.1:{port}/combo: connection refused"
    )


def test_a_missing_table_is_not_called_an_unreachable_database(tmp_path):
    # The database is there, only not migrated: Django's own error stands (it names the table).
    done = run(tmp_path, f"sqlite:///{tmp_path / 'empty.sqlite3'}", "createapikey", "alice", "--create-user")
    assert done.returncode != 0
    assert "cannot reach the database" not in done.stderr
    assert "no such table" in done.stderr
