"""Sending results to the callback URL: signed, retried with backoff, every attempt stored; SSRF refusals."""

import json
import signal
import socket
import time
from datetime import timedelta
from email.utils import format_datetime

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from agents.models import Agent
from integrations.models import DeliveryAttempt, Webhook, WebhookDelivery
from integrations.signing import sign

from .conftest import OFFLINE_NOTICE

DELIVERIES = "/v1/integrations/webhooks/{}/deliveries"


def _event(post_event, hook, question="Review this PR for me", **kw):
    status, body, _ = post_event(hook.id, {"question": question}, secret=hook.secret, **kw)
    assert status == 202, body
    return WebhookDelivery.objects.get(id=body["data"]["delivery_id"])


# Transactional: the real worker closes stale connections between tasks, which
# PostgreSQL cannot do inside the usual per-test transaction.
@pytest.mark.django_db(transaction=True)
def test_a_real_receiver_gets_a_signed_result_after_two_503s(
    allow_loopback, receiver, make_webhook, post_event, api, alice
):
    receiver.statuses = [503, 503, 200]
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)

    # The real worker command, as an operator runs it (`manage.py db_worker --batch`).
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    try:
        call_command("db_worker", "--batch", "--no-startup-delay", "--interval", "0", verbosity=0)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    assert len(receiver.received) == 3
    for got in receiver.received:
        # The receiver verifies exactly as the overview describes: HMAC over the raw body.
        assert got.headers["x-combo-signature"] == sign(hook.secret, got.body)
        assert got.headers["x-combo-delivery"] == str(delivery.id)
        assert got.headers["x-combo-event"] == "completion.succeeded"
        assert got.headers["content-type"] == "application/json"
        assert got.path == "/hooks/combo?token=abc"
    sent = json.loads(receiver.received[-1].body)
    delivery.refresh_from_db()
    assert sent == {
        "delivery_id": str(delivery.id),
        "event": "completion.succeeded",
        "created_at": delivery.created_at.isoformat().replace("+00:00", "Z"),
        "webhook_id": hook.id,
        "agent_id": hook.data["agent_id"],
        "session_id": str(delivery.session_id),
        "message_id": str(delivery.message_id),
        "question": "Review this PR for me",
        "answer": delivery.answer,
        "reference": [],
        "error": None,
    }
    assert sent["answer"].startswith(OFFLINE_NOTICE)

    assert delivery.callback_status == "delivered" and delivery.delivered_at is not None
    attempts = list(delivery.attempts.all())
    assert [(a.number, a.status_code, a.outcome) for a in attempts] == [
        (1, 503, "retry"), (2, 503, "retry"), (3, 200, "delivered"),
    ]
    assert all(a.latency_ms is not None and a.address == "127.0.0.1" for a in attempts)
    assert attempts[0].next_retry_at is not None and attempts[2].next_retry_at is None

    status, body, _ = api.get(DELIVERIES.format(hook.id), auth=alice.key_auth)
    assert status == 200
    [item] = body["data"]["items"]
    assert item["callback_status"] == "delivered"
    assert [(a["number"], a["status_code"], a["outcome"]) for a in item["attempts"]] == [
        (1, 503, "retry"), (2, 503, "retry"), (3, 200, "delivered"),
    ]
    assert "payload" not in item  # bodies are only in the single-delivery read


@pytest.mark.parametrize("code", [400, 401, 404, 410, 422])
def test_a_4xx_answer_is_final_after_one_attempt(code, allow_loopback, receiver, make_webhook, post_event, drain):
    receiver.statuses = [code]
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    drain()
    delivery.refresh_from_db()
    assert len(receiver.received) == 1
    assert delivery.callback_status == "failed"
    [attempt] = delivery.attempts.all()
    assert (attempt.status_code, attempt.outcome, attempt.next_retry_at) == (code, "failed", None)
    assert attempt.error == f"The receiver answered {code}."


@pytest.mark.parametrize("code", [408, 429, 500, 502])
def test_408_429_and_5xx_are_retried(code, allow_loopback, receiver, make_webhook, post_event, drain):
    receiver.statuses = [code, 200]
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    drain()
    delivery.refresh_from_db()
    assert delivery.callback_status == "delivered"
    assert [a.outcome for a in delivery.attempts.all()] == ["retry", "delivered"]


