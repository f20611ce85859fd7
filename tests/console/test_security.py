"""Security headers and a CSP that allows no third-party origin and needs no inline code."""

from __future__ import annotations

import re

import pytest

from combo.security import POLICY

PAGES = [
    "/console/login/", "/console/agents/", "/console/agents/new/", "/console/agents/{id}/",
    "/console/agents/{id}/playground/", "/console/agents/{id}/delete/", "/console/settings/api-keys/",
    "/console/settings/password/", "/console/api/", "/console/files/", "/admin/", "/v1/docs",
]
# A source in a policy may only name this origin, nothing, or inline images.
ALLOWED_SOURCES = {"'self'", "'none'", "data:"}


@pytest.fixture
def staff_client(client, alice):
    alice.user.is_staff = alice.user.is_superuser = True
    alice.user.save()
    client.force_login(alice.user)
    return client


def policy_of(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = [part.strip().split() for part in header.split(";") if part.strip()]
    return {parts[0]: parts[1:] for parts in directives}


@pytest.mark.parametrize("path", PAGES)
def test_every_html_page_has_a_csp_with_no_third_party_origin(staff_client, alice_agent, path):
    if path == "/console/login/":
        staff_client.logout()
    response = staff_client.get(path.format(id=alice_agent.id))
    assert response.status_code == 200
    policy = policy_of(response)
    assert policy["default-src"] == ["'self'"] and policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    for name, sources in policy.items():
        assert set(sources) <= ALLOWED_SOURCES, (name, sources)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


CONSOLE_PAGES = [p for p in PAGES if p.startswith("/console/")] + ["/v1/docs"]


@pytest.mark.parametrize("path", CONSOLE_PAGES)
def test_pages_need_no_inline_script_or_style(staff_client, alice_agent, path):
    """What the policy would block must not be there: scripts and styles come from files."""
    if path == "/console/login/":
        staff_client.logout()
    page = staff_client.get(path.format(id=alice_agent.id)).content.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    assert scripts, "every page loads its JavaScript from a file"
    for attributes, content in scripts:
        assert 'src="/' in attributes and content.strip() == ""
    assert "<style" not in page
    assert not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers
    for url in re.findall(r'\s(?:src|href|action)="([^"]*)"', page):
        assert url.startswith(("/", "#", "?")) or url.startswith("http://testserver/"), url


def test_swagger_ui_loads_its_init_script_from_this_origin(client, db):
    page = client.get("/v1/docs").content.decode()
    assert 'src="/v1/docs?script="' in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    script = client.get("/v1/docs?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()


def test_the_json_api_carries_no_csp(api, alice):
    _, _, response = api.get("/v1/combo/agents", auth=alice.key_auth)
    assert "Content-Security-Policy" not in response


def test_the_policy_in_one_place_names_only_this_origin():
    for sources in POLICY.values():
        assert set(sources.split()) <= ALLOWED_SOURCES
