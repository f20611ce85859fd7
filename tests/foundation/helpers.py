"""Assertions every foundation test shares: what an envelope must look like."""

from __future__ import annotations

from combo.errors import ErrorCode


def assert_ok(status: int, body: dict, response, http: int = 200) -> dict:
    """A success envelope with the given status; returns its `data`."""
    assert status == http, body
    assert set(body) == {"code", "data", "message"}, body
    assert body["code"] == 0 and body["message"] == "ok", body
    assert response["X-Request-Id"]
    return body["data"]


def assert_error(status: int, body: dict, response, error: ErrorCode) -> dict:
    """An error envelope for `error`: right HTTP status, code, request id; returns its `data`."""
    assert status == error.status, (status, body)
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    assert body is not None, response.content[:200]
    assert set(body) == {"code", "data", "message"}, body
    assert body["code"] == error.code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["data"]["request_id"] == response["X-Request-Id"], (body, response["X-Request-Id"])
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer"), response.get("WWW-Authenticate")
    return body["data"]
