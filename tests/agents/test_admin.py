"""Django admin's agent pages apply the same rules as the API and the console.

An operator cannot save an agent the API would refuse: a provider this
deployment does not configure, a temperature outside 0-2, max_tokens outside
1-200,000, or knowledge files of another user.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

import agents.admin
from agents import services
from agents.knowledge import services as knowledge
from agents.models import Agent

ADD = "/admin/agents/agent/add/"


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


def agent_form(owner, **overrides) -> dict:
    form = {
        "owner": str(owner.pk), "name": "Helper", "description": "", "instructions": "Be brief.",
        "opening_message": "", "llm_provider": "", "llm_model": "", "temperature": "", "max_tokens": "",
        "files": "",
    }
    form.update(overrides)
    return form


def field_errors(response) -> dict:
    form = response.context["adminform"].form
    return {name: [str(message) for message in messages] for name, messages in form.errors.items()}


def test_the_admin_saves_an_agent_the_api_would_accept(staff_client, alice):
    response = staff_client.post(ADD, agent_form(
        alice.user, llm_provider="builtin", temperature="0.5", max_tokens="500",
    ))
    assert response.status_code == 302
    agent = Agent.objects.get()
    assert (agent.owner, agent.llm_provider, agent.temperature, agent.max_tokens) == (alice.user, "builtin", 0.5, 500)


def test_the_admin_refuses_an_unknown_provider_and_an_out_of_range_temperature(staff_client, alice):
    response = staff_client.post(ADD, agent_form(alice.user, llm_provider="nope", temperature="50"))
    assert response.status_code == 200
    errors = field_errors(response)
    assert errors["llm_provider"] == ["Unknown provider 'nope'; configured: builtin."]
    assert errors["temperature"] == ["Ensure this value is less than or equal to 2.0."]
    assert not Agent.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", "-0.1", "Ensure this value is greater than or equal to 0.0."),
        ("max_tokens", "0", "Ensure this value is greater than or equal to 1."),
        ("max_tokens", "200001", "Ensure this value is less than or equal to 200000."),
    ],
)
def test_the_admin_refuses_llm_settings_outside_the_apis_range(staff_client, alice, field, value, message):
    response = staff_client.post(ADD, agent_form(alice.user, **{field: value}))
    assert response.status_code == 200
    assert message in field_errors(response)[field]
    assert not Agent.objects.exists()


def test_the_admin_refuses_changing_an_agent_to_an_unknown_provider(staff_client, alice):
    agent = services.agent_create(owner=alice.user, name="Helper")
    response = staff_client.post(f"/admin/agents/agent/{agent.pk}/change/", agent_form(alice.user, llm_provider="nope"))
    assert response.status_code == 200 and "llm_provider" in field_errors(response)
    agent.refresh_from_db()
    assert agent.llm_provider == ""


def test_an_agent_whose_provider_was_dropped_can_still_be_edited_in_the_admin(staff_client, alice):
    agent = services.agent_create(owner=alice.user, name="Helper")
    Agent.objects.filter(pk=agent.pk).update(llm_provider="gone")
    response = staff_client.post(
        f"/admin/agents/agent/{agent.pk}/change/", agent_form(alice.user, name="Renamed", llm_provider="gone")
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert (agent.name, agent.llm_provider) == ("Renamed", "gone")


def test_the_admin_refuses_attaching_another_users_file(staff_client, alice, bob):
    bobs_file, _ = knowledge.knowledge_file_upload(
        owner=bob.user, upload=SimpleUploadedFile("bob.md", b"# Bob's secrets\n")
    )
    alices_file, _ = knowledge.knowledge_file_upload(
        owner=alice.user, upload=SimpleUploadedFile("alice.md", b"# Alice's notes\n")
    )
    response = staff_client.post(ADD, agent_form(alice.user, files=f"{alices_file.pk},{bobs_file.pk}"))
    assert response.status_code == 200
    assert field_errors(response)["files"] == [f"{alice.user.username} has no file with id {bobs_file.pk}."]
    assert not Agent.objects.exists()

    response = staff_client.post(ADD, agent_form(alice.user, files=str(alices_file.pk)))
    assert response.status_code == 302
    assert list(Agent.objects.get().files.all()) == [alices_file]


def test_the_admin_refuses_moving_an_agent_with_files_to_another_owner(staff_client, alice, bob):
    alices_file, _ = knowledge.knowledge_file_upload(
        owner=alice.user, upload=SimpleUploadedFile("alice.md", b"# Alice's notes\n")
    )
    agent = services.agent_create(owner=alice.user, name="Helper", files=[alices_file.pk])
    response = staff_client.post(
        f"/admin/agents/agent/{agent.pk}/change/", agent_form(bob.user, files=str(alices_file.pk))
    )
    assert response.status_code == 200 and "files" in field_errors(response)
    agent.refresh_from_db()
    assert agent.owner == alice.user


def test_the_admin_refuses_more_files_than_an_agent_may_have(staff_client, alice, monkeypatch):
    monkeypatch.setattr(agents.admin, "MAX_FILES_PER_AGENT", 1)
    files = [
        knowledge.knowledge_file_upload(owner=alice.user, upload=SimpleUploadedFile(f"{n}.md", f"# {n}\n".encode()))[0]
        for n in ("one", "two")
    ]
    response = staff_client.post(ADD, agent_form(alice.user, files=",".join(str(file.pk) for file in files)))
    assert response.status_code == 200
    assert field_errors(response)["files"] == ["An agent may have at most 1 files."]
    assert not Agent.objects.exists()
