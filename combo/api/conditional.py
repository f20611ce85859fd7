"""ETag, If-Match and If-None-Match for the API's objects (agents, webhooks, files).

GET of an object answers with a strong `ETag` of its representation (a hash
of its JSON `data`, which never carries a secret), and so does a successful
update. A PATCH carrying `If-Match: <that ETag>` is applied only if the
object's representation is still that one, checked under the row's lock;
otherwise 412 with code 10061, and nothing changes. `If-Match: *` matches any
object that exists (for objects that can be updated: files cannot, so a
file has only the ETag and If-None-Match). A GET carrying `If-None-Match` with the current ETag (weak
comparison, RFC 9110 13.1.2; `*` matches too) answers 304 Not Modified with
the ETag and no body. A request without these headers is served as before.

`ConditionalObjectMixin` gives a viewset all of this, and `documented` its
side of the OpenAPI document; a view whose update does not go through DRF's
`update()` uses the mixin's `check_if_match`, `if_match_precondition` and
`with_etag` itself (integrations.api).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

from django.core.serializers.json import DjangoJSONEncoder
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.response import Response

from combo.errors import ComboError, ErrorCode

_TAG = re.compile(r'(?:W/)?"[^"]*"')

IF_MATCH_PARAMETER = OpenApiParameter(
    "If-Match", OpenApiTypes.STR, location=OpenApiParameter.HEADER, required=False,
    description=(
        "The ETag of the object as you read it (from GET or a previous update), or `*`. The update is applied "
        "only if the object is still that version; otherwise 412 (10061) and nothing changes. Without "
        "this header the update is applied whatever changed meanwhile."
    ),
)
IF_NONE_MATCH_PARAMETER = OpenApiParameter(
    "If-None-Match", OpenApiTypes.STR, location=OpenApiParameter.HEADER, required=False,
    description=(
        "ETags of versions you already have (a comma-separated list, or `*`). If the object is still one "
        "of them, the answer is 304 Not Modified with its ETag and no body (it counts against the rate "
        "limit like any read)."
    ),
)
ETAG_HEADER = OpenApiParameter(
    "ETag", OpenApiTypes.STR, location=OpenApiParameter.HEADER, response=[200, 304],
    description=(
        "A strong entity tag of this object's representation; send it back in If-Match to update it "
        "safely, or in If-None-Match to read it only if it changed."
    ),
)
NOT_MODIFIED_DESCRIPTION = (
    "Not Modified: the object is still the version named in If-None-Match. No body; the ETag header "
    "names the version. Only with If-None-Match."
)


def etag(data) -> str:
    """The strong entity tag of a JSON representation."""
    raw = json.dumps(data, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(raw.encode()).hexdigest()[:32] + '"'


def if_match_holds(header: str, current: str) -> bool:
    """Whether an If-Match value admits the current entity tag (strong comparison: a weak tag never matches)."""
    if header.strip() == "*":
        return True
    return current in _TAG.findall(header)


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def if_none_match_holds(header: str, current: str) -> bool:
    """Whether an If-None-Match value names the current entity tag (weak comparison: W/ is ignored)."""
    if header.strip() == "*":
        return True
    return _opaque(current) in {_opaque(tag) for tag in _TAG.findall(header)}


def precondition_failed() -> ComboError:
    return ComboError(
        ErrorCode.PRECONDITION_FAILED,
        "The object changed since the version named in If-Match; nothing was changed. "
        "Read it again and retry with its current ETag.",
    )


def if_match_check(request, representation: Callable[[object], dict]) -> Callable[[object], None] | None:
    """A check of the request's If-Match for a service to run under the row's lock (None without If-Match)."""
    header = request.headers.get("If-Match")
    if header is None:
        return None

    def check(instance) -> None:
        if not if_match_holds(header, etag(representation(instance))):
            raise precondition_failed()

    return check


def not_modified(tag: str) -> Response:
    """304 Not Modified: no body (the envelope renderer and middleware leave it empty), the ETag kept."""
    return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})


def conditional_read(request, response: Response) -> Response:
    """A successful read with its ETag, or 304 when If-None-Match names that version."""
    tag = etag(response.data)
    header = request.headers.get("If-None-Match")
    if header is not None and if_none_match_holds(header, tag):
        return not_modified(tag)
    response["ETag"] = tag
    return response


def with_etag(response: Response) -> Response:
    response["ETag"] = etag(response.data)
    return response


def documented(cls):
    """The OpenAPI document's side of ConditionalObjectMixin: the headers of the read and of the update
    (of those of the two the viewset has: a read-only object has no If-Match)."""
    operations = {
        "retrieve": extend_schema(parameters=[IF_NONE_MATCH_PARAMETER, ETAG_HEADER]),
        "partial_update": extend_schema(parameters=[IF_MATCH_PARAMETER, ETAG_HEADER]),
    }
    return extend_schema_view(**{name: schema for name, schema in operations.items() if hasattr(cls, name)})(cls)


class ConditionalObjectMixin:
    """ETag and If-None-Match on reading one object; ETag and If-Match on updating it.

    For a viewset of owned objects (combo.api.viewsets.OwnedModelViewSet). The
    object's representation is `representation(instance)` (its serializer's
    data, by default); the service that updates it runs
    `if_match_precondition()` under the row's lock.
    """

    # The OpenAPI document: 304 on the read (combo.api.openapi), 412 on the update.
    not_modified_actions = ("retrieve",)
    extra_error_statuses = {"partial_update": ["412"]}

    def representation(self, instance) -> dict:
        return self.get_serializer(instance).data

    def get_object(self):
        """The request's object, read once: the early If-Match check and the update share it."""
        if getattr(self, "_conditional_object", None) is None:
            self._conditional_object = super().get_object()
        return self._conditional_object

    def check_if_match(self, instance=None) -> None:
        """Refuse a stale If-Match at once, before the body is judged (checked again under the lock)."""
        header = self.request.headers.get("If-Match")
        if header is None:
            return
        if instance is None:
            instance = self.get_object()
        if not if_match_holds(header, etag(self.representation(instance))):
            raise precondition_failed()

    def if_match_precondition(self) -> Callable[[object], None] | None:
        return if_match_check(self.request, self.representation)

    def retrieve(self, request, *args, **kwargs):
        return conditional_read(request, super().retrieve(request, *args, **kwargs))
