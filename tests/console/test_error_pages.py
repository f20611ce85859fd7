"""Error pages: a console 404, 405 or 500 is a page in the console's layout.

/v1 keeps its JSON envelope and /admin keeps Django admin's own pages.
"""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from combo.security import HEADER_VALUE

NAV = 'class="mainnav"'
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')


def body(response) -> str:
    return response.content.decode()


def assert_console_page(response, status: int) -> str:
    page = body(response)
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    assert response["Content-Security-Policy"] == HEADER_VALUE
    assert 'class="topbar"' in page and 'class="footer"' in page  # the console's layout
    assert 'href="/console/"' in page  # a way back
    assert "<script>" not in page  # nothing inline (the CSP would block it)
    return page


def test_another_users_agent_is_a_console_404_like_a_missing_one(alice_client, bob_agent):
    missing = alice_client.get("/console/agents/00000000-0000-0000-0000-000000000001/")
    bobs = alice_client.get(f"/console/agents/{bob_agent.id}/")
    page = assert_console_page(bobs, 404)
    assert NAV in page and "alice" in page  # signed in: the navigation and the account
    assert "Page not found" in page
    assert "Bob" not in page and str(bob_agent.id) not in page
    # Exactly the same page as an agent that does not exist.
    def same(text: str) -> str:
        return CSRF.sub("", text)

    assert same(body(missing)) == same(page)


def test_a_missing_console_page_is_a_console_404(alice_client):
    page = assert_console_page(alice_client.get("/console/no-such-page/"), 404)
    assert NAV in page and "Page not found" in page


def test_a_404_outside_the_console_is_in_the_layout_too(client):
    page = assert_console_page(client.get("/no-such-page"), 404)
    assert NAV not in page  # signed out: no navigation, still a way back
    assert "Page not found" in page


def test_a_405_is_a_console_page_with_its_allow_header(alice_client):
    response = alice_client.get("/console/logout/")  # sign out is POST only
    page = assert_console_page(response, 405)
    assert "POST" in response["Allow"]
    assert NAV in page and "Nothing was changed" in page

    response = alice_client.post("/console/agents/")  # a list takes no POST
    page = assert_console_page(response, 405)
    assert response["Allow"] == "GET"


def test_v1_keeps_its_json_envelope(client, alice):
    for response, status, code in (
        (client.get("/v1/no-such-endpoint", **alice.key_auth), 404, 10040),
        (client.post("/v1/health"), 405, 10050),
    ):
        assert response.status_code == status
        assert response["Content-Type"].startswith("application/json")
        assert json.loads(response.content)["code"] == code
        assert 'class="topbar"' not in body(response)


def test_admin_keeps_djangos_own_404(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/admin/no-such-page/")
    assert response.status_code == 404
    assert 'class="topbar"' not in body(response)


@pytest.fixture
def crashing_client(alice) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(alice.user)
    return client


def test_a_console_500_is_in_the_layout_and_leaks_nothing(crashing_client):
    response = crashing_client.get("/console/test/crash/", HTTP_X_REQUEST_ID="req-for-support-123")
    page = assert_console_page(response, 500)
    assert "Something went wrong" in page
    assert "req-for-support-123" in page  # the reference an operator finds in the log
    for leak in ("hunter2", "RuntimeError", "Traceback", "secret-db-password", "alice"):
        assert leak not in page


def test_a_v1_500_keeps_its_envelope(crashing_client, alice):
    response = crashing_client.get("/v1/test/crash", **alice.key_auth)
    assert response.status_code == 500 and json.loads(response.content)["code"] == 20001
    assert "hunter2" not in body(response)
