"""A server process serves again soon after PostgreSQL comes back (combo.dbpool).

Live daphne processes on their own database. The connections a restart
kills are played by pg_terminate_backend (the shared server itself is not
stopped); an outage by a TCP relay between the process and PostgreSQL that
the test cuts and restores (tests/tcprelay.py), refusing or dropping
connections meanwhile, or accepting them and never answering. PostgreSQL only: the second
pass of `make test` (tests/production_suite.py).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from tests.live import LiveCombo, _create_pg_database, _drop_pg_database
from tests.tcprelay import TcpRelay

DATABASE_URL = os.environ.get("DATABASE_URL", "")
pytestmark = pytest.mark.skipif(not DATABASE_URL.startswith("postgres"), reason="PostgreSQL only (production suite)")


@pytest.fixture
def database():
    url = _create_pg_database(DATABASE_URL)
    yield url
    _drop_pg_database(url)


def start(database_url: str, server_env: dict | None = None) -> tuple[LiveCombo, str, dict]:
    combo = LiveCombo(env={"DATABASE_URL": database_url})
    combo.migrate()
    headers = {"Authorization": f"Bearer {combo.create_key('alice')}"}
    return combo, combo.start(server_env), headers


def relayed(database: str) -> tuple[TcpRelay, str]:
    """A TCP relay to the database, and the database's URL through it."""
    target = urlsplit(database)
    relay = TcpRelay((target.hostname, target.port or 5432))
    userinfo = target.netloc.rpartition("@")[0]
    return relay, target._replace(netloc=f"{userinfo}{'@' if userinfo else ''}127.0.0.1:{relay.port}").geturl()


def status(url: str, headers: dict) -> int | str:
    """The status of one API call that reads the database; a 503 other than the database's is told apart."""
    try:
        response = httpx.get(f"{url}/v1/combo/agents", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    if response.status_code == 503 and response.json()["code"] != 20002:
        return f"503 code {response.json()['code']}"
    return response.status_code


def warm(url: str, headers: dict) -> None:
    """Concurrent requests, so the pool holds several idle connections afterwards."""
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: status(url, headers), range(64))) == {200}


def backends(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]


def test_connections_killed_cost_one_failed_request_not_one_per_pooled_connection(database):
    combo, url, headers = start(database)
    try:
        warm(url, headers)
        pooled = backends(database)
        assert pooled >= 3, "the pool should hold several connections for this test to mean anything"
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        # One request at a time, as a quiet hour's traffic: before, each took the next dead connection.
        seen = []
        for _ in range(pooled + 4):
            seen.append(status(url, headers))
            time.sleep(0.2)
    finally:
        combo.stop()
    assert seen.count(200) >= len(seen) - 1, f"{pooled} pooled connections killed; statuses {seen}"
    assert seen[-4:] == [200] * 4


def test_after_an_outage_a_process_serves_again_within_two_seconds_without_hammering_the_database(database):
    relay, through_relay = relayed(database)
    combo, url, headers = start(through_relay)
    results: list[tuple[float, float, int | str]] = []
    stop = threading.Event()

    def one():
        started = time.monotonic()
        code = status(url, headers)
        results.append((started, time.monotonic(), code))

    def traffic():  # a request every 0.25 s, each in its own thread, as independent clients send them
        while not stop.wait(0.25):
            threading.Thread(target=one, daemon=True).start()

    try:
        warm(url, headers)
        threading.Thread(target=traffic, daemon=True).start()
        time.sleep(1)
        relay.cut(refuse=False)  # the address answers and drops each connection: every try is counted
        cut_at = time.monotonic()
        time.sleep(20)  # long enough for psycopg_pool's default backoff to reach 16 s between tries
        attempts, outage = relay.attempts_while_cut, time.monotonic() - cut_at
        relay.restore()
        back_at = time.monotonic()
        time.sleep(6)
        stop.set()
        time.sleep(1)
    finally:
        combo.stop()
        relay.close()
    during = [s for started, ended, s in results if cut_at + 1 < started and ended < back_at]
    assert during and set(during) == {503}, during  # the outage was real
    after = sorted((started, ended, s) for started, ended, s in results if started > back_at)
    first_ok = min((ended - back_at for started, ended, s in after if s == 200), default=None)
    assert first_ok is not None and first_ok < 2.0, f"first 200 {first_ok} s after the database came back; {after}"
    assert [s for started, ended, s in after if started > back_at + 2] == [200] * len(
        [1 for started, ended, s in after if started > back_at + 2])
    # Tries while it was away: a few per connection lost at first, then about one a second.
    assert attempts <= 3 * outage, f"{attempts} connection attempts in {outage:.0f} s"


def test_after_a_database_that_never_answered_a_process_serves_again_within_the_connect_timeout(database):
    # A hung server or a half-dead proxy: connections are accepted and never answered, and those
    # stay hung after it recovers. Each of the pool's tries is given up after DB_CONNECT_TIMEOUT;
    # without it psycopg waits 130 s on each, and the pool's workers with it.
    connect_timeout = 2
    relay, through_relay = relayed(database)
    combo, url, headers = start(through_relay, {"DB_CONNECT_TIMEOUT": str(connect_timeout)})
    try:
        warm(url, headers)
        relay.cut(refuse=False, hang=True)
        during = []
        while not relay.hung_at and len(during) < 40:  # the pooled connections, closed, fail first
            during.append(status(url, headers))
        with ThreadPoolExecutor(4) as pool:  # then requests wait for a connection while it hangs
            during += pool.map(lambda _: status(url, headers), range(4))
        relay.restore()
        back_at, tries = time.monotonic(), relay.hung_at
        first_ok = None
        while first_ok is None and time.monotonic() - back_at < 20:
            if status(url, headers) == 200:
                first_ok = time.monotonic() - back_at
            else:
                time.sleep(0.2)
    finally:
        combo.stop()
        relay.close()
    assert set(during) == {503}, during  # the outage was real
    assert tries, "the process never met the hung database"
    assert first_ok is not None and first_ok < connect_timeout + 2, f"first 200 {first_ok} s after it answered again"
