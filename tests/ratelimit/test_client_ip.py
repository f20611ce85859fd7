"""The client IP: X-Forwarded-For only from a trusted proxy, right-most untrusted hop."""

from __future__ import annotations

import pytest

from combo import ratelimit

pytestmark = pytest.mark.django_db


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "192.0.2.1"]


def health(api, remote, forwarded=None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return api.get("/v1/health", **extra)


def test_a_client_cannot_choose_its_address_with_x_forwarded_for(api, clock, limits):
    limits(health=2)
    assert health(api, "198.51.100.7", "1.1.1.1")[0] == 200
    assert health(api, "198.51.100.7", "2.2.2.2")[0] == 200
    status, body, _ = health(api, "198.51.100.7", "3.3.3.3")
    assert status == 429 and body["code"] == 10090


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(api, clock, limits, behind_proxy):
    limits(health=1)
    assert health(api, "10.0.0.5", "203.0.113.5")[0] == 200
    assert health(api, "10.0.0.5", "203.0.113.5")[0] == 429
    assert health(api, "10.0.0.5", "203.0.113.6")[0] == 200


def test_a_forged_hop_left_of_the_real_client_is_ignored(api, clock, limits, behind_proxy):
    limits(health=1)
    assert health(api, "10.0.0.5", "203.0.113.5")[0] == 200
    # The client wrote "9.9.9.9"; our proxy appended the address it really saw.
    assert health(api, "10.0.0.5", "9.9.9.9, 203.0.113.5")[0] == 429


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("198.51.100.7", None, "198.51.100.7"),
        ("198.51.100.7", "203.0.113.5", "198.51.100.7"),  # untrusted peer: header ignored
        ("10.0.0.5", None, "10.0.0.5"),
        ("10.0.0.5", "203.0.113.5", "203.0.113.5"),
        ("10.0.0.5", "9.9.9.9, 203.0.113.5", "203.0.113.5"),
        ("10.0.0.5", "203.0.113.5, 10.1.2.3", "203.0.113.5"),  # a chain of our proxies
        ("10.0.0.5", "203.0.113.5, 192.0.2.1", "203.0.113.5"),  # a single trusted address
        ("10.0.0.5", "10.9.9.9, 10.1.2.3", "10.9.9.9"),  # every hop ours: the farthest one
        ("10.0.0.5", "203.0.113.5:4711", "203.0.113.5"),  # a port some balancers add
        ("10.0.0.5", "[2001:db8::1]:4711", "2001:db8::1"),
        ("10.0.0.5", "unknown, 10.1.2.3", "10.1.2.3"),  # not an address: stop at our last hop
        ("10.0.0.5", "", "10.0.0.5"),
        ("::ffff:10.0.0.5", "203.0.113.5", "203.0.113.5"),  # IPv4-mapped peer
        ("", "203.0.113.5", "unknown"),
    ],
)
def test_client_ip(remote, forwarded, expected, behind_proxy):
    assert ratelimit.client_ip(remote, forwarded) == expected


def test_scope_client_ip_reads_the_asgi_scope_the_same_way(behind_proxy):
    scope = {
        "type": "http",
        "client": ("10.0.0.5", 51000),
        "headers": [(b"x-forwarded-for", b"9.9.9.9"), (b"X-Forwarded-For", b"203.0.113.5")],
    }
    assert ratelimit.scope_client_ip(scope) == "203.0.113.5"
    assert ratelimit.scope_client_ip({"type": "http", "client": ("198.51.100.7", 1), "headers": []}) == "198.51.100.7"
    assert ratelimit.scope_client_ip({"type": "http", "client": None, "headers": []}) == "unknown"


def test_a_bad_trusted_proxies_value_stops_the_process(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from combo.env import envnetworks

    monkeypatch.setenv("COMBO_TRUSTED_PROXIES", "10.0.0.0/8, not-an-ip")
    with pytest.raises(ImproperlyConfigured, match="COMBO_TRUSTED_PROXIES"):
        envnetworks("COMBO_TRUSTED_PROXIES", [])
    monkeypatch.setenv("COMBO_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1, 2001:db8::/32")
    assert envnetworks("COMBO_TRUSTED_PROXIES", []) == ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]


def test_serve_does_not_let_daphne_believe_forwarded_headers():
    """daphne --proxy-headers takes the left-most X-Forwarded-For from anyone."""
    from combo.server import daphne_command

    for command in (daphne_command(fd=7), daphne_command("127.0.0.1", 9380)):
        assert "combo.server" in command and "combo.asgi:application" in command
    assert not any(arg.startswith("--proxy-headers") for arg in command)


def test_health_probes_have_a_budget_apart_from_the_apis(api, clock, limits):
    limits(health=3, default=2)
    for remaining in ("2", "1", "0"):
        status, _, response = health(api, "198.51.100.9")
        assert status == 200 and response["X-RateLimit-Remaining"] == remaining
        assert response["X-RateLimit-Limit"] == "3"
    status, body, _ = health(api, "198.51.100.9")
    assert status == 429 and body["data"]["family"] == "health"
    # The same address's API budget is untouched by the probes.
    status, body, response = api.post("/v1/auth/token/refresh", {}, REMOTE_ADDR="198.51.100.9")
    assert status == 400 and response["X-RateLimit-Limit"] == "2" and response["X-RateLimit-Remaining"] == "1"


def test_the_health_ceiling_defaults_to_twenty_a_second():
    from combo.settings import RATE_LIMITS

    assert ratelimit.operation_family("GET", "/v1/health")[0] == ratelimit.HEALTH
    assert RATE_LIMITS["health"] == 1200
