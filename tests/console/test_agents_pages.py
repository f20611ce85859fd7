"""Agents pages and the playground page, through Django's test client.

alice sees and changes only her agents; bob's agent answers 404 on every page.
"""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from agents import services
from agents.models import Agent, KnowledgeFile
from tests.conftest import Api

XSS = "<script>alert(1)</script>"
# Bob's agent or webhook by name, however the page escapes it. Not a bare "Bob": a random
# CSRF token or id in the page can hold those three letters.
BOBS = re.compile(r"Bob(&#x27;|&#39;|'|\\u0027)s")
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def body(response) -> str:
    return response.content.decode()


def create_token(client) -> str:
    """The one-time token of a fresh "New agent" form."""
    page = body(client.get("/console/agents/new/"))
    return re.search(r'name="form_token" value="([^"]+)"', page).group(1)


def test_the_list_shows_alices_agents_and_not_bobs(alice_client, alice_agent, bob_agent):
    page = body(alice_client.get("/console/agents/"))
    assert "Alice&#x27;s helper" in page and str(alice_agent.id) in page
    assert not BOBS.search(page) and str(bob_agent.id) not in page
    assert f"/console/agents/{alice_agent.id}/playground/" in page


def test_an_empty_list_invites_to_create_the_first_agent(alice_client):
    page = body(alice_client.get("/console/agents/"))
    assert "No agents yet" in page and "/console/agents/new/" in page


def test_creating_an_agent_stores_it_for_alice_and_opens_its_playground(alice_client, alice):
    response = alice_client.post("/console/agents/new/", {
        "form_token": create_token(alice_client), "name": "Reviewer", "description": "reviews PRs", "instructions": "Review code.",
        "opening_message": "Send me a diff.", "llm_provider": "builtin", "llm_model": "",
        "temperature": "0.2", "max_tokens": "500",
    })
    agent = Agent.objects.get(name="Reviewer")
    assert response.status_code == 302 and response["Location"] == f"/console/agents/{agent.id}/playground/"
    assert agent.owner == alice.user
    assert (agent.instructions, agent.opening_message, agent.llm_provider, agent.temperature, agent.max_tokens) == (
        "Review code.", "Send me a diff.", "builtin", 0.2, 500,
    )


def test_sending_the_create_form_again_makes_no_second_agent(alice_client):
    form = {"form_token": create_token(alice_client), "name": "Once", "llm_provider": ""}
    assert alice_client.post("/console/agents/new/", form).status_code == 302
    again = alice_client.post("/console/agents/new/", form, follow=True)
    assert again.redirect_chain[-1][0] == "/console/agents/"
    assert "already sent" in body(again)
    assert Agent.objects.filter(name="Once").count() == 1
    # A form without a token (or a made-up one) creates nothing either.
    assert alice_client.post("/console/agents/new/", {**form, "form_token": "made-up"}).status_code == 302
    assert alice_client.post("/console/agents/new/", {"name": "Once", "llm_provider": ""}).status_code == 302
    assert Agent.objects.filter(name="Once").count() == 1


def test_two_copies_of_the_create_form_sent_at_once_make_one_agent(alice_client):
    # A double click or a retried request: the second copy read the session before the first one
    # had spent the form's token in it. The token is still spent only once.
    token = create_token(alice_client)
    before = alice_client.session["agent_form_tokens"]
    first = alice_client.post("/console/agents/new/", {"form_token": token, "name": "Once", "llm_provider": ""})
    session = alice_client.session
    session["agent_form_tokens"] = before
    session.save()
    again = alice_client.post("/console/agents/new/", {"form_token": token, "name": "Once", "llm_provider": ""})
    assert first.status_code == 302 and first["Location"].endswith("/playground/")
    assert again.status_code == 302 and again["Location"] == "/console/agents/"
    assert Agent.objects.filter(name="Once").count() == 1


def test_a_repeated_create_form_says_so_on_the_list(alice_client):
    # The reload and the copy sent at the same moment say the same.
    form = {"form_token": create_token(alice_client), "name": "Once", "llm_provider": ""}
    before = alice_client.session["agent_form_tokens"]
    assert alice_client.post("/console/agents/new/", form).status_code == 302
    reload = alice_client.post("/console/agents/new/", form, follow=True)
    session = alice_client.session
    session["agent_form_tokens"] = before
    session.save()
    at_once = alice_client.post("/console/agents/new/", form, follow=True)
    says = '<p class="flash flash-info">That form was already sent, and its agent is in the list below.</p>'
    for again in (reload, at_once):
        assert again.redirect_chain == [("/console/agents/", 302)] and says in body(again)
    assert Agent.objects.filter(name="Once").count() == 1


