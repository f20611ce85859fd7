"""POST /v1/integrations/webhooks/{id}/events: signature first, every refusal recorded, 202 and a background run."""

import json
import time
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from agents.models import Message, Session
from integrations.models import Webhook, WebhookDelivery
from integrations.signing import sign, sign_timestamped

from .conftest import EVENTS, OFFLINE_NOTICE

PR_EVENT = {"action": "opened", "pull_request": {"title": "Fix the parser", "user": {"login": "octocat"}}}


def test_a_signed_event_is_accepted_at_once_and_answered_in_the_background(make_webhook, post_event, drain, api, alice):
    hook = make_webhook()
    status, body, _ = post_event(hook.id, {"question": "Review this PR for me"}, secret=hook.secret, delivery="gh-1")
    assert status == 202 and body["code"] == 0
    data = body["data"]
    assert data["status"] == "queued" and data["replayed"] is False
    delivery = WebhookDelivery.objects.get(id=data["delivery_id"])
    assert str(delivery.session_id) == data["session_id"]
    assert delivery.status == "queued" and delivery.question == "Review this PR for me"
    assert delivery.payload == {"question": "Review this PR for me"}
    assert delivery.signature_form == "plain" and delivery.sender_delivery_id == "gh-1"
    # The run waits for a worker; nothing was answered inside the request.
    assert DBTaskResult.objects.filter(task_path="integrations.tasks.run_webhook_event").count() == 1
    assert not Message.objects.filter(session_id=data["session_id"], role="assistant").exists()

    drain()

    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.error_code is None
    assert delivery.answer.startswith(OFFLINE_NOTICE) and '"Review this PR for me"' in delivery.answer
    assert delivery.started_at and delivery.finished_at and delivery.finished_at >= delivery.started_at
    assert delivery.callback_status == "none" and not delivery.attempts.exists()
    messages = list(Message.objects.filter(session_id=data["session_id"]).order_by("created_at"))
    assert [(m.role, m.status) for m in messages] == [("user", "complete"), ("assistant", "complete")]
    assert messages[1].content == delivery.answer and delivery.message_id == messages[1].id

    status, read, _ = api.get(f"/v1/integrations/webhooks/{hook.id}/deliveries/{delivery.id}", auth=alice.key_auth)
    assert status == 200
    assert read["data"]["answer"] == delivery.answer and read["data"]["status"] == "succeeded"
    assert read["data"]["session_id"] == data["session_id"] and read["data"]["event"] == "completion.succeeded"
    assert read["data"]["payload"] == {"question": "Review this PR for me"} and read["data"]["reference"] == []


def test_the_template_is_filled_from_the_payload(make_webhook, post_event, drain):
    hook = make_webhook(
        question_template="Review '{{ pull_request.title }}' by {{ pull_request.user.login }}.{{ pull_request.body }}{{ __class__ }}"
    )
    status, body, _ = post_event(hook.id, PR_EVENT, secret=hook.secret)
    assert status == 202
    drain()
    delivery = WebhookDelivery.objects.get(id=body["data"]["delivery_id"])
    assert delivery.question == "Review 'Fix the parser' by octocat."
    assert delivery.status == "succeeded" and "Review 'Fix the parser' by octocat." in delivery.answer
    assert Session.objects.get(id=delivery.session_id).title == "Review 'Fix the parser' by octocat."


