"""The API page: base URL, auth modes, limits, samples with a real agent id, tools."""

from __future__ import annotations

import json

from django.test import override_settings


def body(response) -> str:
    return response.content.decode()


def test_the_api_page_fills_the_samples_with_the_base_url_and_a_real_agent(alice_client, alice_agent):
    page = body(alice_client.get("/console/api/"))
    base = "http://testserver/v1"
    assert f'value="{base}"' in page
    assert f"curl {base}/combo/agents/{alice_agent.id}/completions" in page
    assert f'client.sessions.create(agent_id="{alice_agent.id}")' in page
    assert "from combo_sdk import ComboAgent" in page and f'base_url="{base}"' in page


def test_the_samples_follow_the_chosen_agent_but_only_among_alices(alice_client, alice, alice_agent, bob_agent):
    from agents import services

    newest = services.agent_create(owner=alice.user, name="Second")

    def curl_of(page: str) -> str:
        return page.split('id="sample-curl"', 1)[1].split("</pre>", 1)[0]

    assert str(newest.id) in curl_of(body(alice_client.get("/console/api/")))
    assert str(alice_agent.id) in curl_of(body(alice_client.get(f"/console/api/?agent={alice_agent.id}")))
    page = body(alice_client.get(f"/console/api/?agent={bob_agent.id}"))
    assert str(bob_agent.id) not in page and str(newest.id) in curl_of(page)


def test_without_agents_the_samples_say_where_the_id_goes(alice_client):
    page = body(alice_client.get("/console/api/"))
    assert "/combo/agents/&lt;agent_id&gt;/completions" in page
    assert "/console/agents/new/" in page


def test_the_api_page_lists_the_three_auth_modes_and_the_rate_limits(alice_client):
    page = body(alice_client.get("/console/api/"))
    for header in ("Authorization: Bearer ragflow-&lt;key&gt;", "Authorization: Bearer &lt;jwt&gt;",
                   "X-Combo-Signature: sha256=&lt;hex&gt;"):
        assert header in page
    table = page.split('id="rate-limits"', 1)[1].split("</table>", 1)[0]
    rows = [(family, limit) for family, limit in (("Completions", 60), ("File uploads", 10), ("Everything else", 300))]
    for family, limit in rows:
        assert family in table and f'<td class="num">{limit}</td>' in table


@override_settings(RATE_LIMITS={"completions": 7, "uploads": 3, "default": 99, "login": 10, "webhook": 99})
def test_the_rate_limit_table_shows_this_deployments_ceilings(alice_client):
    table = body(alice_client.get("/console/api/")).split('id="rate-limits"', 1)[1]
    assert '<td class="num">7</td>' in table and '<td class="num">3</td>' in table and '<td class="num">99</td>' in table


def test_the_api_page_links_docs_openapi_and_the_postman_download(alice_client):
    page = body(alice_client.get("/console/api/"))
    assert 'href="/v1/docs"' in page and 'href="/v1/openapi.json"' in page
    assert 'href="/console/api/postman.json" download="combo.postman_collection.json"' in page


def test_the_postman_download_is_an_attachment_for_signed_in_users(alice_client):
    response = alice_client.get("/console/api/postman.json")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="combo.postman_collection.json"'
    assert json.loads(response.content)["info"]["name"] == "Combo API"


def test_the_admin_index_links_the_api_page_and_the_collection(client, admin_user):
    client.force_login(admin_user)
    page = body(client.get("/admin/"))
    assert 'href="/console/api/"' in page and 'href="/console/api/postman.json"' in page
    assert "Combo administration" in page