def test_a_refused_create_form_keeps_its_token_for_the_corrected_one(alice_client):
    token = create_token(alice_client)
    refused = alice_client.post("/console/agents/new/", {"form_token": token, "name": "", "llm_provider": ""})
    assert refused.status_code == 400 and f'name="form_token" value="{token}"' in body(refused)
    assert alice_client.post("/console/agents/new/", {"form_token": token, "name": "Fixed", "llm_provider": ""}).status_code == 302
    assert Agent.objects.filter(name="Fixed").count() == 1


def test_a_create_that_failed_on_the_server_may_be_sent_again(alice_client, monkeypatch):
    token = create_token(alice_client)
    real_create = services.agent_create

    def broken(**fields):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "agent_create", broken)
    with pytest.raises(RuntimeError):
        alice_client.post("/console/agents/new/", {"form_token": token, "name": "Retried", "llm_provider": ""})
    monkeypatch.setattr(services, "agent_create", real_create)
    response = alice_client.post("/console/agents/new/", {"form_token": token, "name": "Retried", "llm_provider": ""})
    assert response.status_code == 302 and response["Location"].endswith("/playground/")
    assert Agent.objects.filter(name="Retried").count() == 1


def test_multiline_texts_are_stored_with_lf_line_endings(alice_client):
    # Browsers send a textarea's lines with CRLF (and old Macs a bare CR).
    response = alice_client.post("/console/agents/new/", {
        "form_token": create_token(alice_client), "name": "Reviewer", "description": "Reviews\r\nPRs", "instructions": "Review code.\r\n\r\n- Be brief.\r- Be kind.",
        "opening_message": "Hello.\r\nSend me a diff.", "llm_provider": "",
    })
    assert response.status_code == 302
    agent = Agent.objects.get(name="Reviewer")
    assert (agent.description, agent.instructions, agent.opening_message) == (
        "Reviews\nPRs", "Review code.\n\n- Be brief.\n- Be kind.", "Hello.\nSend me a diff.",
    )


def test_saving_an_unchanged_agent_form_changes_no_text(alice_client, alice):
    # Stored through the API, which keeps CRLF as JSON gives it: an unchanged form leaves it so.
    agent = services.agent_create(owner=alice.user, name="Notes", instructions="One\r\nTwo", opening_message="Hi\nthere")
    form = {"name": "Notes", "description": "", "instructions": "One\r\nTwo", "opening_message": "Hi\r\nthere",
            "llm_provider": ""}
    assert alice_client.post(f"/console/agents/{agent.id}/", form).status_code == 302
    agent.refresh_from_db()
    assert (agent.instructions, agent.opening_message) == ("One\r\nTwo", "Hi\nthere")
    # A changed text is stored with LF.
    assert alice_client.post(f"/console/agents/{agent.id}/", {**form, "instructions": "One\r\nTwo\r\nThree"}).status_code == 302
    agent.refresh_from_db()
    assert (agent.instructions, agent.opening_message) == ("One\nTwo\nThree", "Hi\nthere")


def test_form_errors_appear_next_to_their_fields(alice_client):
    response = alice_client.post("/console/agents/new/", {
        "form_token": create_token(alice_client), "name": "", "temperature": "5", "max_tokens": "0", "llm_provider": "nonsense",
    })
    page = body(response)
    assert response.status_code == 400
    assert re.search(r'id="id_name_error">\s*<li>This field is required', page)
    assert re.search(r'id="id_temperature_error">\s*<li>Ensure this value is less than or equal to 2', page)
    assert re.search(r'id="id_max_tokens_error">\s*<li>Ensure this value is greater than or equal to 1', page)
    assert re.search(r'id="id_llm_provider_error">\s*<li>Select a valid choice', page)
    assert re.search(r'<input[^>]*aria-describedby="id_name_helptext id_name_error"[^>]*aria-invalid="true"', page) or \
        re.search(r'<input[^>]*aria-invalid="true"[^>]*aria-describedby="id_name_helptext id_name_error"', page)
    assert not Agent.objects.exists()


def test_editing_changes_instructions_model_and_opening_message(alice_client, alice_agent):
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/"))
    assert "Be brief." in page
    response = alice_client.post(f"/console/agents/{alice_agent.id}/", {
        "name": "Alice's helper", "instructions": "Be thorough.", "opening_message": "Hello!",
        "llm_provider": "", "llm_model": "tiny-model", "temperature": "", "max_tokens": "",
    })
    assert response.status_code == 302
    alice_agent.refresh_from_db()
    assert (alice_agent.instructions, alice_agent.opening_message, alice_agent.llm_model) == (
        "Be thorough.", "Hello!", "tiny-model",
    )


