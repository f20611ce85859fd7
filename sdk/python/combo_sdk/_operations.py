"""Every API operation, once, as data: what to send and how to read the answer.

A function here returns an `APIRequest`, a `PageRequest`, or a generator
(an "operation") that yields requests and `Sleep`s and gets each answer's
data back; the sync and async clients run all three (see `_base.py`).
"""

from __future__ import annotations

import mimetypes
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, MutableMapping, Optional, Union

from ._base import NOT_GIVEN, APIRequest, Operation, PageRequest, Sleep, conditional_headers, drop_none, seg
from .errors import FileProcessingError
from .types import (
    Agent,
    ApiKey,
    Completion,
    DoneEvent,
    File,
    LLMConfig,
    Message,
    Session,
    Token,
    Webhook,
    WebhookDelivery,
)

# session id -> agent id, per client: lets completions.create() and
# sessions.delete() work from a session id alone.
SessionAgents = MutableMapping[str, str]

FileInput = Union[str, "os.PathLike[str]", bytes, bytearray, Any]


def _none(_: Any) -> None:
    return None


def _llm_body(llm: Any) -> Any:
    if isinstance(llm, LLMConfig):
        return drop_none(
            {"provider": llm.provider, "model": llm.model, "temperature": llm.temperature, "max_tokens": llm.max_tokens}
        )
    return llm


def _fields(fields: Dict[str, Any]) -> Dict[str, Any]:
    body = drop_none(fields)
    if "llm" in body:
        body["llm"] = _llm_body(body["llm"])
    for key, value in list(body.items()):
        if isinstance(value, datetime):
            body[key] = value.isoformat()
    return body


# --- agents -------------------------------------------------------------------


def agent_list(*, limit: Optional[int]) -> PageRequest[Agent]:
    return PageRequest("combo/agents", {"limit": limit}, Agent.from_dict)


def agent_create(fields: Dict[str, Any]) -> APIRequest[Agent]:
    return APIRequest("POST", "combo/agents", json=_fields(fields), cast=Agent.from_dict)


def agent_retrieve(agent_id: str, *, if_none_match: Optional[str] = None) -> APIRequest[Optional[Agent]]:
    return APIRequest(
        "GET", f"combo/agents/{seg(agent_id)}", cast=Agent.from_dict,
        headers=conditional_headers(if_none_match=if_none_match),
    )


def agent_update(agent_id: str, fields: Dict[str, Any], *, if_match: Any = NOT_GIVEN) -> APIRequest[Agent]:
    return APIRequest(
        "PATCH", f"combo/agents/{seg(agent_id)}", json=_fields(fields), cast=Agent.from_dict,
        headers=conditional_headers(if_match=if_match),
    )


def agent_delete(agent_id: str, *, if_match: Any = NOT_GIVEN) -> APIRequest[None]:
    return APIRequest("DELETE", f"combo/agents/{seg(agent_id)}", cast=_none, headers=conditional_headers(if_match=if_match))


# --- sessions -------------------------------------------------------------------


def _remember(cache: SessionAgents, session: Session) -> Session:
    if session.id and session.agent_id:
        cache[str(session.id)] = str(session.agent_id)
    return session


def session_create(cache: SessionAgents, *, agent_id: str, fields: Dict[str, Any]) -> APIRequest[Session]:
    return APIRequest(
        "POST",
        f"combo/agents/{seg(agent_id)}/sessions",
        json=_fields(fields),
        cast=lambda data: _remember(cache, Session.from_dict(data)),
    )


def session_list(*, agent_id: str, limit: Optional[int]) -> PageRequest[Session]:
    return PageRequest(f"combo/agents/{seg(agent_id)}/sessions", {"limit": limit}, Session.from_dict)


def session_retrieve(
    cache: SessionAgents,
    session_id: str,
    *,
    agent_id: Optional[str],
    limit: Optional[int],
    cursor: Optional[str],
) -> APIRequest[Session]:
    if agent_id is None:
        path = f"combo/sessions/{seg(session_id)}"
    else:
        path = f"combo/agents/{seg(agent_id)}/sessions/{seg(session_id)}"
    return APIRequest(
        "GET",
        path,
        params={"limit": limit, "cursor": cursor},
        cast=lambda data: _remember(cache, Session.from_dict(data)),
    )


