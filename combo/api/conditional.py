"""ETag, If-Match and If-None-Match for the API's objects (agents, webhooks, files).

GET of an object answers with a strong `ETag` of its representation (a hash
of its JSON `data`, which never carries a secret), and so does a successful
update. Every operation on one object (GET, PATCH, DELETE) evaluates the
request's preconditions as RFC 9110 13.2.2 orders them:

1. `If-Match` (strong comparison, RFC 9110 13.1.1; `*` matches any object that
   exists): when it names no current version, 412 with code 10061.
2. `If-None-Match` (weak comparison, 13.1.2; `*` matches too): when it names
   the current version, a GET answers 304 Not Modified with the ETag and no
   body, and a PATCH or DELETE 412 (10061).

A write that passes is checked again under the row's lock, in the service
(its `precondition` argument), so a change landing in between still makes a
412 and nothing changes or is deleted. A missing or foreign object is a 404
whatever the headers say; a request without them is served as before.

`ConditionalObjectMixin` gives a viewset all of this, and `documented` its
side of the OpenAPI document; a view whose update does not go through DRF's
`update()` uses the mixin's `check_preconditions`, `precondition` and
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
_SAFE_METHODS = ("GET", "HEAD")


def _request_header(name: str, description: str) -> OpenApiParameter:
    """An optional request header of the OpenAPI document, a string."""
    return OpenApiParameter(name, OpenApiTypes.STR, location=OpenApiParameter.HEADER, required=False,
                            description=description)


IF_MATCH_PARAMETER = _request_header(
    "If-Match",
    "The ETag of the object as you read it (from GET or a previous update), or `*`. The update is applied "
    "only if the object is still that version; otherwise 412 (10061) and nothing changes. Without "
    "this header the update is applied whatever changed meanwhile."
)
IF_MATCH_READ_PARAMETER = _request_header(
    "If-Match",
    "ETags of versions you expect (a comma-separated list, or `*`; strong comparison, so a `W/` tag never "
    "matches). The object is returned only if it is still one of them; otherwise 412 (10061)."
)
IF_MATCH_DELETE_PARAMETER = _request_header(
    "If-Match",
    "The ETag of the object as you read it, or `*`. The object is deleted only if it is still that "
    "version; otherwise 412 (10061) and nothing is deleted. Without this header it is deleted whatever "
    "changed meanwhile."
)
IF_NONE_MATCH_PARAMETER = _request_header(
    "If-None-Match",
    "ETags of versions you already have (a comma-separated list, or `*`). If the object is still one "
    "of them, the answer is 304 Not Modified with its ETag and no body; a 304 does not count against "
    "the rate limit (a 429 still comes first when the budget is already spent)."
)
IF_NONE_MATCH_WRITE_PARAMETER = _request_header(
    "If-None-Match",
    "ETags of versions you do not want to act on (a comma-separated list, or `*`, which any existing "
    "object matches). If the object is still one of them, 412 (10061) and nothing changes."
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


def precondition_failed(header: str, method: str) -> ComboError:
    """The 412 of a precondition that does not hold, saying what to send instead."""
    nothing = "nothing was deleted" if method == "DELETE" else "nothing was changed"
    if header == "If-None-Match":
        message = (
            f"The object is still a version named in If-None-Match (`*` names any object that exists); {nothing}. "
            "To act only on the version you read, send its ETag in If-Match instead; to act whatever the "
            "version, leave If-None-Match out."
        )
    elif method in _SAFE_METHODS:
        message = (
            "The object is no longer the version named in If-Match. Read it without If-Match to get it as it "
            "is now, with its current ETag."
        )
    else:
        message = (
            f"The object changed since the version named in If-Match; {nothing}. "
            "Read it again and retry with its current ETag."
        )
    return ComboError(ErrorCode.PRECONDITION_FAILED, message)


def has_preconditions(request) -> bool:
    return "If-Match" in request.headers or "If-None-Match" in request.headers


def evaluate(request, current: str) -> bool:
    """The request's preconditions against the object's current ETag, in RFC 9110 13.2.2's order.

    Raises the 412 when one fails; True when a read is Not Modified (304).
    """
    if_match = request.headers.get("If-Match")
    if if_match is not None and not if_match_holds(if_match, current):
        raise precondition_failed("If-Match", request.method)
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and if_none_match_holds(if_none_match, current):
        if request.method in _SAFE_METHODS:
            return True
        raise precondition_failed("If-None-Match", request.method)
    return False


def precondition_check(request, representation: Callable[[object], dict]) -> Callable[[object], None] | None:
    """The request's preconditions for a service to check under the row's lock (None without any)."""
    if not has_preconditions(request):
        return None

    def check(instance) -> None:
        evaluate(request, etag(representation(instance)))

    return check


def not_modified(tag: str) -> Response:
    """304 Not Modified: no body (the envelope renderer and middleware leave it empty), the ETag kept."""
    return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})


def conditional_read(request, response: Response) -> Response:
    """A successful read with its ETag; 412 when If-Match names another version, 304 when If-None-Match names it."""
    tag = etag(response.data)
    if evaluate(request, tag):
        return not_modified(tag)
    response["ETag"] = tag
    return response


def with_etag(response: Response) -> Response:
    response["ETag"] = etag(response.data)
    return response


def documented(cls):
    """The OpenAPI document's side of ConditionalObjectMixin: the headers of the read, the update and the
    delete (of those the viewset has: files are never updated)."""
    operations = {
        "retrieve": extend_schema(parameters=[IF_MATCH_READ_PARAMETER, IF_NONE_MATCH_PARAMETER, ETAG_HEADER]),
        "partial_update": extend_schema(parameters=[IF_MATCH_PARAMETER, IF_NONE_MATCH_WRITE_PARAMETER, ETAG_HEADER]),
        "destroy": extend_schema(parameters=[IF_MATCH_DELETE_PARAMETER, IF_NONE_MATCH_WRITE_PARAMETER]),
    }
    return extend_schema_view(**{name: schema for name, schema in operations.items() if hasattr(cls, name)})(cls)


_412_DESCRIPTIONS = {
    "retrieve": "The {noun} is no longer the version named in If-Match (10061).{note} Only with If-Match.",
    "partial_update": (
        "The {noun} is no longer the version named in If-Match, or is still one named in If-None-Match "
        "(10061); nothing was changed.{note} Only with these headers."
    ),
    "destroy": (
        "The {noun} is no longer the version named in If-Match, or is still one named in If-None-Match "
        "(10061); nothing was deleted.{note} Only with these headers."
    ),
}


class ConditionalObjectMixin:
    """ETag, If-Match and If-None-Match on reading, updating and deleting one object.

    For a viewset of owned objects (combo.api.viewsets.OwnedModelViewSet). The
    object's representation is `representation(instance)` (its serializer's
    data, by default); the services that update and delete it run
    `precondition()` under the row's lock.
    """

    noun = "object"  # the OpenAPI document's 412 descriptions: "The agent is no longer ..."
    version_note = ""  # " Any change makes a new version, ...": what else does, for those descriptions
    # The OpenAPI document: 304 on the read (combo.api.openapi), 412 wherever preconditions are evaluated.
    not_modified_actions = ("retrieve",)
    extra_error_statuses = {"retrieve": ["412"], "partial_update": ["412"], "destroy": ["412"]}

    @property
    def error_descriptions(self) -> dict[str, str]:
        template = _412_DESCRIPTIONS.get(getattr(self, "action", None))
        return {"412": template.format(noun=self.noun, note=self.version_note)} if template else {}

    def representation(self, instance) -> dict:
        return self.get_serializer(instance).data

    def get_object(self):
        """The request's object, read once: the early precondition check and the write share it."""
        if getattr(self, "_conditional_object", None) is None:
            self._conditional_object = super().get_object()
        return self._conditional_object

    def check_preconditions(self, instance=None) -> None:
        """Refuse a write whose preconditions fail at once, before the body is judged (checked again under the lock)."""
        if not has_preconditions(self.request):
            return
        if instance is None:
            instance = self.get_object()
        evaluate(self.request, etag(self.representation(instance)))

    def precondition(self) -> Callable[[object], None] | None:
        return precondition_check(self.request, self.representation)

    def retrieve(self, request, *args, **kwargs):
        return conditional_read(request, super().retrieve(request, *args, **kwargs))

    def destroy(self, request, *args, **kwargs):
        # DRF's destroy() calls perform_destroy(), whose service runs precondition() under the lock.
        self.check_preconditions()
        return super().destroy(request, *args, **kwargs)
