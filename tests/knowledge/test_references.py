"""What a completion gets from knowledge: passages from the agent's ready files only, cited the same everywhere."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from agents.knowledge import services
from agents.knowledge.tasks import ingest_file
from agents.knowledge_hooks import retrieve_passages
from agents.models import Agent, Message


def make_file(owner, name, text, *, ingest=True):
    file, _ = services.knowledge_file_upload(owner=owner, upload=SimpleUploadedFile(name, text.encode()))
    if ingest:
        ingest_file.call(str(file.id))
    return file


def test_only_the_agents_ready_files_are_searched(alice):
    ready = make_file(alice.user, "ready.txt", "The lighthouse keeper rings the bell at dawn.")
    queued = make_file(alice.user, "queued.txt", "The lighthouse is painted red.", ingest=False)
    failed = make_file(alice.user, "broken.json", '{"lighthouse": ')
    other = make_file(alice.user, "other.txt", "Another lighthouse, on another agent.")
    agent = Agent.objects.create(owner=alice.user, name="a")
    agent.files.set([ready, queued, failed])
    failed.refresh_from_db()
    assert failed.status == "failed"

    found = retrieve_passages(agent=agent, question="Where is the lighthouse?")
    assert [(item.file_id, item.passage.file_name) for item in found] == [(str(ready.id), "ready.txt")]
    passage = found[0].passage
    assert passage.id == f"{ready.id}:0" and passage.position is None and passage.score > 0
    assert other.id not in {item.file_id for item in found}
    assert retrieve_passages(agent=agent, question="???") == []


def test_a_file_of_another_owner_attached_behind_the_apis_back_is_not_searched(alice, bob):
    """Attaching checks the owner; retrieval checks it again, so a row written around that check leaks nothing."""
    own = make_file(alice.user, "own.txt", "The lighthouse keeper rings the bell at dawn.")
    foreign = make_file(bob.user, "bobs.txt", "The lighthouse vault code is 4711.")
    agent = Agent.objects.create(owner=alice.user, name="a")
    agent.files.set([own, foreign])  # what the API and the admin refuse

    found = retrieve_passages(agent=agent, question="lighthouse")
    assert [item.file_id for item in found] == [str(own.id)]
    bobs_agent = Agent.objects.create(owner=bob.user, name="b")
    bobs_agent.files.set([foreign])
    assert [item.file_id for item in retrieve_passages(agent=bobs_agent, question="lighthouse")] == [str(foreign.id)]


def test_a_completion_stores_the_references_it_returns(api, alice):
    file = make_file(alice.user, "faq.md", "# FAQ\n\n## Hours\n\nThe lighthouse opens at dawn and closes at dusk.\n")
    status, body, _ = api.post("/v1/combo/agents", {"name": "Keeper", "file_ids": [str(file.id)]},
                               auth=alice.key_auth)
    agent_id = body["data"]["id"]
    status, body, _ = api.post(f"/v1/combo/agents/{agent_id}/completions",
                               {"question": "When does the lighthouse open?"}, auth=alice.key_auth)
    assert status == 200, body
    reference = body["data"]["reference"]
    assert [(r["file_name"], r["position"]) for r in reference] == [("faq.md", {"heading": "FAQ > Hours"})]
    assert reference[0]["id"] == f"{file.id}:1" and reference[0]["file_id"] == str(file.id)
    assert Message.objects.get(id=body["data"]["message_id"]).references == reference
    assert "The lighthouse opens at dawn" in body["data"]["answer"]
    status, session, _ = api.get(f"/v1/combo/sessions/{body['data']['session_id']}", auth=alice.key_auth)
    assert session["data"]["messages"]["items"][-1]["reference"] == reference


def test_a_batch_of_questions_to_several_agents_searches_each_agents_own_files(alice):
    """The batched prepare looks up every agent's ready files in one query and keeps them apart."""
    from agents.completions import PrepareSpec, completion_prepare_many

    tides = make_file(alice.user, "tides.txt", "The lighthouse tide table: high water at noon.")
    bells = make_file(alice.user, "bells.txt", "The lighthouse bell rings at dawn.")
    shared = make_file(alice.user, "shared.txt", "Every lighthouse has a keeper.")
    first = Agent.objects.create(owner=alice.user, name="first")
    second = Agent.objects.create(owner=alice.user, name="second")
    bare = Agent.objects.create(owner=alice.user, name="bare")
    first.files.set([tides, shared])
    second.files.set([bells, shared])

    question = "lighthouse"
    results = completion_prepare_many(
        [PrepareSpec(alice.user, agent.id, question) for agent in (first, second, bare, first)]
    )
    files = [sorted(ref["file_name"] for ref in result.references) for result in results]
    assert files == [["shared.txt", "tides.txt"], ["bells.txt", "shared.txt"], [], ["shared.txt", "tides.txt"]]
    for agent, result in zip((first, second, bare), results):
        single = retrieve_passages(agent=agent, question=question)
        assert sorted(item.passage.id for item in single) == sorted(ref["id"] for ref in result.references)
