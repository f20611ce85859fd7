"""A deprecated operation keeps working and says so in its headers (API.md).

Shown on the test-only /v1/test/deprecated-ping, marked
`@deprecated(since="2026-11-01", sunset="2027-06-30")`.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import pytest

from tests.foundation.helpers import assert_ok

DEPRECATION_HEADERS = ("X-Deprecated", "X-Deprecated-Sunset", "Deprecation", "Sunset")


@pytest.mark.parametrize("credential", ["jwt_auth", "key_auth"])
def test_a_deprecated_operation_still_answers_and_says_so(api, alice, credential):
    status, body, response = api.get("/v1/test/deprecated-ping", auth=getattr(alice, credential))
    assert assert_ok(status, body, response) == {"pong": True}
    assert response["X-Deprecated"] == "true"
    assert response["X-Deprecated-Sunset"] == "2027-06-30"  # RFC 3339 full-date


def test_the_sunset_header_is_an_http_date(api, alice):
    _, _, response = api.get("/v1/test/deprecated-ping", auth=alice.jwt_auth)
    # RFC 8594: Sunset is an HTTP-date (IMF-fixdate).
    assert response["Sunset"] == "Wed, 30 Jun 2027 00:00:00 GMT"
    assert parsedate_to_datetime(response["Sunset"]) == datetime(2027, 6, 30, tzinfo=UTC)


def test_the_deprecation_header_is_a_structured_date(api, alice):
    _, _, response = api.get("/v1/test/deprecated-ping", auth=alice.jwt_auth)
    # RFC 9745: Deprecation is a structured-field Date, "@" + unix seconds.
    since = calendar.timegm(datetime(2026, 11, 1, tzinfo=UTC).timetuple())
    assert response["Deprecation"] == f"@{since}"


@pytest.mark.parametrize("path", ["/v1/api-keys", "/v1/health"])
def test_a_normal_operation_has_none_of_the_deprecation_headers(api, alice, path):
    status, body, response = api.get(path, auth=alice.jwt_auth)
    assert_ok(status, body, response)
    for header in DEPRECATION_HEADERS:
        assert header not in response, header
