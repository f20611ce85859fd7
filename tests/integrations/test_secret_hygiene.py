"""The webhook secret is shown at create and rotate only: never in logs, other responses or stored rows."""

import json
import logging

from django.core import serializers as django_serializers
from django_tasks_db.models import DBTaskResult

from integrations.models import DeliveryAttempt, Webhook, WebhookDelivery
from integrations.signing import sign, sign_timestamped

WEBHOOKS = "/v1/integrations/webhooks"


def test_the_secret_never_leaks(caplog, allow_loopback, receiver, make_webhook, post_event, drain, api, alice, client, admin_user):
    caplog.set_level(logging.DEBUG)
    receiver.statuses = [503, 200]
    hook = make_webhook(callback_url=receiver.url)
    signatures = []

    body = json.dumps({"question": "Review this PR for me"}).encode()
    signatures.append(sign(hook.secret, body))
    assert post_event(hook.id, body, signature=signatures[-1], delivery="evt-1")[0] == 202
    assert post_event(hook.id, body, signature=signatures[-1], delivery="evt-1")[0] == 202  # replay
    signatures.append(sign_timestamped(hook.secret, body, timestamp=1))
    assert post_event(hook.id, body, signature=signatures[-1])[0] == 401  # stale
    signatures.append(sign(hook.secret, body + b" "))
    assert post_event(hook.id, body, signature=signatures[-1])[0] == 401  # mismatch
    drain()

    _status, rotated, _ = api.post(f"{WEBHOOKS}/{hook.id}/rotate-secret", auth=alice.key_auth)
    new_secret = rotated["data"]["secret"]
    signatures.append(sign(hook.secret, body))  # the previous secret, in its grace period
    assert post_event(hook.id, body, signature=signatures[-1])[0] == 202
    drain()
    secrets = [hook.secret, new_secret]

    responses = [
        api.get(WEBHOOKS, auth=alice.key_auth)[1],
        api.get(f"{WEBHOOKS}/{hook.id}", auth=alice.key_auth)[1],
        api.patch(f"{WEBHOOKS}/{hook.id}", {"name": "renamed"}, auth=alice.key_auth)[1],
        api.get(f"{WEBHOOKS}/{hook.id}/deliveries", auth=alice.key_auth)[1],
    ]
    for item in responses[3]["data"]["items"]:
        responses.append(api.get(f"{WEBHOOKS}/{hook.id}/deliveries/{item['id']}", auth=alice.key_auth)[1])
    client.force_login(admin_user)
    admin_pages = [
        client.get("/admin/integrations/webhook/").content.decode(),
        client.get(f"/admin/integrations/webhook/{hook.id}/change/").content.decode(),
        client.get("/admin/integrations/webhookdelivery/").content.decode(),
    ]
    for delivery in WebhookDelivery.objects.all():
        admin_pages.append(client.get(f"/admin/integrations/webhookdelivery/{delivery.id}/change/").content.decode())

    stored = django_serializers.serialize(
        "json",
        [*WebhookDelivery.objects.all(), *DeliveryAttempt.objects.all(), *DBTaskResult.objects.all(), *Webhook.objects.all()],
    )
    digests = [part.partition("=")[2] for s in signatures for part in s.split(",") if part.startswith("sha256=")]
    # The receiver does see the signatures Combo made for it; those are not secret.
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in json.dumps(responses)
        assert all(secret not in page for page in admin_pages)
        assert secret not in stored
    for digest in digests:
        assert digest not in caplog.text and digest not in stored and digest not in json.dumps(responses)
    assert WebhookDelivery.objects.filter(status="rejected").count() == 2
    assert WebhookDelivery.objects.filter(callback_status="delivered").count() == 2
    assert "secret_encrypted" not in admin_pages[1]
