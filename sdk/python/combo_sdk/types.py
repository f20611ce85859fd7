"""Typed response objects: dataclasses with attribute access that keep unknown fields.

Every object is built with `from_dict()` from the server's JSON. The fields
this SDK version knows are dataclass fields (`session.id`,
`response.answer`); everything the server sent is also kept, untouched, in
`_raw`, and fields this version does not know are still readable as
attributes (`agent.some_new_field`), by key (`agent["some_new_field"]`) or
through `to_dict()`. A newer server therefore never breaks an older SDK.

Timestamps are kept as the ISO 8601 strings the server sends.

`etag` is not part of an object's data: it is the `ETag` header of the answer
the object came in (agents, webhooks and files from `retrieve()`, agents and
webhooks from `update()`), None when that answer had none (lists, `create()`).
It is left out of `to_dict()`, of `==` and of the repr.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Type, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from .errors import ComboAPIError

__all__ = [
    "ComboObject",
    "LLMConfig",
    "Agent",
    "Reference",
    "Usage",
    "Message",
    "Session",
    "Completion",
    "File",
    "Webhook",
    "WebhookDelivery",
    "ApiKey",
    "Token",
    "Page",
    "StreamEvent",
    "MessageEvent",
    "ErrorEvent",
    "DoneEvent",
]

T = TypeVar("T", bound="ComboObject")


def _convert(spec: Any, value: Any) -> Any:
    if spec is None or value is None:
        return value
    if isinstance(spec, list):
        if isinstance(value, list):
            return [_convert(spec[0], item) for item in value]
        return value
    if isinstance(value, dict):
        return spec.from_dict(value)
    return value


@dataclass
class ComboObject:
    """Base of every response object; see the module docstring."""

    _raw: Dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _etag: Optional[str] = field(default=None, init=False, repr=False, compare=False)

    # field name -> ComboObject subclass, or [subclass] for a list of them. A
    # plain class attribute (no annotation), so not a dataclass field.
    _nested = {}  # type: Dict[str, Any]

    @classmethod
    def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict() needs a dict, not {type(data).__name__}")
        nested = cls._nested
        kwargs = {}
        for f in fields(cls):
            if f.init and f.name in data:
                kwargs[f.name] = _convert(nested.get(f.name), data[f.name])
        obj = cls(**kwargs)
        obj._raw = dict(data)
        return obj

    @property
    def etag(self) -> Optional[str]:
        """The version of this object as the server answered it (its `ETag` header), or None.

        Send it back as `update(..., if_match=obj.etag)` to change the object
        only if nobody changed it since (else `PreconditionFailedError`), or as
        `retrieve(..., if_none_match=obj.etag)` to fetch it only if it changed
        (else None).
        """
        return self._etag

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: fields the server sent that
        # this SDK version does not declare.
        if name.startswith("__"):
            raise AttributeError(name)
        raw = self.__dict__.get("_raw")
        if raw is not None and name in raw:
            return raw[name]
        raise AttributeError(f"{type(self).__name__!s} object has no attribute {name!r}")

    def __getitem__(self, key: str) -> Any:
        if key in self._raw:
            return self._raw[key]
        if key in {f.name for f in fields(self) if f.init}:
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def get(self, key: str, default: Any = None) -> Any:
        """The field `key` as the server sent it, or `default`."""
        return self._raw.get(key, default)

    def to_dict(self) -> Dict[str, Any]:
        """Everything the server sent for this object (a deep copy)."""
        return copy.deepcopy(self._raw)


# Dataclass field order matters only for positional construction, which the
# SDK never uses; every field defaults to None so a missing field is no error.


@dataclass
class LLMConfig(ComboObject):
    provider: Optional[str] = None
    model: Optional[str] = None
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None


@dataclass
class Agent(ComboObject):
    id: Optional[str] = None
    name: Optional[str] = None
    description: Optional[str] = None
    instructions: Optional[str] = None
    opening_message: Optional[str] = None
    llm: Optional[LLMConfig] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None

    _nested = {"llm": LLMConfig}


@dataclass
class Reference(ComboObject):
    """A passage an answer rests on; `score` is higher-is-better within one answer."""

    id: Optional[str] = None
    file_id: Optional[str] = None
    file_name: Optional[str] = None
    content: Optional[str] = None
    score: Optional[float] = None
    position: Optional[Dict[str, Any]] = None


@dataclass
class Usage(ComboObject):
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None


@dataclass
class Message(ComboObject):
    id: Optional[str] = None
    role: Optional[str] = None
    content: Optional[str] = None
    reference: Optional[List[Reference]] = None
    status: Optional[str] = None
    error: Optional[Dict[str, Any]] = None
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    finish_reason: Optional[str] = None
    latency_ms: Optional[int] = None
    created_at: Optional[str] = None
    completed_at: Optional[str] = None

    _nested = {"reference": [Reference]}


@dataclass
class Session(ComboObject):
    """A session. `messages` is filled by `sessions.retrieve()` (one page, oldest first)."""

    id: Optional[str] = None
    agent_id: Optional[str] = None
    title: Optional[str] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    messages: Optional[List[Message]] = None
    messages_next_cursor: Optional[str] = None

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Session:
        if isinstance(data, cls):
            return data
        flat = dict(data)
        page = flat.pop("messages", None)
        session = super().from_dict(flat)
        session._raw = dict(data)
        if isinstance(page, dict):
            session.messages = [Message.from_dict(m) for m in page.get("items") or []]
            session.messages_next_cursor = page.get("next_cursor")
        elif isinstance(page, list):
            session.messages = [Message.from_dict(m) for m in page]
        return session


@dataclass
class Completion(ComboObject):
    """A whole answer: from `completions.create(stream=False)` or a stream's `final()`."""

    answer: Optional[str] = None
    reference: Optional[List[Reference]] = None
    session_id: Optional[str] = None
    message_id: Optional[str] = None
    usage: Optional[Usage] = None
    finish_reason: Optional[str] = None

    _nested = {"reference": [Reference], "usage": Usage}