def test_retries_end_after_the_scheduled_attempts(allow_loopback, receiver, make_webhook, post_event, drain, settings):
    receiver.statuses = [503]
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    drain()
    delivery.refresh_from_db()
    attempts = list(delivery.attempts.all())
    assert len(attempts) == len(settings.COMBO_WEBHOOK_RETRY_DELAYS) + 1 == 7
    assert [a.outcome for a in attempts] == ["retry"] * 6 + ["failed"]
    assert delivery.callback_status == "failed" and len(receiver.received) == 7


def test_connection_errors_are_retried(allow_loopback, make_webhook, post_event, drain, settings):
    settings.COMBO_WEBHOOK_RETRY_DELAYS = [0.0, 0.0]
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = make_webhook(callback_url=f"http://127.0.0.1:{port}/hook")
    delivery = _event(post_event, hook)
    drain()
    attempts = list(delivery.attempts.all())
    assert [(a.outcome, a.status_code) for a in attempts] == [("retry", None), ("retry", None), ("failed", None)]
    assert all(a.error.startswith("Could not connect") for a in attempts)


def test_a_receiver_slower_than_the_timeout_is_retried(allow_loopback, receiver, make_webhook, post_event, drain, settings):
    settings.COMBO_WEBHOOK_DELIVERY_TIMEOUT = 0.2
    settings.COMBO_WEBHOOK_RETRY_DELAYS = [0.0]
    receiver.delay = 0.5
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    drain()
    attempts = list(delivery.attempts.all())
    assert [(a.outcome, a.status_code, a.error) for a in attempts] == [
        ("retry", None, "No answer within 0.2 seconds."), ("failed", None, "No answer within 0.2 seconds."),
    ]
    assert all(a.latency_ms >= 200 for a in attempts)


def test_a_receiver_that_trickles_its_answer_holds_the_worker_no_longer_than_the_timeout(
    allow_loopback, receiver, make_webhook, post_event, drain, settings
):
    # Headers at once, then one byte of the body every 0.05 s: each read is quick,
    # but reading the answer's first 4 KB would take minutes.
    settings.COMBO_WEBHOOK_DELIVERY_TIMEOUT = 0.5
    receiver.trickle = 0.05
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    started = time.monotonic()
    drain()
    assert time.monotonic() - started < 5
    attempt = delivery.attempts.get()
    assert (attempt.outcome, attempt.status_code) == ("delivered", 200)
    assert attempt.response_excerpt.startswith('{"ok"')


def test_a_receiver_that_trickles_its_headers_is_cut_off_at_the_timeout(
    allow_loopback, receiver, make_webhook, post_event, drain, settings
):
    # The status line and headers one byte every 0.05 s: no read waits long, the whole would take 20 s.
    settings.COMBO_WEBHOOK_DELIVERY_TIMEOUT = 0.5
    settings.COMBO_WEBHOOK_RETRY_DELAYS = [0.0]
    receiver.slow_head = 0.05
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    started = time.monotonic()
    drain()
    assert time.monotonic() - started < 5
    attempts = list(delivery.attempts.all())
    assert [(a.outcome, a.status_code, a.error) for a in attempts] == [
        ("retry", None, "No answer within 0.5 seconds."), ("failed", None, "No answer within 0.5 seconds."),
    ]


def test_only_the_start_of_a_receivers_answer_is_kept(allow_loopback, receiver, make_webhook, post_event, drain):
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    drain()
    attempt = delivery.attempts.get()
    assert attempt.response_excerpt == '{"ok": true}'
    assert receiver.received[0].headers["accept-encoding"] == "identity"


@pytest.mark.parametrize("code", [200, 503])
def test_a_receivers_answer_with_nul_bytes_is_kept_without_them(
    code, allow_loopback, receiver, make_webhook, post_event, drain
):
    # PostgreSQL cannot store U+0000 in text: the attempt must still be recorded.
    receiver.statuses = [code]
    receiver.reply = b"bad\x00answer"
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    drain()
    attempt = delivery.attempts.first()
    assert attempt.status_code == code and attempt.response_excerpt == "bad\ufffdanswer"
    delivery.refresh_from_db()
    assert delivery.callback_status == ("delivered" if code == 200 else "failed")


