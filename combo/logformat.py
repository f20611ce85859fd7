"""Log lines as JSON objects, one a line, for `LOG_FORMAT=json`.

Every line is an object with `time` (ISO 8601, UTC, milliseconds), `level`,
`logger` and `message`; a record logged with an exception adds `exception`
(its traceback as one string), and one that carries `request_id`, `path`,
`method` or `status` (logging's `extra=`) adds them as they are. daphne's
access log (a line per request, on stdout) becomes the same kind of object
through `JsonAccessLog`.

JSON escapes every line break, so a traceback or a message with a newline in
it never splits a line; non-ASCII is escaped too, so a line is ASCII whatever
the stream's encoding.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

# Attributes a record may carry (logging's `extra=`) that become fields of their own.
EXTRA_FIELDS = ("request_id", "path", "method", "status")


def timestamp(seconds: float) -> str:
    """`2026-03-01T12:00:00.123Z`."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(entry: dict) -> str:
    return json.dumps(entry, default=str, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """A logging formatter whose every record is one JSON object (no line break inside)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        fields = record.__dict__
        for name in EXTRA_FIELDS:
            value = fields.get(name)
            if value is not None:
                entry[name] = value
        return dumps(entry)


class JsonAccessLog:
    """daphne's action logger (daphne.access.AccessLogGenerator's interface), writing JSON lines.

    An HTTP request's line has `client`, `method`, `path`, `status`, `size`
    (bytes of body sent), `duration_ms` and, when the response had one, its
    `X-Request-Id` as `request_id`. A WebSocket's steps get a line each, as in
    daphne's text log, with `method` WSCONNECTING, WSREJECT, WSCONNECT or
    WSDISCONNECT.
    """

    _WEBSOCKET_ACTIONS = {
        "connecting": "WSCONNECTING", "rejected": "WSREJECT", "connected": "WSCONNECT", "disconnected": "WSDISCONNECT",
    }

    def __init__(self, stream, request_id=None):
        self.stream = stream
        # Called with no argument for an HTTP request's line: its response's X-Request-Id or None.
        self.request_id = request_id

    def __call__(self, protocol, action, details):
        if protocol == "http" and action == "complete":
            request_id = details.get("request_id")
            if request_id is None and self.request_id is not None:
                request_id = self.request_id()
            method, status = details["method"], details["status"]
            entry = {"message": f"{method} {details['path']} {status}", "client": details["client"],
                     "method": method, "path": details["path"], "status": status, "size": details["size"]}
            taken = details.get("time_taken")
            if taken is not None:
                entry["duration_ms"] = round(taken * 1000, 1)
            if request_id:
                entry["request_id"] = request_id
        elif protocol == "websocket" and action in self._WEBSOCKET_ACTIONS:
            method = self._WEBSOCKET_ACTIONS[action]
            entry = {"message": f"{method} {details['path']}", "client": details["client"],
                     "method": method, "path": details["path"]}
        else:
            return
        head = {"time": timestamp(time.time()), "level": "INFO", "logger": "daphne.access"}
        self.stream.write(dumps({**head, **entry}) + "\n")