def session_list_messages(session_id: str, *, limit: Optional[int]) -> PageRequest[Message]:
    return PageRequest(f"combo/sessions/{seg(session_id)}", {"limit": limit}, Message.from_dict, items_key="messages")


def _agent_of(cache: SessionAgents, session_id: str) -> Operation[str]:
    """The session's agent id: from the cache, else GET /v1/combo/sessions/{id} (then cached)."""
    key = str(session_id)
    if key not in cache:
        data = yield APIRequest("GET", f"combo/sessions/{seg(key)}", params={"limit": 1})
        _remember(cache, Session.from_dict(data))
    return cache[key]


def session_delete(cache: SessionAgents, session_id: str, *, agent_id: Optional[str]) -> Operation[None]:
    if agent_id is None:
        agent_id = yield from _agent_of(cache, session_id)
    yield APIRequest("DELETE", f"combo/agents/{seg(agent_id)}/sessions/{seg(session_id)}")
    cache.pop(str(session_id), None)


# --- completions ------------------------------------------------------------------


def completion_create(
    cache: SessionAgents,
    *,
    question: str,
    session_id: Optional[str],
    agent_id: Optional[str],
    stream: bool,
) -> Operation[Any]:
    if agent_id is None:
        if session_id is None:
            raise ValueError("completions.create() needs a session_id, an agent_id, or both")
        agent_id = yield from _agent_of(cache, session_id)
    agent_key = str(agent_id)
    body: Dict[str, Any] = {"question": question, "stream": bool(stream)}
    if session_id is not None:
        body["session_id"] = str(session_id)

    def on_done(event: DoneEvent) -> None:
        if event.session_id:
            cache[str(event.session_id)] = agent_key

    def cast(data: Any) -> Completion:
        completion = Completion.from_dict(data)
        if completion.session_id:
            cache[str(completion.session_id)] = agent_key
        return completion

    path = f"combo/agents/{seg(agent_id)}/completions"
    result = yield APIRequest("POST", path, json=body, cast=cast, stream=bool(stream), on_done=on_done)
    return result


# --- files ----------------------------------------------------------------------


def file_upload(
    file: FileInput,
    *,
    agent_id: Optional[str],
    filename: Optional[str],
    content_type: Optional[str],
) -> APIRequest[File]:
    # The content is read once into memory so that a retry (429, refused
    # connection) sends the same bytes again; the server caps uploads anyway.
    if isinstance(file, (str, os.PathLike)):
        path = Path(file)
        content = path.read_bytes()
        name = filename or path.name
    elif isinstance(file, (bytes, bytearray, memoryview)):
        content = bytes(file)
        if not filename:
            raise ValueError("files.upload() needs filename= when given bytes")
        name = filename
    elif hasattr(file, "read"):
        content = file.read()
        if isinstance(content, str):
            content = content.encode("utf-8")
        name = filename or os.path.basename(str(getattr(file, "name", "") or ""))
        if not name:
            raise ValueError("files.upload() needs filename= for a file object without a name")
    else:
        raise TypeError("files.upload() takes a path, bytes or a binary file object")
    mime = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    data = {"agent_id": str(agent_id)} if agent_id is not None else None
    return APIRequest("POST", "combo/files", files={"file": (name, content, mime)}, data=data, cast=File.from_dict)


def file_list(*, limit: Optional[int], filters: Dict[str, Any]) -> PageRequest[File]:
    return PageRequest("combo/files", {"limit": limit, **filters}, File.from_dict)


def file_retrieve(file_id: str, *, if_none_match: Optional[str] = None) -> APIRequest[Optional[File]]:
    return APIRequest(
        "GET", f"combo/files/{seg(file_id)}", cast=File.from_dict,
        headers=conditional_headers(if_none_match=if_none_match),
    )


def file_delete(file_id: str, *, if_match: Any = NOT_GIVEN) -> APIRequest[None]:
    return APIRequest("DELETE", f"combo/files/{seg(file_id)}", cast=_none, headers=conditional_headers(if_match=if_match))


