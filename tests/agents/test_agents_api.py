"""Agents and sessions over the REST API (Django test client, real URLconf)."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from agents.models import Agent, Message, Session


def make_agent(api, actor, **fields) -> dict:
    body = {"name": "Reviewer", "instructions": "You review pull requests.", **fields}
    status, envelope, _ = api.post("/v1/combo/agents", body, auth=actor.key_auth)
    assert status == 201, envelope
    return envelope["data"]


def test_it_creates_an_agent_with_its_llm_choice(api, alice):
    data = make_agent(api, alice, llm={"provider": "builtin", "model": "m1", "temperature": 0.3, "max_tokens": 256})
    stored = Agent.objects.get(id=data["id"])
    assert stored.owner == alice.user
    assert (stored.llm_provider, stored.llm_model, stored.temperature, stored.max_tokens) == ("builtin", "m1", 0.3, 256)
    assert data["llm"] == {"provider": "builtin", "model": "m1", "temperature": 0.3, "max_tokens": 256}


def test_it_rejects_an_unknown_provider_and_stores_nothing(api, alice):
    status, body, _ = api.post("/v1/combo/agents", {"name": "x", "llm": {"provider": "nope"}}, auth=alice.key_auth)
    assert status == 400 and body["code"] == 10001
    assert "provider" in body["data"]["errors"]["llm"]
    assert not Agent.objects.exists()


def test_it_rejects_unknown_fields_and_overlong_names(api, alice):
    status, body, _ = api.post("/v1/combo/agents", {"name": "x", "colour": "red"}, auth=alice.key_auth)
    assert status == 400 and body["data"]["errors"] == {"colour": ["Unknown field."]}
    status, body, _ = api.post("/v1/combo/agents", {"name": "x" * 101}, auth=alice.key_auth)
    assert status == 400 and "name" in body["data"]["errors"]
    assert not Agent.objects.exists()


def test_an_llm_choice_in_a_form_body_is_refused_not_dropped(api, alice):
    status, body, _ = api.call(
        "POST", "/v1/combo/agents", raw=b'name=x&llm={"temperature": 1.5}',
        content_type="application/x-www-form-urlencoded", auth=alice.key_auth,
    )
    assert (status, body["code"]) == (400, 10001) and "application/json" in body["data"]["errors"]["llm"][0]
    assert not Agent.objects.exists()
    agent = make_agent(api, alice)
    response = api.client.patch(
        f"/v1/combo/agents/{agent['id']}", data=encode_multipart(BOUNDARY, {"llm": '{"temperature": 1.5}'}),
        content_type=MULTIPART_CONTENT, **alice.key_auth,
    )
    assert response.status_code == 400 and "llm" in response.json()["data"]["errors"]
    assert Agent.objects.get(id=agent["id"]).temperature is None


def test_it_updates_part_of_an_agent(api, alice):
    agent = make_agent(api, alice)
    status, body, _ = api.patch(f"/v1/combo/agents/{agent['id']}", {"llm": {"temperature": 1.5}}, auth=alice.key_auth)
    assert status == 200 and body["data"]["llm"]["temperature"] == 1.5
    assert body["data"]["instructions"] == "You review pull requests."
    assert Agent.objects.get(id=agent["id"]).temperature == 1.5


def test_bob_cannot_see_or_touch_alices_agent(api, alice, bob):
    agent = make_agent(api, alice)
    for method in ("get", "patch", "delete"):
        status, body, _ = api.call(method, f"/v1/combo/agents/{agent['id']}", {} if method == "patch" else None,
                                   auth=bob.key_auth)
        missing_status, missing, _ = api.call(method, f"/v1/combo/agents/{uuid.uuid4()}",
                                              {} if method == "patch" else None, auth=bob.key_auth)
        assert (status, body["code"], body["message"]) == (missing_status, missing["code"], missing["message"]) == (
            404, 10040, missing["message"])
    status, body, _ = api.get("/v1/combo/agents", auth=bob.key_auth)
    assert body["data"]["items"] == []
    assert Agent.objects.filter(id=agent["id"]).exists()


def test_it_pages_agents_newest_first_with_a_cursor(api, alice):
    ids = [make_agent(api, alice, name=f"a{i}")["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        path = "/v1/combo/agents?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = api.get(path, auth=alice.key_auth)
        assert status == 200 and len(body["data"]["items"]) <= 2
        seen += [item["id"] for item in body["data"]["items"]]
        cursor = body["data"]["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_a_new_session_starts_with_the_opening_message(api, alice):
    agent = make_agent(api, alice, opening_message="Hi! Send me a PR.")
    status, body, _ = api.post(f"/v1/combo/agents/{agent['id']}/sessions", {"title": "PR 42"}, auth=alice.key_auth)
    assert status == 201 and body["data"]["agent_id"] == agent["id"] and body["data"]["title"] == "PR 42"
    session_id = body["data"]["id"]
    status, body, _ = api.get(f"/v1/combo/agents/{agent['id']}/sessions/{session_id}", auth=alice.key_auth)
    messages = body["data"]["messages"]["items"]
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [("assistant", "Hi! Send me a PR.", "complete")]
    status, top, _ = api.get(f"/v1/combo/sessions/{session_id}", auth=alice.key_auth)
    assert status == 200 and top["data"]["agent_id"] == agent["id"] and top["data"]["messages"] == body["data"]["messages"]


def test_a_sessions_updated_at_is_its_last_answers_time(api, alice):
    agent = make_agent(api, alice)
    url = f"/v1/combo/agents/{agent['id']}/completions"
    status, first, _ = api.post(url, {"question": "One?"}, auth=alice.key_auth)
    assert status == 200, first
    session_id = first["data"]["session_id"]
    status, second, _ = api.post(url, {"question": "Two?", "session_id": session_id}, auth=alice.key_auth)
    assert status == 200, second
    answer = Message.objects.get(id=second["data"]["message_id"])
    question = Message.objects.filter(session_id=session_id, role="user").latest("created_at")
    assert question.created_at < answer.completed_at
    assert Session.objects.get(id=session_id).updated_at == answer.completed_at
    status, body, _ = api.get(f"/v1/combo/sessions/{session_id}", auth=alice.key_auth)
    assert body["data"]["updated_at"] == answer.completed_at.isoformat().replace("+00:00", "Z")


def test_session_messages_page_oldest_first(api, alice):
    agent = make_agent(api, alice)
    session = Session.objects.create(agent_id=agent["id"], owner=alice.user)
    for i in range(5):
        Message.objects.create(session=session, role="user", content=f"q{i}")
    _, body, _ = api.get(f"/v1/combo/sessions/{session.id}?limit=3", auth=alice.key_auth)
    page = body["data"]["messages"]
    assert [m["content"] for m in page["items"]] == ["q0", "q1", "q2"]
    _status, body, _ = api.get(f"/v1/combo/sessions/{session.id}?limit=3&cursor={page['next_cursor']}",
                              auth=alice.key_auth)
    assert [m["content"] for m in body["data"]["messages"]["items"]] == ["q3", "q4"]
    assert body["data"]["messages"]["next_cursor"] is None


def test_sessions_are_scoped_to_their_agent_and_owner(api, alice, bob):
    agent = make_agent(api, alice)
    other = make_agent(api, alice, name="Other")
    _, body, _ = api.post(f"/v1/combo/agents/{agent['id']}/sessions", {}, auth=alice.key_auth)
    session_id = body["data"]["id"]
    assert api.get(f"/v1/combo/agents/{other['id']}/sessions/{session_id}", auth=alice.key_auth)[0] == 404
    assert api.get(f"/v1/combo/sessions/{session_id}", auth=bob.key_auth)[0] == 404
    assert api.post(f"/v1/combo/agents/{agent['id']}/sessions", {}, auth=bob.key_auth)[0] == 404
    assert api.get(f"/v1/combo/agents/{agent['id']}/sessions", auth=bob.key_auth)[0] == 404
    assert api.get("/v1/combo/agents/not-a-uuid/sessions", auth=alice.key_auth)[0] == 404
    status, body, response = api.delete(f"/v1/combo/agents/{agent['id']}/sessions/{session_id}", auth=alice.key_auth)
    assert status == 204 and not Session.objects.filter(id=session_id).exists()
    # No content (no envelope either), so neither a type nor a length.
    assert response.content == b"" and "Content-Type" not in response and "Content-Length" not in response


@pytest.mark.parametrize("method", ["get", "delete"])
def test_a_malformed_agent_id_on_a_session_is_a_404_for_every_action(api, alice, method):
    agent = make_agent(api, alice)
    _, body, _ = api.post(f"/v1/combo/agents/{agent['id']}/sessions", {}, auth=alice.key_auth)
    session_id = body["data"]["id"]
    status, body, _ = api.call(method, f"/v1/combo/agents/0/sessions/{session_id}", auth=alice.key_auth)
    assert (status, body["code"]) == (404, 10040), body
    assert Session.objects.filter(id=session_id).exists()


def test_it_answers_without_streaming_through_the_test_client(api, alice):
    agent = make_agent(api, alice)
    status, body, _ = api.post(f"/v1/combo/agents/{agent['id']}/completions", {"question": "What do you do?"},
                               auth=alice.key_auth)
    assert status == 200, body
    data = body["data"]
    assert data["answer"].startswith("No language model is configured")
    assert "What do you do?" in data["answer"] and data["reference"] == []
    session = Session.objects.get(id=data["session_id"])
    stored = list(session.messages.order_by("created_at").values_list("role", "content", "status"))
    assert stored == [("user", "What do you do?", "complete"), ("assistant", data["answer"], "complete")]


def test_completion_validation_errors_write_nothing(api, alice):
    agent = make_agent(api, alice)
    url = f"/v1/combo/agents/{agent['id']}/completions"
    cases = [
        ({"question": ""}, 10001, "question"),
        ({"question": "x" * 8001}, 10001, "question"),
        ({"question": "hi", "stream": "maybe"}, 10001, "stream"),
        ({"question": "hi", "session_id": "nope"}, 10001, "session_id"),
        ({"question": "hi", "extra": 1}, 10001, "extra"),
    ]
    for body, code, field in cases:
        status, envelope, _ = api.post(url, body, auth=alice.key_auth)
        assert (status, envelope["code"]) == (400, code)
        assert field in envelope["data"]["errors"]
    status, envelope, _ = api.call("POST", url, raw=b"{not json", auth=alice.key_auth)
    assert (status, envelope["code"]) == (400, 10002)
    status, envelope, _ = api.call("POST", url, raw=b"[1]", auth=alice.key_auth)
    assert (status, envelope["code"]) == (400, 10002)
    assert not Session.objects.exists() and not Message.objects.exists()


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"question": ' + b"[" * 100_000, "nested too deeply"),
        (b'{"question": NaN}', "NaN is not valid JSON"),
        (b'{"question": "caf\xe9"}', "not UTF-8"),
    ],
    ids=["nested", "nested-in-question", "nan", "not-utf8"],
)
def test_a_completion_body_that_is_not_plain_json_is_10002_and_writes_nothing(api, alice, raw, words):
    agent = make_agent(api, alice)
    status, envelope, _ = api.call(
        "POST", f"/v1/combo/agents/{agent['id']}/completions", raw=raw, auth=alice.key_auth
    )
    assert (status, envelope["code"]) == (400, 10002)
    assert words in envelope["message"]
    assert not Session.objects.exists() and not Message.objects.exists()


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("application/json", True),
        ("Application/JSON", True),
        ("application/json; charset=utf-8", True),
        (" application/json ;charset=UTF-8", True),
        ("application/jsonx", False),
        ("application/json-patch+json", False),
        ("text/plain", False),
        ("", False),
    ],
)
def test_completions_take_the_media_types_every_other_endpoint_takes(api, alice, content_type, accepted):
    agent = make_agent(api, alice)
    paths = [f"/v1/combo/agents/{agent['id']}/completions", "/v1/combo/agents"]
    raw = b'{"question": "hi", "name": "x"}'
    codes = []
    for path in paths:
        _, envelope, _ = api.call("POST", path, raw=raw, content_type=content_type, auth=alice.key_auth)
        codes.append(envelope["code"])
    if accepted:
        assert 10003 not in codes, codes
    else:
        assert codes == [10003, 10003]


def test_without_a_credential_a_body_of_another_type_is_a_401_here_as_everywhere(api, alice):
    agent = make_agent(api, alice)
    for path in (f"/v1/combo/agents/{agent['id']}/completions", "/v1/combo/agents"):
        status, envelope, _ = api.call("POST", path, raw=b"question=hi", content_type="application/x-www-form-urlencoded")
        assert (status, envelope["code"]) == (401, 10010), path


def test_completion_refuses_other_owners_and_foreign_sessions(api, alice, bob):
    agent = make_agent(api, alice)
    other = make_agent(api, alice, name="Other")
    _, body, _ = api.post(f"/v1/combo/agents/{other['id']}/sessions", {}, auth=alice.key_auth)
    foreign_session = body["data"]["id"]
    status, body, _ = api.post(f"/v1/combo/agents/{agent['id']}/completions",
                               {"question": "hi", "session_id": foreign_session}, auth=alice.key_auth)
    assert (status, body["code"]) == (404, 10040)
    status, body, _ = api.post(f"/v1/combo/agents/{agent['id']}/completions", {"question": "hi"}, auth=bob.key_auth)
    assert (status, body["code"]) == (404, 10040)
    status, body, response = api.post(f"/v1/combo/agents/{agent['id']}/completions", {"question": "hi"})
    assert (status, body["code"]) == (401, 10010) and "Bearer" in response["WWW-Authenticate"]
    assert Message.objects.count() == 0


# --- deleting while a question is being recorded ------------------------------------


@pytest.fixture
def message_added_after_collection(monkeypatch):
    """Adds a message to a session from another connection right after Django collects a delete's rows.

    What a question recorded at that moment does: the delete must not leave it
    pointing at a session that is gone (a 500 at commit, before the fix).
    """
    from django.db import connections
    from django.db.models.deletion import Collector

    outcome = {}
    collect = Collector.collect

    def add(session_id):
        try:
            Message.objects.create(session_id=session_id, role=Message.Role.USER, content="asked meanwhile")
            outcome["added"] = True
        except Exception as exc:  # noqa: BLE001 - refused: the session is being deleted
            outcome["refused"] = exc
        finally:
            connections.close_all()

    def collect_then_add(self, objs, *args, **kwargs):
        collect(self, objs, *args, **kwargs)
        for obj in objs:
            session_id = obj.pk if isinstance(obj, Session) else None
            if isinstance(obj, Agent):
                session_id = Session.objects.filter(agent=obj).values_list("pk", flat=True).first()
            if session_id is not None and "added" not in outcome and "refused" not in outcome:
                thread = threading.Thread(target=add, args=(session_id,))
                thread.start()
                thread.join(timeout=0.5)  # it waits for the delete's lock, if the delete holds one

    monkeypatch.setattr(Collector, "collect", collect_then_add)
    return outcome


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("target", ["session", "agent"])
def test_a_question_recorded_while_deleting_does_not_break_the_delete(
    api, alice, message_added_after_collection, target
):
    agent = make_agent(api, alice)
    _, body, _ = api.post(f"/v1/combo/agents/{agent['id']}/sessions", {}, auth=alice.key_auth)
    session_id = body["data"]["id"]
    path = f"/v1/combo/agents/{agent['id']}" + (f"/sessions/{session_id}" if target == "session" else "")
    status, body, _ = api.delete(path, auth=alice.key_auth)
    assert status == 204, body
    assert not Session.objects.filter(id=session_id).exists()
    assert not Message.objects.filter(session_id=session_id).exists()


# --- updating while another request changes the agent -----------------------------------


def test_a_patch_racing_a_delete_is_a_404_and_does_not_bring_the_agent_back(api, alice, monkeypatch):
    from agents.api import AgentViewSet

    agent = make_agent(api, alice)
    get_object = AgentViewSet.get_object

    def read_then_deleted(self):
        found = get_object(self)
        Agent.objects.filter(pk=found.pk).delete()  # a DELETE that lands in between
        return found

    monkeypatch.setattr(AgentViewSet, "get_object", read_then_deleted)
    status, body, _ = api.patch(f"/v1/combo/agents/{agent['id']}", {"name": "Renamed"}, auth=alice.key_auth)
    assert (status, body["code"]) == (404, 10040), body
    assert not Agent.objects.filter(id=agent["id"]).exists()  # saving it had inserted it again


def test_a_patch_keeps_what_another_patch_changed_meanwhile(api, alice, monkeypatch):
    from agents.api import AgentViewSet

    agent = make_agent(api, alice)
    get_object = AgentViewSet.get_object

    def read_then_changed(self):
        found = get_object(self)
        Agent.objects.filter(pk=found.pk).update(instructions="Changed meanwhile.")
        return found

    monkeypatch.setattr(AgentViewSet, "get_object", read_then_changed)
    status, body, _ = api.patch(f"/v1/combo/agents/{agent['id']}", {"name": "Renamed"}, auth=alice.key_auth)
    assert status == 200, body
    assert (body["data"]["name"], body["data"]["instructions"]) == ("Renamed", "Changed meanwhile.")
    stored = Agent.objects.get(id=agent["id"])
    assert (stored.name, stored.instructions) == ("Renamed", "Changed meanwhile.")


# Transactional: SQLite checks the foreign keys at commit, which the usual per-test transaction never reaches.
@pytest.mark.django_db(transaction=True)
def test_a_session_created_while_its_agent_is_deleted_is_a_404(api, alice, monkeypatch):
    from agents.api import AgentSessionViewSet

    agent = make_agent(api, alice)
    get_agent = AgentSessionViewSet.get_agent

    def read_then_deleted(self):
        found = get_agent(self)
        Agent.objects.filter(pk=found.pk).delete()  # a DELETE that lands in between
        return found

    monkeypatch.setattr(AgentSessionViewSet, "get_agent", read_then_deleted)
    status, body, _ = api.post(f"/v1/combo/agents/{agent['id']}/sessions", {}, auth=alice.key_auth)
    assert (status, body["code"]) == (404, 10040), body
    assert not Session.objects.exists()


# --- ETag and If-Match: updating the agent as it was read ---------------------------


def test_reading_an_agent_gives_its_etag_and_a_patch_with_it_applies(api, alice):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    status, _, read = api.get(path, auth=alice.key_auth)
    assert status == 200 and read["ETag"].startswith('"') and read["ETag"].endswith('"')
    assert api.get(path, auth=alice.key_auth)[2]["ETag"] == read["ETag"]  # the same agent, the same tag
    status, body, patched = api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH=read["ETag"])
    assert status == 200 and body["data"]["name"] == "Renamed"
    assert patched["ETag"] != read["ETag"]
    assert patched["ETag"] == api.get(path, auth=alice.key_auth)[2]["ETag"]  # the new version, as GET says


def test_a_patch_with_the_etag_of_an_older_version_is_refused_with_412_and_changes_nothing(api, alice):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    assert api.patch(path, {"instructions": "Changed meanwhile."}, auth=alice.key_auth)[0] == 200  # no If-Match: as before
    status, body, response = api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert (status, body["code"]) == (412, 10061), body
    assert "If-Match" in body["message"] and body["data"]["request_id"] == response["X-Request-Id"]
    stored = Agent.objects.get(id=agent["id"])
    assert (stored.name, stored.instructions) == ("Reviewer", "Changed meanwhile.")
    # Read again, the same change applies.
    fresh = api.get(path, auth=alice.key_auth)[2]["ETag"]
    assert api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH=fresh)[0] == 200
    assert Agent.objects.get(id=agent["id"]).name == "Renamed"


@pytest.mark.parametrize("header, applies", [
    ("*", True), ("{etag}", True), ('"other", {etag}', True),
    ("W/{etag}", False), ('"other"', False), ("not an etag", False), ("", False),
])
def test_if_match_takes_star_and_lists_and_compares_strongly(api, alice, header, applies):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    status, body, _ = api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH=header.format(etag=etag))
    assert status == (200 if applies else 412), body
    assert Agent.objects.get(id=agent["id"]).name == ("Renamed" if applies else "Reviewer")


def test_a_failed_precondition_is_answered_before_the_body_is_judged(api, alice):
    agent = make_agent(api, alice)
    status, body, _ = api.patch(
        f"/v1/combo/agents/{agent['id']}", {"name": ""}, auth=alice.key_auth, HTTP_IF_MATCH='"stale"',
    )
    assert (status, body["code"]) == (412, 10061)


def test_the_openapi_document_describes_etag_and_if_match(api, db):
    doc = api.client.get("/v1/openapi.json").json()
    item = doc["paths"]["/v1/combo/agents/{id}"]
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    assert "ETag" in item["patch"]["responses"]["200"]["headers"]
    assert "412" in item["patch"]["responses"] and "10061" in item["patch"]["responses"]["412"]["description"]
    assert any(p["name"] == "If-Match" and p["in"] == "header" for p in item["patch"]["parameters"])


# --- If-None-Match: reading an agent only if it changed --------------------------------


def test_a_read_with_the_current_etag_in_if_none_match_is_a_304_without_a_body(api, alice):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    _, full, read = api.get(path, auth=alice.key_auth)
    etag = read["ETag"]
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=etag)
    assert (status, body, response.content) == (304, None, b"")
    assert response["ETag"] == etag
    # The headers every API answer carries stay; no content headers on an empty answer.
    assert response["X-Request-Id"] and response["Cache-Control"] == "no-store"
    assert response["X-RateLimit-Remaining"] == read["X-RateLimit-Remaining"]  # a 304 is not counted
    assert "Content-Type" not in response and "Content-Length" not in response
    # After an update the old tag is stale: the full answer again, with the new tag.
    assert api.patch(path, {"name": "Renamed"}, auth=alice.key_auth)[0] == 200
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=etag)
    assert status == 200 and body["data"]["name"] == "Renamed" and response["ETag"] != etag
    assert body["data"] == {**full["data"], "name": "Renamed", "updated_at": body["data"]["updated_at"]}


@pytest.mark.parametrize("header, not_modified", [
    ("{etag}", True), ("W/{etag}", True), ('"other", {etag}', True), ("*", True),
    ('"other"', False), ("not an etag", False), ("", False),
])
def test_if_none_match_takes_star_and_lists_and_compares_weakly(api, alice, header, not_modified):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=header.format(etag=etag))
    if not_modified:
        assert (status, response.content, response["ETag"]) == (304, b"", etag)
    else:
        assert status == 200 and body["data"]["id"] == agent["id"] and response["ETag"] == etag


def test_if_none_match_does_not_hide_a_missing_or_foreign_agent(api, alice, bob):
    agent = make_agent(api, alice)
    status, body, _ = api.get(f"/v1/combo/agents/{agent['id']}", auth=bob.key_auth, HTTP_IF_NONE_MATCH="*")
    assert (status, body["code"]) == (404, 10040)


def test_the_openapi_document_describes_if_none_match_and_the_304(api, db):
    doc = api.client.get("/v1/openapi.json").json()
    get = doc["paths"]["/v1/combo/agents/{id}"]["get"]
    assert any(p["name"] == "If-None-Match" and p["in"] == "header" for p in get["parameters"])
    not_modified = get["responses"]["304"]
    assert "ETag" in not_modified["headers"] and "X-Request-Id" in not_modified["headers"]
    assert "content" not in not_modified
    assert "304" not in doc["paths"]["/v1/combo/agents/{id}"]["patch"]["responses"]


def test_a_patch_with_if_match_reads_the_agent_once_before_its_lock(api, alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    agent = make_agent(api, alice, name="Reviewer")
    path = f"/v1/combo/agents/{agent['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    with CaptureQueriesContext(connection) as queries:
        status, _, _ = api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert status == 200
    # The early If-Match check and the update share one read of the owner's agent
    # (the lock and the re-read under it are the service's own).
    reads = [q["sql"] for q in queries.captured_queries
             if q["sql"].startswith('SELECT "agents_agent"') and '"agents_agent"."owner_id" = ' in q["sql"]]
    assert len(reads) == 1, reads


# --- Preconditions on every operation of one agent (RFC 9110 13.2.2) ------------------


def _get_object_then(monkeypatch, meanwhile):
    """The agent viewset reads the agent, then `meanwhile(agent)` runs: another request landing in between."""
    from agents.api import AgentViewSet

    get_object = AgentViewSet.get_object

    def read_then(self):
        found = get_object(self)
        meanwhile(found)
        return found

    monkeypatch.setattr(AgentViewSet, "get_object", read_then)


def test_a_read_with_an_if_match_naming_another_version_is_a_412(api, alice):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_MATCH='"other"')
    assert (status, body["code"]) == (412, 10061), body
    assert "If-Match" in body["message"] and "without If-Match" in body["message"] and "ETag" not in response
    assert body["data"]["request_id"] == response["X-Request-Id"]
    for header in (etag, f'"other", {etag}', "*"):
        status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_MATCH=header)
        assert (status, body["data"]["id"], response["ETag"]) == (200, agent["id"], etag)
    assert api.get(path, auth=alice.key_auth, HTTP_IF_MATCH=f"W/{etag}")[0] == 412  # strong comparison


def test_if_match_is_evaluated_before_if_none_match(api, alice):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    # Both hold: the read is Not Modified.
    assert api.get(path, auth=alice.key_auth, HTTP_IF_MATCH=etag, HTTP_IF_NONE_MATCH=etag)[0] == 304
    # If-Match fails: 412, whatever If-None-Match says.
    status, body, _ = api.get(path, auth=alice.key_auth, HTTP_IF_MATCH='"other"', HTTP_IF_NONE_MATCH=etag)
    assert (status, body["code"]) == (412, 10061) and "If-Match" in body["message"]
    status, body, _ = api.patch(
        path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH='"other"', HTTP_IF_NONE_MATCH=etag,
    )
    assert (status, body["code"]) == (412, 10061) and "If-None-Match" not in body["message"]


@pytest.mark.parametrize("header", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
def test_a_patch_with_if_none_match_naming_the_current_version_is_a_412_and_changes_nothing(api, alice, header):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    status, body, response = api.patch(
        path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_NONE_MATCH=header.format(etag=etag),
    )
    assert (status, body["code"]) == (412, 10061), body
    assert "If-None-Match" in body["message"] and "If-Match instead" in body["message"] and "ETag" not in response
    assert Agent.objects.get(id=agent["id"]).name == "Reviewer"
    # Judged before the body, like If-Match.
    assert api.patch(path, {"name": ""}, auth=alice.key_auth, HTTP_IF_NONE_MATCH=header.format(etag=etag))[0] == 412


def test_a_patch_with_if_none_match_naming_other_versions_applies(api, alice):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    status, body, _ = api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_NONE_MATCH='"other"')
    assert status == 200 and body["data"]["name"] == "Renamed"
    assert Agent.objects.get(id=agent["id"]).name == "Renamed"


def test_a_delete_with_a_stale_if_match_is_a_412_and_deletes_nothing(api, alice):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    api.post(f"{path}/sessions", {}, auth=alice.key_auth)
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    assert api.patch(path, {"instructions": "Changed meanwhile."}, auth=alice.key_auth)[0] == 200
    for header in (etag, f"W/{etag}", '"other"'):
        status, body, response = api.delete(path, auth=alice.key_auth, HTTP_IF_MATCH=header)
        assert (status, body["code"]) == (412, 10061), body
        assert "nothing was deleted" in body["message"] and "current ETag" in body["message"]
        assert body["data"]["request_id"] == response["X-Request-Id"]
    assert Agent.objects.filter(id=agent["id"]).exists() and Session.objects.filter(agent_id=agent["id"]).count() == 1
    # The current version is deleted, with its sessions.
    fresh = api.get(path, auth=alice.key_auth)[2]["ETag"]
    status, _, response = api.delete(path, auth=alice.key_auth, HTTP_IF_MATCH=fresh)
    assert status == 204 and response.content == b""
    assert not Agent.objects.filter(id=agent["id"]).exists() and not Session.objects.exists()


def test_a_delete_with_if_match_star_deletes_any_existing_agent(api, alice):
    agent = make_agent(api, alice)
    assert api.delete(f"/v1/combo/agents/{agent['id']}", auth=alice.key_auth, HTTP_IF_MATCH="*")[0] == 204
    assert not Agent.objects.filter(id=agent["id"]).exists()


@pytest.mark.parametrize("header", ["{etag}", "*"])
def test_a_delete_with_if_none_match_naming_the_current_version_is_a_412(api, alice, header):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    status, body, _ = api.delete(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=header.format(etag=etag))
    assert (status, body["code"]) == (412, 10061), body
    assert "If-None-Match" in body["message"] and "nothing was deleted" in body["message"]
    assert Agent.objects.filter(id=agent["id"]).exists()
    assert api.delete(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH='"other"')[0] == 204
    assert not Agent.objects.filter(id=agent["id"]).exists()


def test_a_delete_with_if_match_is_checked_again_under_the_agents_row_lock(api, alice, monkeypatch):
    """A change landing after the agent was read (and If-Match first checked) still makes a 412."""
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    _get_object_then(monkeypatch, lambda found: Agent.objects.filter(pk=found.pk).update(name="Changed meanwhile"))
    status, body, _ = api.delete(path, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert (status, body["code"]) == (412, 10061), body
    assert Agent.objects.get(id=agent["id"]).name == "Changed meanwhile"


def test_a_delete_with_if_match_of_an_agent_deleted_meanwhile_is_a_404(api, alice, monkeypatch):
    agent = make_agent(api, alice)
    _get_object_then(monkeypatch, lambda found: Agent.objects.filter(pk=found.pk).delete())
    status, body, _ = api.delete(f"/v1/combo/agents/{agent['id']}", auth=alice.key_auth, HTTP_IF_MATCH="*")
    assert (status, body["code"]) == (404, 10040), body


def test_preconditions_do_not_hide_a_missing_or_foreign_agent(api, alice, bob):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    for headers in ({"HTTP_IF_MATCH": '"other"'}, {"HTTP_IF_MATCH": "*"}, {"HTTP_IF_NONE_MATCH": "*"}):
        for method in ("get", "patch", "delete"):
            status, body, _ = api.call(method, path, {"name": "x"} if method == "patch" else None,
                                       auth=bob.key_auth, **headers)
            assert (status, body["code"]) == (404, 10040), (method, headers, body)
            status, body, _ = api.call(method, f"/v1/combo/agents/{uuid.uuid4()}",
                                       {"name": "x"} if method == "patch" else None, auth=alice.key_auth, **headers)
            assert (status, body["code"]) == (404, 10040), (method, headers, body)
    assert Agent.objects.get(id=agent["id"]).name == "Reviewer"


# --- A PATCH that changes nothing -----------------------------------------------------


def test_a_patch_with_the_stored_values_changes_nothing_and_keeps_the_etag(api, alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    llm = {"provider": "builtin", "model": "m1", "temperature": 0.3, "max_tokens": 256}
    agent = make_agent(api, alice, llm=llm)
    path = f"/v1/combo/agents/{agent['id']}"
    _, read, response = api.get(path, auth=alice.key_auth)
    etag = response["ETag"]
    same = {"name": "Reviewer", "instructions": "You review pull requests.", "llm": llm, "file_ids": []}
    with CaptureQueriesContext(connection) as queries:
        status, body, patched = api.patch(path, same, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert status == 200 and patched["ETag"] == etag
    assert body["data"] == read["data"]  # updated_at included
    assert not [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=etag)[0] == 304  # still that version
    # The tag still names the agent: a chained update with it applies, and that one is a new version.
    status, body, changed = api.patch(path, {"name": "Renamed", "description": ""}, auth=alice.key_auth,
                                      HTTP_IF_MATCH=patched["ETag"])
    assert status == 200 and changed["ETag"] != etag and body["data"]["updated_at"] > read["data"]["updated_at"]


def test_the_openapi_document_describes_the_preconditions_of_read_update_and_delete(api, db):
    item = api.client.get("/v1/openapi.json").json()["paths"]["/v1/combo/agents/{id}"]
    for method in ("get", "patch", "delete"):
        names = [p["name"] for p in item[method]["parameters"] if p["in"] == "header"]
        assert "If-Match" in names and "If-None-Match" in names, (method, names)
        assert "10061" in item[method]["responses"]["412"]["description"], method
        assert "ErrorEnvelope" in str(item[method]["responses"]["412"]["content"]), method
    header = {m: {p["name"]: p["description"] for p in item[m]["parameters"]} for m in ("get", "patch", "delete")}
    assert "304" in header["get"]["If-None-Match"] and "412" in header["patch"]["If-None-Match"]
    assert "deleted" in header["delete"]["If-Match"] and "412" in header["get"]["If-Match"]
    assert "nothing was deleted" in item["delete"]["responses"]["412"]["description"]
    assert "304" not in item["delete"]["responses"] and "ETag" not in item["delete"]["responses"]["204"].get("headers", {})
