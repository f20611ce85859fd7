"""Console pages of integrations (mounted under /console/ in the `console` namespace)."""

from django.urls import path

from integrations import views

urlpatterns = [
    path("integrations/", views.integrations_home, name="integrations"),
    path("integrations/webhooks/", views.webhook_list, name="webhooks"),
    path("integrations/webhooks/new/", views.webhook_create, name="webhook-create"),
    path("integrations/webhooks/<uuid:webhook_id>/", views.webhook_overview, name="webhook"),
    path("integrations/webhooks/<uuid:webhook_id>/settings/", views.webhook_edit, name="webhook-edit"),
    path("integrations/webhooks/<uuid:webhook_id>/secret/", views.webhook_secret, name="webhook-secret"),
    path("integrations/webhooks/<uuid:webhook_id>/rotate/", views.webhook_rotate, name="webhook-rotate"),
    path("integrations/webhooks/<uuid:webhook_id>/delete/", views.webhook_delete, name="webhook-delete"),
    path("integrations/webhooks/<uuid:webhook_id>/deliveries/", views.webhook_deliveries, name="webhook-deliveries"),
    path(
        "integrations/webhooks/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/redeliver/",
        views.delivery_redeliver,
        name="webhook-redeliver",
    ),
]