def test_a_refused_edit_shows_the_agent_as_saved_and_the_typed_values_in_the_form(alice_client, alice_agent):
    response = alice_client.post(f"/console/agents/{alice_agent.id}/", {
        "name": "Unsaved name", "instructions": "Be brief.", "llm_provider": "", "llm_model": "",
        "temperature": "5", "max_tokens": "",
    })
    assert response.status_code == 400
    page = body(response)
    # The heading, title and Files section name the agent as it is; the form keeps what was typed.
    heading = re.search(r"<h1>(.*?)</h1>", page, re.S).group(1)
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert "Alice&#x27;s helper" in heading and "Unsaved name" not in heading
    assert "Alice&#x27;s helper" in title and "Unsaved name" not in title
    assert "Unsaved name" in re.search(r'<input[^>]*name="name"[^>]*>', page).group(0)
    alice_agent.refresh_from_db()
    assert alice_agent.name == "Alice's helper"


def test_an_agent_whose_provider_was_dropped_can_still_be_edited(alice_client, alice_agent):
    Agent.objects.filter(id=alice_agent.id).update(llm_provider="gone")
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/"))
    assert '<option value="gone" selected>gone (not configured here)</option>' in page
    response = alice_client.post(f"/console/agents/{alice_agent.id}/", {
        "name": "Renamed", "llm_provider": "gone", "llm_model": "", "temperature": "", "max_tokens": "",
    })
    assert response.status_code == 302
    alice_agent.refresh_from_db()
    assert (alice_agent.name, alice_agent.llm_provider) == ("Renamed", "gone")


def test_deleting_asks_first_and_only_a_post_deletes(alice_client, alice_agent):
    services.session_create(agent=alice_agent, owner=alice_agent.owner)
    confirm = alice_client.get(f"/console/agents/{alice_agent.id}/delete/")
    assert confirm.status_code == 200 and "1 session " in body(confirm) and "cannot be undone" in body(confirm)
    assert Agent.objects.filter(id=alice_agent.id).exists()
    response = alice_client.post(f"/console/agents/{alice_agent.id}/delete/")
    assert response.status_code == 302 and response["Location"] == "/console/agents/"
    assert not Agent.objects.filter(id=alice_agent.id).exists()


def test_deleting_refuses_a_post_without_the_csrf_token(alice, alice_agent):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    assert strict.post(f"/console/agents/{alice_agent.id}/delete/").status_code == 403
    assert Agent.objects.filter(id=alice_agent.id).exists()


@pytest.mark.parametrize("suffix", ["", "delete/", "playground/"])
def test_bobs_agent_is_not_found_for_alice(alice_client, bob_agent, suffix):
    path = f"/console/agents/{bob_agent.id}/{suffix}"
    assert alice_client.get(path).status_code == 404
    if suffix != "playground/":
        assert alice_client.post(path, {"name": "stolen"}).status_code == 404
    bob_agent.refresh_from_db()
    assert bob_agent.name == "Bob's private agent"


def test_the_playground_calls_v1_with_a_page_token_and_never_holds_a_key(alice_client, alice, alice_agent):
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/playground/"))
    assert f'data-completions-url="/v1/combo/agents/{alice_agent.id}/completions"' in page
    assert 'data-token-url="/console/token"' in page
    assert "/static/console/playground.js" in page
    assert alice.api_key not in page and "ragflow-" not in page


def test_the_playground_shows_the_opening_message(alice_client, alice_agent):
    services.agent_update(agent=alice_agent, opening_message="Hi, I am here to help.")
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/playground/"))
    assert "Hi, I am here to help." in page


@pytest.mark.parametrize("limit", [200, 20000])
def test_the_playground_takes_questions_as_long_as_this_deployment_does(alice_client, alice_agent, settings, limit):
    # The question box stops typing and pasting at COMBO_MAX_QUESTION_CHARS, as the API refuses beyond it.
    settings.COMBO_MAX_QUESTION_CHARS = limit
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/playground/"))
    assert re.search(r'<textarea id="question"[^>]*\smaxlength="(\d+)"', page).group(1) == str(limit)


@pytest.mark.parametrize("path", [
    "/console/agents/", "/console/agents/{id}/", "/console/agents/{id}/delete/",
    "/console/agents/{id}/playground/", "/console/api/",
])
def test_agent_names_and_texts_are_escaped_everywhere(alice_client, alice, path):
    agent = services.agent_create(
        owner=alice.user, name=XSS, description=XSS, instructions=XSS, opening_message=XSS,
    )
    page = body(alice_client.get(path.format(id=agent.id)))
    assert XSS not in page
    assert XSS_ESCAPED in page


# --- Edits over a change made meanwhile ------------------------------------------------


