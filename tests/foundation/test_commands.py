"""`manage.py createapikey USERNAME [--name NAME] [--create-user]`: the key alone on stdout."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from accounts import keys
from accounts.models import ApiKey, User
from combo.errors import ErrorCode
from tests.foundation.helpers import assert_error, assert_ok

REPO = Path(settings.BASE_DIR)


def run(*args, verbosity: int = 1) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("createapikey", *args, stdout=out, stderr=err, verbosity=verbosity)
    return out.getvalue(), err.getvalue()


def test_it_prints_the_key_alone_on_one_line(api, alice):
    out, _ = run("alice")
    assert out.count("\n") == 1 and out.endswith("\n")
    plain = out.strip()
    assert keys.is_well_formed(plain)
    row = ApiKey.objects.get(prefix=keys.visible_prefix(plain))
    assert row.owner == alice.user and row.name == "cli"
    assert row.key_hash == keys.hash_key(plain)


def test_the_printed_key_authenticates(api, alice):
    plain = run("alice")[0].strip()
    status, body, response = api.get("/v1/test/deprecated-ping", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert_ok(status, body, response)
    # ...and, being a key, cannot manage keys.
    status, body, response = api.get("/v1/api-keys", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert_error(status, body, response, ErrorCode.JWT_REQUIRED)


def test_name_is_stored(alice):
    plain = run("alice", "--name", "nightly import")[0].strip()
    assert ApiKey.objects.get(prefix=keys.visible_prefix(plain)).name == "nightly import"


def test_create_user_creates_the_user_without_a_usable_password(db):
    plain = run("carol", "--create-user")[0].strip()
    carol = User.objects.get(username="carol")
    assert not carol.has_usable_password() and carol.is_active and not carol.is_staff
    assert ApiKey.objects.get(prefix=keys.visible_prefix(plain)).owner == carol


def test_create_user_uses_an_existing_user(alice):
    run("alice", "--create-user")
    assert User.objects.filter(username="alice").count() == 1
    assert ApiKey.objects.filter(owner=alice.user).count() == 2


def test_an_unknown_user_without_create_user_is_an_error_and_writes_nothing(db):
    with pytest.raises(CommandError, match="--create-user"):
        run("nobody")
    assert not User.objects.filter(username="nobody").exists()
    assert ApiKey.objects.count() == 0


def test_verbose_output_goes_to_stderr_only(db):
    out, err = run("dave", "--create-user", verbosity=2)
    assert out.count("\n") == 1 and keys.is_well_formed(out.strip())
    assert "dave" in err and out.strip() not in err


def test_a_real_process_prints_only_the_key_on_stdout(tmp_path):
    # Scripts run `KEY=$(python manage.py createapikey ...)`: nothing else may reach stdout.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["COMBO_DATA_DIR"] = str(tmp_path)
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True, capture_output=True)
    result = subprocess.run(
        [*manage, "createapikey", "erin", "--create-user", "--name", "ci"],
        cwd=REPO, env=env, check=True, capture_output=True, text=True,
    )
    plain = result.stdout.removesuffix("\n")
    assert "\n" not in plain and keys.is_well_formed(plain), result.stdout
    with sqlite3.connect(tmp_path / "combo.sqlite3") as db:
        rows = db.execute("SELECT prefix, key_hash, name FROM accounts_apikey").fetchall()
    assert rows == [(keys.visible_prefix(plain), keys.hash_key(plain), "ci")]
