"""Two live daphne processes over one Redis share one budget per API key.

Skipped, with the reason printed, when no Redis answers at COMBO_TEST_REDIS_URL
(default redis://127.0.0.1:6379/11). That database is flushed before and after.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("COMBO_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
CEILING = 5


def _redis_or_skip():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    return client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"daphne on {port} exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"daphne on {port} did not start: {log.read_text()[-2000:]}")


def _get(port: int, path: str, key: str):
    """(status, headers (case-insensitive), envelope)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


@pytest.fixture
def product_env(tmp_path):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("COMBO_", "DJANGO_")) and name not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="combo.settings",
        COMBO_DATA_DIR=str(tmp_path / "data"),
        REDIS_URL=REDIS_URL,
        COMBO_RATELIMIT_DEFAULT=str(CEILING),
        LOG_LEVEL="WARNING",
    )
    return env


def _manage(env, *args) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_two_server_processes_share_one_budget_per_key(product_env, tmp_path):
    redis_client = _redis_or_skip()
    redis_client.flushdb()
    _manage(product_env, "migrate", "--noinput", "-v", "0")
    key = _manage(product_env, "createapikey", "u", "--create-user")
    other_key = _manage(product_env, "createapikey", "u", "--name", "second")

    servers = []
    try:
        for _ in range(2):
            port = _free_port()
            log = tmp_path / f"daphne-{port}.log"
            with log.open("w") as out:  # the child keeps its own copy of the descriptor
                process = subprocess.Popen(
                    [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "combo.asgi:application"],
                    cwd=REPO, env=product_env, stdout=out, stderr=subprocess.STDOUT,
                )
            servers.append((port, process, log))
        for port, process, log in servers:
            _wait_for_port(port, process, log)
        ports = [port for port, _, _ in servers]

        # GET /v1/openapi.json is a default-family operation that takes API keys.
        path = "/v1/openapi.json"
        status, headers, _ = _get(ports[0], path, key)
        assert status == 200
        if int(headers["X-RateLimit-Reset"]) < 10:
            # Too close to this key's window end to count six requests in one window:
            # wait (under 10 s) for the next one, then start counting again.
            time.sleep(int(headers["X-RateLimit-Reset"]))
            redis_client.flushdb()
            status, headers, _ = _get(ports[0], path, key)
        seen = [(ports[0], status, headers["X-RateLimit-Remaining"])]
        for n in range(1, CEILING + 1):
            port = ports[n % 2]
            status, headers, body = _get(port, path, key)
            seen.append((port, status, headers.get("X-RateLimit-Remaining")))

        assert [(s, r) for _, s, r in seen] == [
            (200, "4"), (200, "3"), (200, "2"), (200, "1"), (200, "0"), (429, "0")
        ], seen
        # The refusal comes from the second process, which had itself served only two
        # requests: a per-process count would have let it through.
        assert [p for p, _, _ in seen].count(ports[1]) == 3 and seen[-1][0] == ports[1]
        assert body["code"] == 10090
        assert body["message"] == f"Rate limit for default exceeded: {CEILING} requests per minute."
        assert 1 <= int(headers["Retry-After"]) <= 60

        # Both processes refuse that key now; another key of the same user is untouched.
        assert _get(ports[0], path, key)[0] == 429
        status, headers, _ = _get(ports[0], path, other_key)
        assert status == 200 and headers["X-RateLimit-Remaining"] == str(CEILING - 1)
    finally:
        for _, process, _ in servers:
            process.terminate()
        for _, process, _ in servers:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        redis_client.flushdb()
