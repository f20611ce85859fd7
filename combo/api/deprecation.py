"""Marking an operation deprecated (API.md, Versioning and deprecation).

`@deprecated(since="2026-11-01", sunset="2027-06-30")` on a view method keeps the operation working, adds `X-Deprecated: true` and
`X-Deprecated-Sunset: <date>`, the RFC 9745 `Deprecation` and RFC 8594 `Sunset`
headers, and marks the operation `deprecated` in the OpenAPI document.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time
from email.utils import format_datetime

from drf_spectacular.utils import extend_schema


def deprecation_headers(since: date, sunset: date) -> dict[str, str]:
    since_at = datetime.combine(since, time(0, 0), tzinfo=UTC)
    sunset_at = datetime.combine(sunset, time(0, 0), tzinfo=UTC)
    return {
        "X-Deprecated": "true",
        "X-Deprecated-Sunset": sunset.isoformat(),
        # RFC 9745: a structured-field date, "@<unix seconds>", when deprecation took effect.
        "Deprecation": f"@{int(since_at.timestamp())}",
        # RFC 8594: an HTTP-date.
        "Sunset": format_datetime(sunset_at, usegmt=True),
    }


def deprecated(*, since: str, sunset: str):
    headers = deprecation_headers(date.fromisoformat(since), date.fromisoformat(sunset))

    def decorate(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            response = method(*args, **kwargs)
            for key, value in headers.items():
                response[key] = value
            return response

        return extend_schema(
            deprecated=True,
            description=(method.__doc__ or "").strip() + f"\n\nDeprecated: removed after {sunset}.",
        )(wrapper)

    return decorate