def edit_form(client, agent) -> dict:
    """The edit page's form as a browser would send it unchanged: its inputs, textareas and selects."""
    page = body(client.get(f"/console/agents/{agent.id}/"))
    form = re.search(r'<form method="post" action="/console/agents/[^"]+/" class="agent-form".*?</form>', page, re.S).group(0)
    fields = {name: html.unescape(value) for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form)}
    fields.update({name: html.unescape(text) for name, text in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>\n?(.*?)</textarea>', form, re.S)})
    for name, select in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', select)
        fields[name] = html.unescape(chosen.group(1)) if chosen else ""
    fields.pop("csrfmiddlewaretoken", None)
    return fields


def test_an_edit_form_saves_when_nothing_changed_meanwhile(alice_client, alice_agent):
    form = edit_form(alice_client, alice_agent)
    assert form["edit_version"] and form["name"] == "Alice's helper" and form["instructions"] == "Be brief."
    response = alice_client.post(f"/console/agents/{alice_agent.id}/", {**form, "instructions": "Be thorough."})
    assert response.status_code == 302
    alice_agent.refresh_from_db()
    assert (alice_agent.name, alice_agent.instructions) == ("Alice's helper", "Be thorough.")


def test_an_edit_over_an_api_change_made_meanwhile_is_refused_and_saves_nothing(alice_client, alice, alice_agent):
    form = edit_form(alice_client, alice_agent)
    # Meanwhile the API renames the agent and changes its instructions.
    status, _, _ = Api(Client()).patch(
        f"/v1/combo/agents/{alice_agent.id}", {"name": "Renamed by the API", "instructions": "API\nrules"},
        auth=alice.key_auth,
    )
    assert status == 200
    response = alice_client.post(f"/console/agents/{alice_agent.id}/", {**form, "opening_message": "Hello from the form"})
    assert response.status_code == 409
    page = body(response)
    assert "This agent was changed since you opened this page: Name, Instructions. Nothing was saved." in page
    # The form keeps what was typed; the saved values are shown next to it.
    assert "Hello from the form" in re.search(r'<textarea[^>]*name="opening_message".*?</textarea>', page, re.S).group(0)
    assert "Alice&#x27;s helper" in re.search(r'<input[^>]*name="name"[^>]*>', page).group(0)
    saved = re.search(r'<section class="callout callout-warning edit-conflict".*?</section>', page, re.S).group(0)
    assert "Renamed by the API" in saved and "API\nrules" in saved
    assert re.search(r'id="id_name_error">\s*<li>Changed since you opened this page', page)
    assert re.search(r'id="id_instructions_error">\s*<li>Changed since you opened this page', page)
    alice_agent.refresh_from_db()
    assert (alice_agent.name, alice_agent.instructions, alice_agent.opening_message) == (
        "Renamed by the API", "API\nrules", "",
    )
    # The page shown again carries the version as saved now: sending it (merged) saves.
    version = re.search(r'name="edit_version" value="([^"]+)"', page).group(1)
    assert version != form["edit_version"]
    merged = {**form, "edit_version": version, "name": "Renamed by the API", "instructions": "API\r\nrules",
              "opening_message": "Hello from the form"}
    assert alice_client.post(f"/console/agents/{alice_agent.id}/", merged).status_code == 302
    alice_agent.refresh_from_db()
    assert (alice_agent.name, alice_agent.instructions, alice_agent.opening_message) == (
        "Renamed by the API", "API\nrules", "Hello from the form",
    )


def test_after_a_refused_edit_the_reloaded_form_saves(alice_client, alice, alice_agent):
    stale = edit_form(alice_client, alice_agent)
    services.agent_update(agent=alice_agent, llm_model="other-model")  # another tab saved
    assert alice_client.post(f"/console/agents/{alice_agent.id}/", {**stale, "name": "Mine"}).status_code == 409
    alice_agent.refresh_from_db()
    assert (alice_agent.name, alice_agent.llm_model) == ("Alice's helper", "other-model")
    fresh = edit_form(alice_client, alice_agent)
    assert fresh["llm_model"] == "other-model"
    assert alice_client.post(f"/console/agents/{alice_agent.id}/", {**fresh, "name": "Mine"}).status_code == 302
    alice_agent.refresh_from_db()
    assert (alice_agent.name, alice_agent.llm_model) == ("Mine", "other-model")


def test_attaching_a_file_meanwhile_does_not_block_an_edit(alice_client, alice, alice_agent):
    form = edit_form(alice_client, alice_agent)
    file = KnowledgeFile.objects.create(owner=alice.user, name="notes.txt", kind="txt", size=1, sha256="0" * 64)
    services.agent_file_attach(agent=alice_agent, file=file)
    assert alice_client.post(f"/console/agents/{alice_agent.id}/", {**form, "name": "Renamed"}).status_code == 302
    alice_agent.refresh_from_db()
    assert alice_agent.name == "Renamed" and list(alice_agent.files.all()) == [file]
