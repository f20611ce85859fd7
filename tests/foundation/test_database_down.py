"""The database away a moment (a restart, a failover, a pool with no connection to give).

Every query then fails with an OperationalError. The caller gets the
envelope's 503 service_unavailable with Retry-After, which clients (the SDK
included) retry, rather than 500 internal_error, which says retrying is no use.
"""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

import pytest
from django.db.backends.utils import CursorWrapper
from django.db.utils import OperationalError

from agents.models import Agent
from combo.errors import ErrorCode
from tests.foundation.helpers import assert_error


@contextmanager
def database_away():
    def away(self, *args, **kwargs):
        raise OperationalError("connection failed: server closed the connection unexpectedly")

    with mock.patch.object(CursorWrapper, "execute", away), mock.patch.object(CursorWrapper, "executemany", away):
        yield


def assert_unavailable(status, body, response):
    assert_error(status, body, response, ErrorCode.SERVICE_UNAVAILABLE)
    assert "database" in body["message"]
    assert int(response["Retry-After"]) >= 1
    assert "server closed the connection" not in response.content.decode()


def test_an_api_call_answers_503_while_the_database_is_away(api, alice):
    with database_away():
        status, body, response = api.get("/v1/combo/agents", auth=alice.jwt_auth)
    assert_unavailable(status, body, response)


@pytest.mark.parametrize("stream", [False, True])
def test_a_completion_answers_503_before_streaming_while_the_database_is_away(api, alice, stream):
    agent = Agent.objects.create(owner=alice.user, name="ops")
    with database_away():
        status, body, response = api.post(
            f"/v1/combo/agents/{agent.id}/completions", {"question": "hi", "stream": stream}, auth=alice.jwt_auth
        )
    assert_unavailable(status, body, response)


@pytest.mark.parametrize("path", ["/v1/combo/agents", "completions"])
def test_an_outage_is_one_warning_line_per_request_not_a_traceback(api, alice, caplog, path):
    # An outage is expected, not a bug: each refused request says so on one line (what and
    # where), rather than an ERROR with a traceback, which at hundreds of requests a second
    # buries everything else in the log.
    agent = Agent.objects.create(owner=alice.user, name="ops")
    if path == "completions":
        path = f"/v1/combo/agents/{agent.id}/completions"
    caplog.set_level("INFO")
    with database_away():
        if path.endswith("completions"):
            status, body, response = api.post(path, {"question": "hi"}, auth=alice.jwt_auth)
        else:
            status, body, response = api.get(path, auth=alice.jwt_auth)
    assert_unavailable(status, body, response)
    mine = [record for record in caplog.records if record.name.startswith("combo")]
    assert [record.levelname for record in mine] == ["WARNING"], [(r.name, r.getMessage()) for r in mine]
    assert mine[0].exc_info is None and path in mine[0].getMessage()
    assert "database unavailable" in mine[0].getMessage() and "OperationalError" in mine[0].getMessage()
    assert body["data"]["request_id"] == response["X-Request-Id"] and response["X-Request-Id"] in mine[0].getMessage()
