"""LOG_FORMAT=json: every log record, and daphne's access log, as one JSON object a line (combo/logformat.py)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _record(message="served %s in %d ms", args=("alice", 12), *, level=logging.WARNING, exc_info=None, extra=None):
    logger = logging.Logger("combo.test")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    from combo.logformat import JsonFormatter

    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.log(level, message, *args, exc_info=exc_info, extra=extra)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def test_a_record_is_one_json_object_with_time_level_logger_and_the_formatted_message():
    entry = _record()
    assert set(entry) == {"time", "level", "logger", "message"}
    assert TIME.match(entry["time"]), entry["time"]
    assert entry["level"] == "WARNING" and entry["logger"] == "combo.test"
    assert entry["message"] == "served alice in 12 ms"


def test_an_exception_is_one_string_field_and_a_line_break_never_splits_the_line():
    try:
        raise ValueError("bad value\non two lines")
    except ValueError as exc:
        entry = _record("failed:\n%s", ("détails",), level=logging.ERROR, exc_info=exc)
    assert entry["level"] == "ERROR" and entry["message"] == "failed:\ndétails"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: bad value\non two lines")


def test_request_fields_given_as_extra_are_fields_of_their_own():
    entry = _record("x", (), extra={"request_id": "req_1", "path": "/v1/agents", "method": "POST", "status": 503,
                                     "unrelated": "not a field"})
    assert entry["request_id"] == "req_1" and entry["path"] == "/v1/agents"
    assert entry["method"] == "POST" and entry["status"] == 503
    assert "unrelated" not in entry
    assert "request_id" not in _record("x", (), extra={"request_id": None})


def test_the_access_log_writes_a_json_line_per_request_with_its_request_id():
    from combo.logformat import JsonAccessLog

    stream = io.StringIO()
    ids = iter(["req_from_response", None])
    log = JsonAccessLog(stream, request_id=lambda: next(ids))
    details = {"path": "/v1/health?x=1", "status": 200, "method": "GET", "client": "127.0.0.1:5000",
               "time_taken": 0.0123, "size": 211}
    log("http", "complete", details)
    log("http", "complete", {**details, "status": 414, "request_id": "req_refused"})  # a refusal names its own
    log("websocket", "connected", {"path": "/ws", "client": "127.0.0.1:5001"})
    log("http", "unknown-action", details)
    first, refused, websocket = (json.loads(line) for line in stream.getvalue().splitlines())
    assert TIME.match(first.pop("time"))
    assert first == {"level": "INFO", "logger": "daphne.access", "message": "GET /v1/health?x=1 200",
                     "client": "127.0.0.1:5000", "method": "GET", "path": "/v1/health?x=1", "status": 200,
                     "size": 211, "duration_ms": 12.3, "request_id": "req_from_response"}
    assert refused["status"] == 414 and refused["request_id"] == "req_refused"
    assert websocket["method"] == "WSCONNECT" and websocket["path"] == "/ws" and "status" not in websocket


def test_a_request_that_fails_carries_its_request_id_path_and_method(api, alice, caplog):
    with caplog.at_level(logging.ERROR, logger="combo.api"):
        status, body, _ = api.get("/v1/test/crash", auth=alice.jwt_auth, HTTP_X_REQUEST_ID="req-support-7")
    assert status == 500 and body["data"]["request_id"] == "req-support-7"
    [record] = [r for r in caplog.records if r.name == "combo.api"]
    # The text line is what it was; the record carries the request's fields besides.
    assert record.getMessage() == "unhandled error in /v1/test/crash (request req-support-7)"
    assert (record.request_id, record.path, record.method) == ("req-support-7", "/v1/test/crash", "GET")
    from combo.logformat import JsonFormatter

    entry = json.loads(JsonFormatter().format(record))
    assert entry["request_id"] == "req-support-7" and entry["path"] == "/v1/test/crash" and entry["method"] == "GET"
    assert "RuntimeError" in entry["exception"]


# The root handler's formatter as Django's settings configure it.
FORMATTER = """
import django, logging
django.setup()
print(type(logging.getLogger().handlers[0].formatter).__module__ + "." + type(logging.getLogger().handlers[0].formatter).__name__)
"""


def _configured(tmp_path, value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "DATABASE_URL", "REDIS_URL")}
    env |= {"DJANGO_SETTINGS_MODULE": "combo.settings", "COMBO_DATA_DIR": str(tmp_path)}
    if value is not None:
        env["LOG_FORMAT"] = value
    return subprocess.run([sys.executable, "-c", FORMATTER], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=120)


@pytest.mark.parametrize(("value", "formatter"), [
    (None, "logging.Formatter"), ("text", "logging.Formatter"), ("json", "combo.logformat.JsonFormatter"),
    (" JSON ", "combo.logformat.JsonFormatter"),
])
def test_log_format_picks_the_formatter(tmp_path, value, formatter):
    done = _configured(tmp_path, value)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == formatter


def test_a_bad_log_format_stops_the_process_at_start(tmp_path):
    done = _configured(tmp_path, "xml")
    assert done.returncode != 0
    assert "ImproperlyConfigured: LOG_FORMAT must be one of text, json, got 'xml'" in done.stderr