def test_retries_wait_with_exponential_backoff_and_jitter(allow_loopback, receiver, make_webhook, post_event, drain, settings):
    settings.COMBO_WEBHOOK_RETRY_DELAYS = [60.0, 120.0]
    settings.COMBO_WEBHOOK_RETRY_JITTER = 0.2
    receiver.statuses = [503, 503, 200]
    hook = make_webhook(callback_url=receiver.url)
    start = timezone.now()
    with time_machine.travel(start, tick=True):
        delivery = _event(post_event, hook)
        drain()
    first = delivery.attempts.get(number=1)
    assert first.outcome == "retry"
    # 60 s ± 20 %, counted from the end of the attempt (a little after attempted_at).
    assert 48 <= (first.next_retry_at - first.attempted_at).total_seconds() <= 72 + 2
    # The retry is a deferred task: a worker now finds nothing to do.
    pending = DBTaskResult.objects.filter(task_path="integrations.tasks.send_webhook_result", status="READY").get()
    assert pending.run_after == first.next_retry_at or abs((pending.run_after - first.next_retry_at).total_seconds()) < 1
    with time_machine.travel(start + timedelta(seconds=30), tick=True):
        drain()
    assert len(receiver.received) == 1
    with time_machine.travel(start + timedelta(seconds=75), tick=True):
        drain()
    second = delivery.attempts.get(number=2)
    assert 96 <= (second.next_retry_at - second.attempted_at).total_seconds() <= 144 + 2  # 120 s ± 20 %
    with time_machine.travel(start + timedelta(seconds=75 + 150), tick=True):
        drain()
    delivery.refresh_from_db()
    assert delivery.callback_status == "delivered" and len(receiver.received) == 3


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_a_retry_waits_at_least_the_receivers_retry_after(
    form, allow_loopback, receiver, make_webhook, post_event, drain, settings
):
    settings.COMBO_WEBHOOK_RETRY_DELAYS = [60.0]
    settings.COMBO_WEBHOOK_RETRY_JITTER = 0.0
    receiver.statuses = [429]
    start = timezone.now().replace(microsecond=0)
    later = start + timedelta(seconds=600)
    receiver.headers = {"Retry-After": "600" if form == "seconds" else format_datetime(later, usegmt=True)}
    hook = make_webhook(callback_url=receiver.url)
    with time_machine.travel(start, tick=False):
        delivery = _event(post_event, hook)
        drain()
    first = delivery.attempts.get(number=1)
    assert first.outcome == "retry" and first.status_code == 429
    assert 599 <= (first.next_retry_at - first.attempted_at).total_seconds() <= 601


def test_a_failed_run_is_delivered_as_completion_failed(allow_loopback, receiver, make_webhook, post_event, drain, alice_agent):
    hook = make_webhook(callback_url=receiver.url)
    Agent.objects.filter(id=alice_agent.id).update(llm_provider="not-configured")
    delivery = _event(post_event, hook)
    drain()
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.error_code == 30001 and delivery.answer == ""
    [got] = receiver.received
    assert got.headers["x-combo-event"] == "completion.failed"
    sent = json.loads(got.body)
    assert sent["event"] == "completion.failed" and sent["error"]["code"] == 30001


def test_redeliver_sends_the_result_again(allow_loopback, receiver, make_webhook, post_event, drain, api, alice):
    receiver.statuses = [400, 200]
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    drain()
    delivery.refresh_from_db()
    assert delivery.callback_status == "failed"

    status, body, _ = api.post(f"{DELIVERIES.format(hook.id)}/{delivery.id}/redeliver", auth=alice.key_auth)
    assert status == 202 and body["data"]["callback_status"] == "pending"
    drain()
    delivery.refresh_from_db()
    assert delivery.callback_status == "delivered"
    assert [(a.number, a.redelivery, a.outcome) for a in delivery.attempts.all()] == [
        (1, False, "failed"), (2, True, "delivered"),
    ]
    assert [r.headers["x-combo-delivery"] for r in receiver.received] == [str(delivery.id)] * 2
    assert receiver.received[0].body == receiver.received[1].body


def test_the_result_names_the_agent_that_answered_after_the_webhook_is_re_pointed(
    allow_loopback, receiver, make_webhook, post_event, drain, api, alice, alice_agent
):
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    other = Agent.objects.create(owner=alice.user, name="Other")
    api.patch(f"/v1/integrations/webhooks/{hook.id}", {"agent_id": str(other.id)}, auth=alice.key_auth)
    drain()  # the run is the agent the event was accepted for
    status, _body, _ = api.post(f"{DELIVERIES.format(hook.id)}/{delivery.id}/redeliver", auth=alice.key_auth)
    assert status == 202
    drain()
    first, again = (json.loads(got.body) for got in receiver.received)
    delivery.refresh_from_db()
    assert delivery.session.agent_id == alice_agent.id
    assert first["agent_id"] == again["agent_id"] == str(alice_agent.id)
    assert receiver.received[0].body == receiver.received[1].body


