"""Retry-After and X-RateLimit-Reset are honest: whole seconds, never 0, exact under time travel."""

from __future__ import annotations

import pytest

from combo import ratelimit
from tests.ratelimit.conftest import COMPLETIONS

pytestmark = [pytest.mark.urls("tests.ratelimit.urls"), pytest.mark.django_db]


def complete(api, auth):
    return api.post(COMPLETIONS, {"question": "hi"}, auth=auth)


def test_retry_after_counts_down_to_the_second_the_window_frees(api, alice, clock, limits):
    limits(completions=2)
    assert complete(api, alice.key_auth)[0] == 200
    assert complete(api, alice.key_auth)[0] == 200
    status, _, response = complete(api, alice.key_auth)
    assert status == 429
    first = int(response["Retry-After"])
    assert 1 <= first <= 60

    # Every second closer, one second less; the last refused second still says 1.
    for waited in range(1, first):
        clock.shift(1)
        status, body, response = complete(api, alice.key_auth)
        assert status == 429, waited
        assert int(response["Retry-After"]) == first - waited
        assert body["data"]["retry_after"] == first - waited
        assert response["X-RateLimit-Reset"] == response["Retry-After"]
    assert response["Retry-After"] == "1"

    # Exactly Retry-After seconds after the first refusal, the window has freed.
    clock.shift(1)
    status, _, response = complete(api, alice.key_auth)
    assert status == 200
    assert response["X-RateLimit-Remaining"] == "1"
    assert response["X-RateLimit-Reset"] == "60"  # a whole fresh window
    assert "Retry-After" not in response


def test_the_window_frees_after_it_passes(api, alice, clock, limits):
    limits(completions=1)
    assert complete(api, alice.key_auth)[0] == 200
    status, _, response = complete(api, alice.key_auth)
    assert status == 429

    clock.shift(int(response["Retry-After"]))
    assert complete(api, alice.key_auth)[0] == 200
    assert complete(api, alice.key_auth)[0] == 429


def test_reset_is_between_1_and_60_whatever_the_second(db, clock):
    # Windows are jittered per caller (django-ratelimit offsets each key's window
    # by a hash of it), so try many callers at many seconds of the minute.
    for second in range(60):
        for n in range(4):
            decision = ratelimit.check("default", client_ip=f"192.0.2.{n}")
            assert 1 <= decision.reset <= 60, (second, n, decision)
        clock.shift(1)


def test_retry_after_is_never_zero_in_the_last_second_of_a_window(db, clock, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "default": 1}
    first = ratelimit.check("default", client_ip="192.0.2.50")
    # Walk to the window's last second (django-ratelimit: time_left == 0).
    clock.shift(first.reset - 1)
    decision = ratelimit.check("default", client_ip="192.0.2.50")
    assert not decision.allowed
    assert decision.retry_after == 1
    assert ratelimit.headers(decision)["Retry-After"] == "1"
