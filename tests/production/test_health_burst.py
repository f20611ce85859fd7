"""GET /v1/health under concurrent probes: every answer healthy while the dependencies are.

Load balancers poll every server process, often several at once. A live
daphne process gets bursts of concurrent health requests; each must be a 200
with every check ok. Runs on SQLite with the in-memory channel layer in the
first pass of `make test`, and on PostgreSQL with channels-redis in the
second (tests/production_suite.py), where the Redis connections the process
holds must not grow with the number of checks.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.live import LiveCombo

REDIS_URL = os.environ.get("REDIS_URL", "")
BURST = 40
BURSTS = 5


@pytest.fixture(scope="module")
def server():
    # Every probe comes from 127.0.0.1: lift the per-address budget, which is not what is tested here.
    combo = LiveCombo(env={"COMBO_RATELIMIT_DEFAULT": "100000"})
    combo.migrate()
    combo.url = combo.start()
    yield combo
    combo.stop()


def burst(url: str, count: int = BURST) -> list[tuple[int, dict, float]]:
    """`count` health requests at once, each on its own connection: (status, body, seconds) each."""
    def one(client: httpx.Client) -> tuple[int, dict, float]:
        started = time.perf_counter()
        response = client.get("/v1/health")
        return response.status_code, response.json(), time.perf_counter() - started

    clients = [httpx.Client(base_url=url, timeout=20) for _ in range(count)]
    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(one, clients))
    finally:
        for client in clients:
            client.close()


def unhealthy(answers: list[tuple[int, dict, float]]) -> list[dict]:
    return [
        body for status, body, _took in answers
        if status != 200 or not all(check.get("ok") for check in body.get("checks", {}).values())
    ]


def test_concurrent_health_checks_are_all_healthy(server):
    port = server.ports[0]
    for _ in range(BURSTS):
        answers = burst(server.url)
        bad = unhealthy(answers)
        assert not bad, (
            f"{len(bad)} of {len(answers)} concurrent health checks were not healthy; first: {bad[0]}\n"
            f"server log:\n{server.log(port)[-3000:]}"
        )
    times = sorted(took for _status, _body, took in answers)
    assert statistics.median(times) < 2.0, f"median health latency {statistics.median(times):.2f} s"
    assert "health check channel_layer failed" not in server.log(port)


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of process `pid`'s sockets (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not REDIS_URL.startswith("redis"), reason="channels-redis only (production suite)")
def test_health_bursts_do_not_add_redis_connections(server):
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    pid = server.processes[0].pid

    def connections() -> int:
        """The server process's own Redis connections (the cache's and the channel layer's)."""
        ports = local_ports(pid)
        return sum(1 for entry in client.client_list() if int(entry["addr"].rsplit(":", 1)[1]) in ports)

    burst(server.url)
    time.sleep(0.5)
    before = connections()
    for _ in range(BURSTS):
        assert not unhealthy(burst(server.url))
    time.sleep(0.5)
    after = connections()
    client.close()
    assert before > 0  # the count does see the server's connections
    # Pools, not a connection per check: the cache's and the channel layer's
    # each grow at most to the requests served at once (COMBO_HTTP_THREADS,
    # 8), whatever the number of checks.
    assert after <= 2 * 8 + 2, f"Redis connections went from {before} to {after} over {BURSTS} bursts of {BURST}"


@pytest.mark.skipif(not REDIS_URL.startswith("redis"), reason="channels-redis only (production suite)")
def test_with_redis_away_the_channel_layer_check_fails_in_time_and_recovers():
    """The round trip is real: Redis cut off is a 503 naming the channel layer within
    COMBO_HEALTH_TIMEOUT_SECONDS, and the same process is healthy again once Redis is back."""
    from urllib.parse import urlsplit

    from tests.tcprelay import TcpRelay

    target = urlsplit(REDIS_URL)
    relay = TcpRelay((target.hostname, target.port or 6379))
    through_relay = target._replace(netloc=f"127.0.0.1:{relay.port}").geturl()
    combo = LiveCombo(env={"COMBO_RATELIMIT_DEFAULT": "100000", "COMBO_HEALTH_TIMEOUT_SECONDS": "1"})
    combo.env["REDIS_URL"] = through_relay
    try:
        combo.migrate()
        url = combo.start()
        assert not unhealthy(burst(url, 10))
        relay.cut(refuse=False)  # accepted and dropped: a Redis that is there and answers nothing
        answers = burst(url, 10)
        assert {status for status, _body, _took in answers} == {503}
        assert all(body["data"]["checks"]["channel_layer"]["ok"] is False for _status, body, _took in answers)
        assert all(body["data"]["checks"]["database"]["ok"] is True for _status, body, _took in answers)
        # Each check is bounded (1 s each for the cache and the channel layer); 10 probes share 8 threads.
        assert max(took for _status, _body, took in answers) < 8.0
        relay.restore()
        deadline = time.monotonic() + 10
        while unhealthy(burst(url, 10)):
            assert time.monotonic() < deadline, f"not healthy 10 s after Redis came back:\n{combo.log(combo.ports[0])[-3000:]}"
            time.sleep(0.5)
        assert not unhealthy(burst(url, 40))
    finally:
        combo.stop()
        relay.close()


@pytest.mark.skipif(not REDIS_URL.startswith("redis"), reason="Redis only (production suite)")
def test_connections_redis_closed_cost_no_request_after_it_is_back():
    """Redis restarted (or a proxy, a failover): every pooled connection is closed at once and
    Redis answers again right away. The first commands on those connections meet "Connection
    closed by server"; each is sent again on a new connection, so no check or count fails."""
    from urllib.parse import urlsplit

    from tests.tcprelay import TcpRelay

    target = urlsplit(REDIS_URL)
    relay = TcpRelay((target.hostname, target.port or 6379))
    combo = LiveCombo(env={"COMBO_RATELIMIT_DEFAULT": "100000"})
    combo.env["REDIS_URL"] = target._replace(netloc=f"127.0.0.1:{relay.port}").geturl()
    try:
        combo.migrate()
        key = combo.create_key("alice")
        url = combo.start()
        assert not unhealthy(burst(url, 20))  # the pools now hold open connections
        for _ in range(3):
            relay.cut()
            relay.restore()
            answers = burst(url, 40)
            assert not unhealthy(answers), f"{unhealthy(answers)[:1]}\n{combo.log(combo.ports[0])[-3000:]}"
            # A counted call still counts in Redis (it does not fail open on a closed connection).
            listed = httpx.get(f"{url}/v1/combo/agents", headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert listed.status_code == 200 and "X-RateLimit-Remaining" in listed.headers
        assert "Connection closed by server" not in combo.log(combo.ports[0])
    finally:
        combo.stop()
        relay.close()