def test_a_redeliver_stops_the_retries_of_the_cycle_before_it(
    allow_loopback, receiver, make_webhook, post_event, drain, api, alice, settings
):
    settings.COMBO_WEBHOOK_RETRY_DELAYS = [60.0]
    receiver.statuses = [503, 200]
    hook = make_webhook(callback_url=receiver.url)
    start = timezone.now()
    with time_machine.travel(start, tick=True):
        delivery = _event(post_event, hook)
        drain()  # attempt 1: 503, a retry is scheduled for ~1 min later
        api.post(f"{DELIVERIES.format(hook.id)}/{delivery.id}/redeliver", auth=alice.key_auth)
        drain()  # the redeliver's attempt: 200
    with time_machine.travel(start + timedelta(minutes=5), tick=True):
        drain()  # the old cycle's retry wakes up, sees it is superseded, sends nothing
    delivery.refresh_from_db()
    assert delivery.callback_status == "delivered"
    assert [a.outcome for a in delivery.attempts.all()] == ["retry", "delivered"]
    assert len(receiver.received) == 2


def test_redeliver_needs_a_finished_delivery_and_a_callback_url(make_webhook, post_event, drain, api, alice):
    hook = make_webhook()
    queued = _event(post_event, hook)
    status, body, _ = api.post(f"{DELIVERIES.format(hook.id)}/{queued.id}/redeliver", auth=alice.key_auth)
    assert (status, body["code"]) == (409, 10060)
    drain()
    status, body, _ = api.post(f"{DELIVERIES.format(hook.id)}/{queued.id}/redeliver", auth=alice.key_auth)
    assert (status, body["code"]) == (409, 10060) and "no callback URL" in body["message"]
    assert not DeliveryAttempt.objects.exists()


# --- SSRF ------------------------------------------------------------------------

REFUSED = [
    "http://127.0.0.1:9380/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook",
    "http://localhost:9380/hook",
]


@pytest.mark.parametrize("url", REFUSED)
def test_internal_callback_urls_are_refused_at_create(url, api, alice, alice_agent):
    status, body, _ = api.post(
        "/v1/integrations/webhooks", {"name": "x", "agent_id": str(alice_agent.id), "callback_url": url},
        auth=alice.key_auth,
    )
    assert (status, body["code"]) == (400, 10147)
    assert "may not point to" in body["message"] and body["data"]["errors"]["callback_url"] == [body["message"]]
    assert not Webhook.objects.exists()


@pytest.mark.parametrize("url", REFUSED)
def test_internal_callback_urls_are_refused_at_update(url, make_webhook, api, alice):
    hook = make_webhook()
    status, body, _ = api.patch(f"/v1/integrations/webhooks/{hook.id}", {"callback_url": url}, auth=alice.key_auth)
    assert (status, body["code"]) == (400, 10147)
    assert Webhook.objects.get(id=hook.id).callback_url == ""


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "https://user:pw@example.com/hook", "not a url", "http://\u2603.example/hook"]
)
def test_callback_urls_of_the_wrong_shape_are_a_validation_error(url, api, alice, alice_agent):
    status, body, _ = api.post(
        "/v1/integrations/webhooks", {"name": "x", "agent_id": str(alice_agent.id), "callback_url": url},
        auth=alice.key_auth,
    )
    assert (status, body["code"]) == (400, 10001) and "callback_url" in body["data"]["errors"]


def test_the_address_is_checked_again_at_send_time(settings, receiver, make_webhook, post_event, drain):
    settings.COMBO_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    hook = make_webhook(callback_url=receiver.url)
    settings.COMBO_WEBHOOK_ALLOWED_HOSTS = []  # the operator withdraws the allowance
    delivery = _event(post_event, hook)
    drain()
    delivery.refresh_from_db()
    assert receiver.received == []
    assert delivery.callback_status == "failed"
    [attempt] = delivery.attempts.all()
    assert attempt.outcome == "failed" and "may not point to a loopback address" in attempt.error


def _fake_dns(monkeypatch, answers: dict[str, list[str]]):
    """Resolve the given names to the given addresses in turn (DNS is outside the machine)."""
    real = socket.getaddrinfo
    calls: dict[str, int] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            index = min(calls.get(host, 0), len(answers[host]) - 1)
            calls[host] = calls.get(host, 0) + 1
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host][index], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr("integrations.ssrf.socket.getaddrinfo", getaddrinfo)