@dataclass
class File(ComboObject):
    """An uploaded file. `status` is queued, processing, ready or failed."""

    id: Optional[str] = None
    name: Optional[str] = None
    status: Optional[str] = None
    size: Optional[int] = None
    content_type: Optional[str] = None
    agent_id: Optional[str] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None

    @property
    def is_ready(self) -> bool:
        return self.status == "ready"

    @property
    def is_failed(self) -> bool:
        return self.status == "failed"

    @property
    def failure_reason(self) -> Optional[str]:
        """Why the file failed, from whichever field the server uses for it."""
        for key in ("reason", "failure_reason", "status_reason", "error_message", "error"):
            value = self._raw.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("reason")
            if value:
                return str(value)
        return None


@dataclass
class Webhook(ComboObject):
    """A webhook. `secret` is present when the server shows it (create, rotate)."""

    id: Optional[str] = None
    name: Optional[str] = None
    agent_id: Optional[str] = None
    enabled: Optional[bool] = None
    question_template: Optional[str] = None
    callback_url: Optional[str] = None
    secret: Optional[str] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None


@dataclass
class WebhookDelivery(ComboObject):
    id: Optional[str] = None
    status: Optional[str] = None
    created_at: Optional[str] = None


@dataclass
class ApiKey(ComboObject):
    """An API key. `key` (the full secret) is only present right after creation."""

    id: Optional[str] = None
    name: Optional[str] = None
    prefix: Optional[str] = None
    status: Optional[str] = None
    key: Optional[str] = None
    created_at: Optional[str] = None
    last_used_at: Optional[str] = None
    expires_at: Optional[str] = None
    revoked_at: Optional[str] = None


@dataclass
class Token(ComboObject):
    """A JWT pair from `auth.token()`; `access` goes in `ComboAgent(api_key=...)`."""

    access: Optional[str] = None
    refresh: Optional[str] = None


@dataclass
class Page(ComboObject):
    """One page of a list: `items` and the opaque `next_cursor` (None on the last page)."""

    items: List[Any] = field(default_factory=list)
    next_cursor: Optional[str] = None


# --- Stream events -------------------------------------------------------------


@dataclass
class StreamEvent(ComboObject):
    """An SSE event of a completion stream; unknown event types arrive as this class."""

    type: Optional[str] = None


@dataclass
class MessageEvent(StreamEvent):
    """`event: message`: `answer` is the next piece of text (a delta)."""

    type: Optional[str] = "message"
    answer: str = ""
    reference: Optional[List[Reference]] = None

    _nested = {"reference": [Reference]}


@dataclass
class ErrorEvent(StreamEvent):
    """`event: error`: a failure after the stream started; its data is the error envelope."""

    type: Optional[str] = "error"
    code: Optional[int] = None
    message: Optional[str] = None
    data: Optional[Dict[str, Any]] = None

    @property
    def request_id(self) -> Optional[str]:
        return (self.data or {}).get("request_id")

    def to_exception(self, *, request_id: Optional[str] = None) -> ComboAPIError:
        """The exception this error would be as a JSON answer (UpstreamError for 3xxxx, ...)."""
        from .errors import error_from_envelope

        body = {"code": self.code, "message": self.message, "data": self.data or {}}
        return error_from_envelope(body, request_id=self.request_id or request_id)


@dataclass
class DoneEvent(StreamEvent):
    """`event: done`: the last event; the answer is stored under `message_id`."""

    type: Optional[str] = "done"
    session_id: Optional[str] = None
    message_id: Optional[str] = None
    usage: Optional[Usage] = None
    finish_reason: Optional[str] = None

    _nested = {"usage": Usage}
