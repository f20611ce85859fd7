"""Owner scoping in one place: every user-owned resource's viewset starts here.

Another user's id answers exactly like an id that does not exist (404), and a
malformed id is a 404 too, so ids leak nothing.
"""

from __future__ import annotations

import uuid

from django.http import Http404
from rest_framework import mixins, viewsets


class OwnedQuerysetMixin:
    owner_field = "owner"
    lookup_field = "id"

    def get_queryset(self):
        queryset = super().get_queryset()
        user = self.request.user
        if user is None or not user.is_authenticated:
            return queryset.none()
        return queryset.filter(**{self.owner_field: user})

    def get_object(self):
        raw = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
        try:
            uuid.UUID(str(raw))
        except ValueError:
            raise Http404 from None
        return super().get_object()


class OwnedModelViewSet(OwnedQuerysetMixin, viewsets.ModelViewSet):
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]


class OwnedReadCreateDeleteViewSet(
    OwnedQuerysetMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    pass