def test_a_dns_rebind_between_save_and_send_is_refused(monkeypatch, make_webhook, post_event, drain):
    # Public when the URL is saved, private when the result is sent.
    _fake_dns(monkeypatch, {"hooks.example.test": ["93.184.215.14", "10.0.0.7"]})
    hook = make_webhook(callback_url="http://hooks.example.test/combo")
    delivery = _event(post_event, hook)
    drain()
    [attempt] = delivery.attempts.all()
    assert attempt.outcome == "failed" and "private address: hooks.example.test (10.0.0.7)" in attempt.error


def test_the_request_goes_to_the_vetted_address_with_the_original_host(monkeypatch, settings, receiver, make_webhook, post_event, drain):
    settings.COMBO_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.0/8"]
    _fake_dns(monkeypatch, {"ci.internal.test": ["127.0.0.1"]})
    port = receiver.url.split(":")[2].split("/")[0]
    hook = make_webhook(callback_url=f"http://ci.internal.test:{port}/hook")
    delivery = _event(post_event, hook)
    drain()
    [got] = receiver.received
    assert got.headers["host"] == f"ci.internal.test:{port}"
    assert delivery.attempts.get().address == "127.0.0.1"


def test_an_internationalised_host_name_is_sent_in_its_ascii_form(monkeypatch, settings, receiver, make_webhook, post_event, drain):
    settings.COMBO_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.0/8"]
    _fake_dns(monkeypatch, {"xn--bcher-kva.example": ["127.0.0.1"]})
    port = receiver.url.split(":")[2].split("/")[0]
    hook = make_webhook(callback_url=f"http://b\u00fccher.example:{port}/hook")
    delivery = _event(post_event, hook)
    drain()
    [got] = receiver.received
    assert got.headers["host"] == f"xn--bcher-kva.example:{port}"
    delivery.refresh_from_db()
    assert delivery.callback_status == "delivered"


# --- listing and ownership ------------------------------------------------------------


def test_deliveries_are_listed_newest_first_with_paging_and_a_status_filter(make_webhook, post_event, api, alice):
    hook = make_webhook()
    for n in range(3):
        _event(post_event, hook, question=f"q{n}")
    post_event(hook.id, {"question": "unsigned"})  # rejected
    status, body, _ = api.get(f"{DELIVERIES.format(hook.id)}?limit=2", auth=alice.key_auth)
    assert status == 200 and len(body["data"]["items"]) == 2 and body["data"]["next_cursor"]
    status, page2, _ = api.get(
        f"{DELIVERIES.format(hook.id)}?limit=2&cursor={body['data']['next_cursor']}", auth=alice.key_auth
    )
    ids = [i["id"] for i in body["data"]["items"] + page2["data"]["items"]]
    assert len(set(ids)) == 4 and page2["data"]["next_cursor"] is None
    status, rejected, _ = api.get(f"{DELIVERIES.format(hook.id)}?status=rejected", auth=alice.key_auth)
    [item] = rejected["data"]["items"]
    assert item["reason"] == {"code": 10140, "message": "The X-Combo-Signature header is missing."}
    status, bad, _ = api.get(f"{DELIVERIES.format(hook.id)}?status=nope", auth=alice.key_auth)
    assert (status, bad["code"]) == (400, 10001)


def test_bob_cannot_see_or_redeliver_alices_deliveries(make_webhook, post_event, api, bob):
    hook = make_webhook()
    delivery = _event(post_event, hook)
    for method, path in [
        ("GET", DELIVERIES.format(hook.id)),
        ("GET", f"{DELIVERIES.format(hook.id)}/{delivery.id}"),
        ("POST", f"{DELIVERIES.format(hook.id)}/{delivery.id}/redeliver"),
    ]:
        status, body, _ = api.call(method, path, auth=bob.key_auth)
        assert (status, body["code"]) == (404, 10040), path


def test_a_delivery_is_only_found_under_its_own_webhook(make_webhook, post_event, api, alice):
    one, two = make_webhook(), make_webhook()
    delivery = _event(post_event, one)
    status, body, _ = api.get(f"{DELIVERIES.format(two.id)}/{delivery.id}", auth=alice.key_auth)
    assert (status, body["code"]) == (404, 10040)