def file_wait_until_ready(file_id: str, *, timeout: float, poll_interval: float) -> Operation[File]:
    deadline = time.monotonic() + timeout
    interval = poll_interval
    file: File = yield file_retrieve(file_id)
    while True:
        if file.status == "ready":
            return file
        if file.status == "failed":
            reason = file.failure_reason or "no reason given"
            raise FileProcessingError(f"File {file.id} failed: {reason}", file=file)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"File {file_id} is still {file.status!r} after {timeout:g} s")
        yield Sleep(min(interval, remaining))
        interval = min(interval * 1.5, 5.0)
        # A conditional read: None (the server's 304, no body) while the file is still as last read.
        changed = yield file_retrieve(file_id, if_none_match=file.etag)
        if changed is not None:
            file = changed


# --- webhooks -------------------------------------------------------------------

_WEBHOOKS = "integrations/webhooks"


def webhook_list(*, limit: Optional[int]) -> PageRequest[Webhook]:
    return PageRequest(_WEBHOOKS, {"limit": limit}, Webhook.from_dict)


def webhook_create(fields: Dict[str, Any]) -> APIRequest[Webhook]:
    return APIRequest("POST", _WEBHOOKS, json=_fields(fields), cast=Webhook.from_dict)


def webhook_retrieve(webhook_id: str, *, if_none_match: Optional[str] = None) -> APIRequest[Optional[Webhook]]:
    return APIRequest(
        "GET", f"{_WEBHOOKS}/{seg(webhook_id)}", cast=Webhook.from_dict,
        headers=conditional_headers(if_none_match=if_none_match),
    )


def webhook_update(webhook_id: str, fields: Dict[str, Any], *, if_match: Any = NOT_GIVEN) -> APIRequest[Webhook]:
    return APIRequest(
        "PATCH", f"{_WEBHOOKS}/{seg(webhook_id)}", json=_fields(fields), cast=Webhook.from_dict,
        headers=conditional_headers(if_match=if_match),
    )


def webhook_delete(webhook_id: str, *, if_match: Any = NOT_GIVEN) -> APIRequest[None]:
    return APIRequest("DELETE", f"{_WEBHOOKS}/{seg(webhook_id)}", cast=_none, headers=conditional_headers(if_match=if_match))


def webhook_rotate_secret(webhook_id: str) -> APIRequest[Webhook]:
    return APIRequest("POST", f"{_WEBHOOKS}/{seg(webhook_id)}/rotate-secret", cast=Webhook.from_dict)


def webhook_deliveries(webhook_id: str, *, limit: Optional[int]) -> PageRequest[WebhookDelivery]:
    return PageRequest(f"{_WEBHOOKS}/{seg(webhook_id)}/deliveries", {"limit": limit}, WebhookDelivery.from_dict)


def webhook_redeliver(webhook_id: str, delivery_id: str) -> APIRequest[WebhookDelivery]:
    path = f"{_WEBHOOKS}/{seg(webhook_id)}/deliveries/{seg(delivery_id)}/redeliver"
    return APIRequest("POST", path, cast=WebhookDelivery.from_dict)


# --- API keys and tokens ----------------------------------------------------------


def api_key_list(*, limit: Optional[int]) -> PageRequest[ApiKey]:
    return PageRequest("api-keys", {"limit": limit}, ApiKey.from_dict)


def api_key_create(*, name: str, expires_at: Optional[Union[str, datetime]]) -> APIRequest[ApiKey]:
    return APIRequest("POST", "api-keys", json=_fields({"name": name, "expires_at": expires_at}), cast=ApiKey.from_dict)


def api_key_retrieve(key_id: str) -> APIRequest[ApiKey]:
    return APIRequest("GET", f"api-keys/{seg(key_id)}", cast=ApiKey.from_dict)


def api_key_delete(key_id: str) -> APIRequest[ApiKey]:
    return APIRequest("DELETE", f"api-keys/{seg(key_id)}", cast=ApiKey.from_dict)


def auth_token(*, username: str, password: str) -> APIRequest[Token]:
    return APIRequest(
        "POST", "auth/token", json={"username": username, "password": password}, cast=Token.from_dict,
        authenticated=False,
    )


def auth_refresh(*, refresh: str) -> APIRequest[Token]:
    return APIRequest(
        "POST", "auth/token/refresh", json={"refresh": refresh}, cast=Token.from_dict, authenticated=False
    )
