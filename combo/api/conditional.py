"""ETag and If-Match: an API client updates an object only if it is still as the client read it.

GET of an object answers with a strong `ETag` of its representation (a hash
of its JSON `data`), and so does a successful update. A PATCH carrying
`If-Match: <that ETag>` is applied only if the object's representation is
still that one, checked under the row's lock; otherwise 412 with code 10061,
and nothing changes. `If-Match: *` matches any object that exists. A request
without If-Match is served as before.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

from django.core.serializers.json import DjangoJSONEncoder
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

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
ETAG_HEADER = OpenApiParameter(
    "ETag", OpenApiTypes.STR, location=OpenApiParameter.HEADER, response=[200],
    description="A strong entity tag of this object's representation; send it back in If-Match to update it safely.",
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
