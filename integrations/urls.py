from django.urls import path
from rest_framework.routers import SimpleRouter

from integrations import api

router = SimpleRouter(trailing_slash=False)
router.register("webhooks", api.WebhookViewSet, basename="webhook")
router.register(r"webhooks/(?P<webhook_id>[^/.]+)/deliveries", api.WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns = [
    path("webhooks/<str:id>/events", api.WebhookEventsView.as_view(), name="webhook-events"),
    *router.urls,
]
