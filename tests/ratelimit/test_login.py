"""POST /v1/auth/token: 10 tries a minute per client IP and, separately, per username."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

TOKEN = "/v1/auth/token"
RIGHT = "correct horse battery"  # the cast's password (tests/conftest.py)


def login(api, username, password, ip="198.51.100.10"):
    return api.post(TOKEN, {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_the_11th_try_for_one_username_is_refused_even_with_the_right_password(api, alice, clock):
    # Ten wrong passwords from ten addresses: the per-IP budget cannot stop this one.
    for n in range(10):
        status, body, _ = login(api, "alice", "wrong", ip=f"198.51.100.{n + 1}")
        assert status == 401 and body["code"] == 10014

    status, body, response = login(api, "alice", RIGHT, ip="203.0.113.99")

    assert status == 429
    assert body["code"] == 10090
    assert body["message"] == "Rate limit for login exceeded: 10 requests per minute."
    assert body["data"]["family"] == "login" and body["data"]["limit"] == 10
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "access" not in body["data"]


def test_the_11th_try_from_one_address_is_refused_whatever_the_username(api, alice, clock):
    for n in range(10):
        assert login(api, f"guess{n}", "wrong")[0] == 401

    status, body, _ = login(api, "alice", RIGHT)
    assert status == 429 and body["data"]["family"] == "login"

    # Alice herself, from her own address, still gets in.
    status, body, _ = login(api, "alice", RIGHT, ip="203.0.113.7")
    assert status == 200 and body["data"]["access"]


def test_usernames_that_differ_only_in_case_share_a_budget(api, alice, clock):
    for n in range(5):
        login(api, "alice", "wrong", ip=f"198.51.100.{n + 1}")
        login(api, "ALICE", "wrong", ip=f"198.51.100.{n + 101}")
    assert login(api, "Alice", RIGHT, ip="203.0.113.99")[0] == 429


def test_a_login_within_budget_works_and_shows_the_tighter_budget(api, alice, clock):
    login(api, "alice", "wrong", ip="198.51.100.1")
    login(api, "alice", "wrong", ip="198.51.100.1")
    login(api, "bob", "wrong", ip="198.51.100.2")

    status, body, response = login(api, "alice", RIGHT, ip="198.51.100.2")
    assert status == 200 and body["data"]["access"]
    # Alice's username has 3 tries spent, the address 2: the headers show the username's.
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("10", "7")


def test_login_opens_again_when_the_window_passes(api, alice, clock):
    for n in range(10):
        login(api, "alice", "wrong", ip=f"198.51.100.{n + 1}")
    status, _, _response = login(api, "alice", RIGHT, ip="198.51.100.200")
    assert status == 429

    clock.shift(60)
    status, body, _ = login(api, "alice", RIGHT, ip="198.51.100.200")
    assert status == 200 and body["data"]["access"]


def test_token_refresh_is_in_the_default_family_per_address(api, alice, clock, limits):
    limits(default=1)
    status, body, _ = login(api, "alice", RIGHT)
    refresh = body["data"]["refresh"]
    assert api.post("/v1/auth/token/refresh", {"refresh": refresh}, REMOTE_ADDR="198.51.100.10")[0] == 200
    status, body, _ = api.post("/v1/auth/token/refresh", {"refresh": refresh}, REMOTE_ADDR="198.51.100.10")
    assert status == 429 and body["data"]["family"] == "default"


def test_a_malformed_login_body_is_a_400_not_a_crash(api, db, clock):
    status, body, _ = api.post(TOKEN, raw=b'{"username": ', REMOTE_ADDR="198.51.100.10")
    assert status == 400 and body["code"] == 10002

    # A username that is not a string counts against the address only.
    for _ in range(10):
        status, body, _ = api.post(TOKEN, {"username": 42, "password": "x"}, REMOTE_ADDR="198.51.100.11")
        assert status in (400, 401), body
    status, body, _ = api.post(TOKEN, {"username": 42, "password": "x"}, REMOTE_ADDR="198.51.100.11")
    assert status == 429


def test_a_username_no_utf8_can_carry_is_counted_like_any_other(api, db, clock, caplog, settings):
    settings.RATE_LIMIT_FAIL_OPEN = False  # a count that failed would be a 503 here
    for n in range(10):
        status, body, response = api.post(TOKEN, raw=b'{"username": "eve\\ud800", "password": "x"}',
                                           REMOTE_ADDR=f"198.51.100.{n + 20}")
        assert status in (400, 401), body
        assert response["X-RateLimit-Remaining"] == str(9 - n)
    status, body, _ = api.post(TOKEN, raw=b'{"username": "eve\\ud800", "password": "x"}', REMOTE_ADDR="203.0.113.5")
    assert (status, body["code"]) == (429, 10090)
    assert "cache unavailable" not in caplog.text


# --- The sign-in pages (console and Django admin) share these budgets ---------------------

SIGN_IN_PAGES = ["/console/login/", "/admin/login/"]


def sign_in(client, page, username, password, ip="198.51.100.10"):
    return client.post(page, {"username": username, "password": password}, REMOTE_ADDR=ip)


@pytest.mark.parametrize("page", SIGN_IN_PAGES)
def test_a_sign_in_page_refuses_the_11th_try_for_one_username_even_with_the_right_password(
    client, admin_user, clock, page
):
    # Ten wrong passwords from ten addresses: guessing through the page is counted like the API's.
    for n in range(10):
        response = sign_in(client, page, "admin", "wrong", ip=f"198.51.100.{n + 1}")
        assert response.status_code == 200 and "_auth_user_id" not in client.session

    response = sign_in(client, page, "admin", "admin pass 123", ip="203.0.113.99")

    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert "Too many sign-in attempts" in response.content.decode()

    clock.shift(60)
    response = sign_in(client, page, "admin", "admin pass 123", ip="203.0.113.99")
    assert response.status_code == 302 and "_auth_user_id" in client.session


@pytest.mark.parametrize("page", SIGN_IN_PAGES)
def test_a_sign_in_page_and_the_api_spend_one_budget_per_address(api, client, admin_user, clock, page):
    for n in range(5):
        assert login(api, f"guess{n}", "wrong")[0] == 401
        assert sign_in(client, page, f"other{n}", "wrong").status_code == 200

    assert login(api, "admin", "admin pass 123")[0] == 429
    response = sign_in(client, page, "admin", "admin pass 123")
    assert "Too many sign-in attempts" in response.content.decode() and "_auth_user_id" not in client.session