def test_with_the_immediate_backend_the_run_happens_in_the_request(make_webhook, post_event):
    hook = make_webhook()
    with override_settings(TASKS={"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}):
        status, body, _ = post_event(hook.id, {"question": "hi"}, secret=hook.secret)
    assert status == 202
    delivery = WebhookDelivery.objects.get(id=body["data"]["delivery_id"])
    assert delivery.status == "succeeded" and delivery.answer.startswith(OFFLINE_NOTICE)


# --- refusals ---------------------------------------------------------------------

OTHER_SECRET = "whsec_not-the-right-one"


def _case(name):
    """Each case returns (webhook changes, body bytes, X-Combo-Signature or None, X-Combo-Delivery or None)."""

    def build(secret):
        body = json.dumps({"question": "Review this PR for me"}).encode()
        now = int(time.time())
        if name == "missing header":
            return {}, body, None, None
        if name == "malformed header":
            return {}, body, "sha256=nothex", None
        if name == "malformed timestamp":
            return {}, body, "t=yesterday," + sign(secret, body), None
        if name == "wrong secret":
            return {}, body, sign(OTHER_SECRET, body), None
        if name == "body changed by one byte":
            return {}, body.replace(b"PR", b"PS"), sign(secret, body), None
        if name == "stale timestamp":
            return {}, body, sign_timestamped(secret, body, timestamp=now - 301), None
        if name == "future timestamp":
            return {}, body, sign_timestamped(secret, body, timestamp=now + 301), None
        if name == "timestamp required":
            return {"require_timestamp": True}, body, sign(secret, body), None
        if name == "disabled webhook":
            return {"enabled": False}, body, sign(secret, body), None
        if name == "not json":
            raw = b"action=opened&title=x"
            return {}, raw, sign(secret, raw), None
        if name == "json but not an object":
            raw = b'["Review this PR"]'
            return {}, raw, sign(secret, raw), None
        if name == "json with a NUL character":
            raw = b'{"question": "nul \\u0000 here"}'
            return {}, raw, sign(secret, raw), None
        if name == "json with a lone surrogate":
            raw = b'{"question": "hi \\ud800 there"}'
            return {}, raw, sign(secret, raw), None
        if name == "json with a lone surrogate in a key":
            raw = b'{"question": "hi", "\\udfff": 1}'
            return {}, raw, sign(secret, raw), None
        if name == "json nested too deep":
            raw = b'{"question": "q", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
            return {}, raw, sign(secret, raw), None
        if name == "no question":
            raw = b'{"action": "opened"}'
            return {}, raw, sign(secret, raw), None
        if name == "template renders empty":
            raw = b'{"question": "ignored when a template is set"}'
            return {"question_template": "{{ pull_request.title }}"}, raw, sign(secret, raw), None
        if name == "body over 1 MB":
            raw = b'{"question": "' + b"x" * (1024 * 1024) + b'"}'
            return {}, raw, sign(secret, raw), None
        if name == "malformed delivery id":
            return {}, body, sign(secret, body), "has spaces in it"
        raise AssertionError(name)

    return build


REFUSALS = [
    ("missing header", 401, 10140),
    ("malformed header", 400, 10141),
    ("malformed timestamp", 400, 10141),
    ("wrong secret", 401, 10142),
    ("body changed by one byte", 401, 10142),
    ("stale timestamp", 401, 10143),
    ("future timestamp", 401, 10143),
    ("timestamp required", 401, 10144),
    ("disabled webhook", 403, 10145),
    ("not json", 400, 10146),
    ("json but not an object", 400, 10146),
    ("json with a NUL character", 400, 10146),
    ("json with a lone surrogate", 400, 10146),
    ("json with a lone surrogate in a key", 400, 10146),
    ("json nested too deep", 400, 10146),
    ("no question", 400, 10148),
    ("template renders empty", 400, 10148),
    ("body over 1 MB", 413, 10070),
    ("malformed delivery id", 400, 10004),
]


@pytest.mark.parametrize("name, http_status, code", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_refusal_has_its_code_and_is_recorded_without_the_signature(
    name, http_status, code, make_webhook, post_event
):
    hook = make_webhook()
    changes, body, signature, delivery_header = _case(name)(hook.secret)
    Webhook.objects.filter(id=hook.id).update(**changes)
    sessions_before = Session.objects.count()

    status, envelope, response = post_event(hook.id, body, signature=signature, delivery=delivery_header)

    assert (status, envelope["code"]) == (http_status, code)
    assert envelope["data"]["request_id"] == response["X-Request-Id"]
    rows = list(WebhookDelivery.objects.filter(webhook_id=hook.id))
    assert len(rows) == 1
    row = rows[0]
    assert row.status == "rejected" and row.reason_code == code and row.reason_message == envelope["message"]
    assert row.body_size == len(body) and row.payload is None and row.session_id is None
    stored = json.dumps({f.name: str(getattr(row, f.attname)) for f in row._meta.fields})
    assert hook.secret not in stored
    if signature:
        for part in signature.split(","):
            assert part.partition("=")[2] not in stored  # neither the digest nor the timestamp value
    # Nothing ran and no session was started.
    assert not DBTaskResult.objects.exists()
    assert Session.objects.count() == sessions_before


def test_an_unknown_webhook_is_a_404_and_records_nothing(post_event, db, make_webhook):
    make_webhook()
    for webhook_id in ["7d1b0bde-4a43-4b8e-9d0f-6d2f3c4e5a6b", "not-a-uuid"]:
        status, body, _ = post_event(webhook_id, {"question": "x"}, secret="whsec_x")
        assert (status, body["code"], body["message"]) == (404, 10040, "No webhook with this id.")
    assert not WebhookDelivery.objects.exists()


def test_the_events_endpoint_ignores_bearer_credentials(make_webhook, api, alice):
    hook = make_webhook()
    # A valid API key is not a signature.
    status, body, response = api.post(EVENTS.format(hook.id), {"question": "x"}, auth=alice.key_auth)
    assert (status, body["code"]) == (401, 10140)
    # The challenge names what to send: a signature, not a bearer credential.
    assert response["WWW-Authenticate"] == 'X-Combo-Signature realm="combo-webhooks"'


def test_only_post_is_allowed(make_webhook, api):
    hook = make_webhook()
    status, body, _ = api.get(EVENTS.format(hook.id))
    assert (status, body["code"]) == (405, 10050)


# --- timestamped form ---------------------------------------------------------------


@pytest.mark.parametrize("skew", [-299, 0, 299])
def test_timestamped_signatures_inside_the_window_are_accepted(skew, make_webhook, post_event):
    hook = make_webhook(require_timestamp=True)
    body = json.dumps({"question": "hi"}).encode()
    with time_machine.travel(timezone.now(), tick=False):
        signature = sign_timestamped(hook.secret, body, timestamp=int(time.time()) + skew)
        status, envelope, _ = post_event(hook.id, body, signature=signature)
    assert status == 202, envelope
    assert WebhookDelivery.objects.get(id=envelope["data"]["delivery_id"]).signature_form == "timestamped"


def test_a_timestamped_signature_goes_stale_after_five_minutes(make_webhook, post_event):
    hook = make_webhook()
    body = json.dumps({"question": "hi"}).encode()
    start = timezone.now()
    signature = sign_timestamped(hook.secret, body, timestamp=int(start.timestamp()))
    with time_machine.travel(start + timedelta(seconds=299), tick=False):
        assert post_event(hook.id, body, signature=signature)[0] == 202
    with time_machine.travel(start + timedelta(seconds=302), tick=False):
        status, envelope, _ = post_event(hook.id, body, signature=signature)
    assert (status, envelope["code"]) == (401, 10143)


# --- rotation --------------------------------------------------------------------


def test_the_old_secret_works_during_the_grace_period_and_not_after(make_webhook, post_event, api, alice):
    hook = make_webhook()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        status, body, _ = api.post(f"/v1/integrations/webhooks/{hook.id}/rotate-secret", auth=alice.key_auth)
        new_secret = body["data"]["secret"]
    old_secret = hook.secret

    with time_machine.travel(start + timedelta(hours=23, minutes=59), tick=False):
        status, body, _ = post_event(hook.id, {"question": "old"}, secret=old_secret)
        assert status == 202
        assert WebhookDelivery.objects.get(id=body["data"]["delivery_id"]).signed_with_previous_secret is True
        status, body, _ = post_event(hook.id, {"question": "new"}, secret=new_secret)
        assert status == 202
        assert WebhookDelivery.objects.get(id=body["data"]["delivery_id"]).signed_with_previous_secret is False

    with time_machine.travel(start + timedelta(hours=24, minutes=1), tick=False):
        status, body, _ = post_event(hook.id, {"question": "old, too late"}, secret=old_secret)
        assert (status, body["code"]) == (401, 10142)
        assert post_event(hook.id, {"question": "new"}, secret=new_secret)[0] == 202

    outcomes = sorted(WebhookDelivery.objects.values_list("question", "status", "reason_code"))
    assert outcomes == [("", "rejected", 10142), ("new", "queued", None), ("new", "queued", None), ("old", "queued", None)]


def test_the_grace_period_is_a_setting(make_webhook, post_event, api, alice, settings):
    settings.COMBO_WEBHOOK_SECRET_GRACE_HOURS = 1
    hook = make_webhook()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        api.post(f"/v1/integrations/webhooks/{hook.id}/rotate-secret", auth=alice.key_auth)
    with time_machine.travel(start + timedelta(minutes=61), tick=False):
        status, body, _ = post_event(hook.id, {"question": "old"}, secret=hook.secret)
    assert (status, body["code"]) == (401, 10142)


# --- idempotency ----------------------------------------------------------------


def test_the_same_delivery_id_replays_the_original_result_and_runs_once(make_webhook, post_event, drain):
    hook = make_webhook()
    event = {"question": "Review this PR for me"}
    status, first, _ = post_event(hook.id, event, secret=hook.secret, delivery="evt-42")
    assert status == 202
    status, second, response = post_event(hook.id, event, secret=hook.secret, delivery="evt-42")
    assert status == 202 and response["Idempotent-Replayed"] == "true"
    assert second["data"]["replayed"] is True
    assert second["data"]["delivery_id"] == first["data"]["delivery_id"]
    assert second["data"]["session_id"] == first["data"]["session_id"]
    assert DBTaskResult.objects.count() == 1

    drain()
    status, third, _ = post_event(hook.id, event, secret=hook.secret, delivery="evt-42")
    assert status == 202 and third["data"]["status"] == "succeeded"
    assert third["data"]["delivery_id"] == first["data"]["delivery_id"]

    delivery = WebhookDelivery.objects.get()
    assert delivery.replay_count == 2
    answers = Message.objects.filter(session_id=delivery.session_id, role="assistant")
    assert answers.count() == 1 and answers.get().content == delivery.answer
    assert DBTaskResult.objects.count() == 1


def test_reusing_a_delivery_id_with_a_different_body_is_a_conflict(make_webhook, post_event):
    hook = make_webhook()
    post_event(hook.id, {"question": "one"}, secret=hook.secret, delivery="evt-1")
    status, body, _ = post_event(hook.id, {"question": "two"}, secret=hook.secret, delivery="evt-1")
    assert (status, body["code"]) == (409, 10060)
    rejected = WebhookDelivery.objects.get(status="rejected")
    assert rejected.reason_code == 10060 and rejected.sender_delivery_id == "evt-1" and rejected.idempotency_key is None
    assert WebhookDelivery.objects.filter(status="queued").count() == 1


def test_a_delivery_id_is_free_again_after_24_hours(make_webhook, post_event):
    hook = make_webhook()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        first = post_event(hook.id, {"question": "one"}, secret=hook.secret, delivery="evt-1")[1]
    with time_machine.travel(start + timedelta(hours=24, minutes=1), tick=False):
        status, second, _ = post_event(hook.id, {"question": "one"}, secret=hook.secret, delivery="evt-1")
    assert status == 202 and second["data"]["replayed"] is False
    assert second["data"]["delivery_id"] != first["data"]["delivery_id"]
    old = WebhookDelivery.objects.get(id=first["data"]["delivery_id"])
    assert old.idempotency_key is None and old.sender_delivery_id == "evt-1"
    assert WebhookDelivery.objects.get(id=second["data"]["delivery_id"]).idempotency_key == "evt-1"


def test_delivery_ids_are_per_webhook(make_webhook, post_event):
    one, two = make_webhook(), make_webhook()
    a = post_event(one.id, {"question": "q"}, secret=one.secret, delivery="evt-1")[1]
    b = post_event(two.id, {"question": "q"}, secret=two.secret, delivery="evt-1")[1]
    assert a["data"]["replayed"] is False and b["data"]["replayed"] is False
    assert a["data"]["delivery_id"] != b["data"]["delivery_id"]


def test_an_accepted_event_is_answered_by_the_agent_it_was_accepted_for(make_webhook, post_event, drain, api, alice, alice_agent):
    hook = make_webhook()
    _status, body, _ = post_event(hook.id, {"question": "hi"}, secret=hook.secret)
    other = type(alice_agent).objects.create(owner=alice.user, name="Other", instructions="Be brief.")
    api.patch(f"/v1/integrations/webhooks/{hook.id}", {"agent_id": str(other.id)}, auth=alice.key_auth)
    drain()
    delivery = WebhookDelivery.objects.get(id=body["data"]["delivery_id"])
    assert delivery.status == "succeeded" and delivery.session.agent_id == alice_agent.id
    assert "Be brief" not in delivery.answer


def test_an_unreadable_secret_is_a_server_fault_not_a_refusal(make_webhook, post_event, settings, caplog):
    # The operator changed SECRET_KEY with no COMBO_WEBHOOK_ENCRYPTION_KEY: Combo is at fault, not the sender.
    hook = make_webhook()
    settings.SECRET_KEY = "changed by the operator"
    status, body, _ = post_event(hook.id, {"question": "hi"}, secret=hook.secret)
    assert (status, body["code"]) == (500, 20001) and "rotate" in body["message"]
    assert not WebhookDelivery.objects.exists()
    assert "cannot be decrypted" in caplog.text and hook.secret not in caplog.text


@override_settings(RATE_LIMITS={**settings.RATE_LIMITS, "webhook": 3})
@time_machine.travel("2026-11-27 10:00:05", tick=False)  # one rate-limit window for the whole test
def test_forged_calls_spend_their_senders_budget_not_the_webhooks(make_webhook, post_event):
    hook = make_webhook()
    forged = [post_event(hook.id, {"question": "x"}, signature="sha256=" + "0" * 64) for _ in range(5)]
    assert [status for status, _, _ in forged] == [401, 401, 401, 429, 429]
    assert forged[2][2]["X-RateLimit-Remaining"] == "0"
    # Refused before anything is stored: the flood writes at most its budget's worth of rows.
    assert WebhookDelivery.objects.filter(webhook_id=hook.id, status="rejected").count() == 3
    # The webhook's real sender, even from the same address, is not held up.
    signed = [post_event(hook.id, {"question": f"q{n}"}, secret=hook.secret) for n in range(4)]
    assert [status for status, _, _ in signed] == [202, 202, 202, 429]
    assert signed[0][2]["X-RateLimit-Limit"] == "3" and signed[0][2]["X-RateLimit-Remaining"] == "2"
    assert signed[3][1]["data"]["family"] == "webhook"


def test_a_webhook_deleted_while_its_agent_answers_ends_the_run_quietly(
    make_webhook, post_event, drain, api, alice, monkeypatch, caplog
):
    hook = make_webhook()
    status, _body, _ = post_event(hook.id, {"question": "hi"}, secret=hook.secret)
    assert status == 202
    from agents import completions

    real = completions.complete_sync

    def answer_while_the_owner_deletes_the_webhook(**kwargs):
        api.delete(f"/v1/integrations/webhooks/{hook.id}", auth=alice.key_auth)
        return real(**kwargs)

    monkeypatch.setattr(completions, "complete_sync", answer_while_the_owner_deletes_the_webhook)
    drain()
    assert not WebhookDelivery.objects.exists()
    [task] = DBTaskResult.objects.filter(task_path="integrations.tasks.run_webhook_event")
    assert task.status == "SUCCESSFUL"
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelname == "ERROR"]
