"""Webhook operations in /v1/openapi.json, and the operators' admin pages."""

from openapi_spec_validator import validate

from integrations.models import Webhook

BASE = "/v1/integrations/webhooks"


def test_every_webhook_operation_is_in_the_openapi_document(client, db):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    paths = document["paths"]
    expected = {
        BASE: {"get", "post"},
        BASE + "/{id}": {"get", "patch", "delete"},
        BASE + "/{id}/rotate-secret": {"post"},
        BASE + "/{id}/events": {"post"},
        BASE + "/{webhook_id}/deliveries": {"get"},
        BASE + "/{webhook_id}/deliveries/{id}": {"get"},
        BASE + "/{webhook_id}/deliveries/{id}/redeliver": {"post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) >= methods, path
        for method in methods:
            assert paths[path][method].get("operationId"), (path, method)


def test_the_events_operation_documents_the_signature_and_its_202(client, db):
    document = client.get("/v1/openapi.json").json()
    operation = document["paths"][BASE + "/{id}/events"]["post"]
    assert "security" not in operation or operation["security"] in ([], [{}])
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    assert headers["X-Combo-Signature"]["required"] is True
    assert "X-Combo-Delivery" in headers
    accepted = operation["responses"]["202"]["content"]["application/json"]["schema"]
    assert accepted["properties"]["data"] == {"$ref": "#/components/schemas/EventAccepted"}
    schema = document["components"]["schemas"]["EventAccepted"]
    assert {"delivery_id", "session_id"} <= set(schema["required"])
    for status in ("400", "401", "403", "404", "409", "413"):
        assert status in operation["responses"], status
    assert "10145" in operation["responses"]["403"]["description"]
    created = document["paths"][BASE]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created["properties"]["data"] == {"$ref": "#/components/schemas/WebhookWithSecret"}
    assert "secret" not in document["components"]["schemas"]["Webhook"]["properties"]
    assert "10148" in document["info"]["description"]


def test_the_admin_lists_webhooks_and_deliveries_without_secrets(client, admin_user, make_webhook, post_event):
    hook = make_webhook(name="PR reviews")
    post_event(hook.id, {"question": "q"}, secret=hook.secret)
    post_event(hook.id, {"question": "q"})
    client.force_login(admin_user)
    page = client.get("/admin/integrations/webhook/?q=PR").content.decode()
    assert "PR reviews" in page and "Reviewer" in page
    change = client.get(f"/admin/integrations/webhook/{hook.id}/change/")
    assert change.status_code == 200 and hook.secret[-4:] in change.content.decode()
    deliveries = client.get("/admin/integrations/webhookdelivery/?status__exact=rejected").content.decode()
    assert "10140" in deliveries
    assert client.get("/admin/integrations/webhook/add/").status_code == 403


def test_operators_can_disable_a_webhook_from_the_admin(client, admin_user, make_webhook):
    hook = make_webhook()
    client.force_login(admin_user)
    client.post("/admin/integrations/webhook/", {"action": "disable", "_selected_action": [hook.id]})
    assert Webhook.objects.get(id=hook.id).enabled is False
