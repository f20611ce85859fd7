"""What combo.server sets up in the server process before daphne serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from combo.server import GC_THRESHOLDS

ROOT = Path(__file__).resolve().parents[2]

# combo.server's own entry point through daphne's command line, up to the
# moment daphne would start serving: there the garbage collector's state is read.
SERVE = """
import gc, json, sys, types
from daphne import http_protocol
from daphne.server import Server

def report(self):
    print(json.dumps({"frozen": gc.get_freeze_count(), "thresholds": gc.get_threshold(),
                      "app_loaded": "combo.asgi" in sys.modules,
                      "daphne_http_is_module": type(http_protocol.http) is types.ModuleType,
                      "daphne_http_request": http_protocol.http.Request.__module__}))

Server.run = report
sys.argv = ["daphne", "-b", "127.0.0.1", "-p", "0", "combo.asgi:application"]
from combo.server import main
main()
"""


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> dict:
    """The server process's state just before it would serve (one process for the module's tests)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "combo.settings", "COMBO_DATA_DIR": str(tmp_path_factory.mktemp("serve"))}
    done = subprocess.run([sys.executable, "-c", SERVE], cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_once_the_application_is_loaded_it_is_frozen_and_young_collections_are_rarer(state):
    assert state["app_loaded"]
    assert state["frozen"] > 10_000  # Django, the apps and Twisted
    assert tuple(state["thresholds"]) == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # rarer than the interpreter's default


def test_daphne_writes_through_twisted_web_http_itself_not_its_deprecation_proxy(state):
    assert state["daphne_http_is_module"]
    assert state["daphne_http_request"] == "twisted.web.http"


def test_serve_on_a_busy_port_says_so_plainly_and_exits(tmp_path):
    """`make run` twice: the second says the port is taken and how to pick another, without a traceback."""
    import socket

    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    # The port is refused before any database is touched: the embedded defaults are enough.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"DJANGO_SETTINGS_MODULE": "combo.settings", "COMBO_DATA_DIR": str(tmp_path)}
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                       check=True, timeout=120)
        done = subprocess.run([sys.executable, "manage.py", "serve", "--port", str(port), "--no-worker"], cwd=ROOT,
                              env=env, capture_output=True, text=True, check=False, timeout=60)
    finally:
        holder.close()
    assert done.returncode == 1
    assert f"Port {port} is already in use" in done.stderr
    assert f"PORT={port + 1}" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Combo is starting" not in done.stdout
