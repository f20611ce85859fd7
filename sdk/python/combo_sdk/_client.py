"""`ComboAgent`: the synchronous client and its resources."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import (
    Any,
    Dict,
    Generator,
    Generic,
    Iterator,
    List,
    Literal,
    Mapping,
    Optional,
    TypeVar,
    Union,
    overload,
)

import httpx

from . import _operations as ops
from . import signatures
from ._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    APIRequest,
    ClientConfig,
    PageRequest,
    Sleep,
    TimeoutTypes,
    build_httpx_request,
    connection_error,
    is_not_modified,
    page_of,
    raise_for_error,
    result_of,
)
from ._streaming import Stream
from .types import (
    Agent,
    ApiKey,
    Completion,
    File,
    LLMConfig,
    Message,
    Page,
    Session,
    Token,
    Webhook,
    WebhookDelivery,
)

__all__ = [
    "ComboAgent",
    "SyncCursor",
    "Agents",
    "Sessions",
    "Completions",
    "Files",
    "Webhooks",
    "ApiKeys",
    "Auth",
]

log = logging.getLogger("combo_sdk")
T = TypeVar("T")


class SyncCursor(Generic[T]):
    """An iterator over every item of a list, fetching pages through `next_cursor` as needed.

    Nothing is requested until the first item is asked for. `pages()` walks the
    same list page by page instead (a fresh walk from the start).
    """

    def __init__(self, client: ComboAgent, request: PageRequest[T]) -> None:
        self._client = client
        self._request = request
        self._items: Optional[Iterator[T]] = None

    def pages(self) -> Iterator[Page]:
        cursor: Optional[str] = None
        seen = set()
        while True:
            params = dict(self._request.params, cursor=cursor)
            data = self._client._execute(APIRequest("GET", self._request.path, params=params))
            raw_items, next_cursor = page_of(data, self._request.items_key)
            cast = self._request.cast
            items = [cast(item) for item in raw_items] if cast else raw_items
            yield Page.from_dict({"items": items, "next_cursor": next_cursor})
            if not next_cursor or next_cursor in seen:
                return
            seen.add(next_cursor)
            cursor = next_cursor

    def _walk(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.items

    def __iter__(self) -> SyncCursor[T]:
        return self

    def __next__(self) -> T:
        if self._items is None:
            self._items = self._walk()
        return next(self._items)

    def to_list(self) -> List[T]:
        return list(self)


class _Resource:
    def __init__(self, client: ComboAgent) -> None:
        self._client = client


class Agents(_Resource):
    """`/v1/combo/agents`."""

    def list(self, *, limit: Optional[int] = None) -> SyncCursor[Agent]:
        """Every agent, newest first; `limit` is the page size."""
        return self._client._paginate(ops.agent_list(limit=limit))

    def create(
        self,
        *,
        name: str,
        description: Optional[str] = None,
        instructions: Optional[str] = None,
        opening_message: Optional[str] = None,
        llm: Optional[Union[LLMConfig, Mapping[str, Any]]] = None,
        **extra: Any,
    ) -> Agent:
        """Create an agent. `llm` is {provider, model, temperature, max_tokens}, all optional."""
        fields = dict(
            name=name, description=description, instructions=instructions,
            opening_message=opening_message, llm=llm, **extra,
        )
        return self._client._run(ops.agent_create(fields))

    @overload
    def retrieve(self, agent_id: str) -> Agent: ...

    @overload
    def retrieve(self, agent_id: str, *, if_none_match: Optional[str]) -> Optional[Agent]: ...

    def retrieve(self, agent_id: str, *, if_none_match: Optional[str] = None) -> Optional[Agent]:
        """The agent, with its version in `.etag`.

        `if_none_match=etag` (an `.etag` you kept) makes it a conditional read:
        None when the agent is still that version (the server's 304, no body),
        else the agent as it is now, with its new `.etag`.
        """
        return self._client._run(ops.agent_retrieve(agent_id, if_none_match=if_none_match))

    def update(self, agent_id: str, *, if_match: Any = NOT_GIVEN, **fields: Any) -> Agent:
        """Change some fields (PATCH): name, description, instructions, opening_message, llm.

        Returns the agent with its new `.etag`. `if_match=etag` (from
        `retrieve()` or a previous `update()`) applies the change only if the
        agent is still that version, else raises `PreconditionFailedError` and
        nothing changes; `if_match="*"` only requires that it exists.
        """
        return self._client._run(ops.agent_update(agent_id, fields, if_match=if_match))

    def delete(self, agent_id: str, *, if_match: Any = NOT_GIVEN) -> None:
        """Delete the agent.

        `if_match=etag` (from `retrieve()`) deletes it only if it is still
        that version, else raises `PreconditionFailedError` and nothing
        is deleted; `if_match="*"` only requires that it exists.
        """
        self._client._run(ops.agent_delete(agent_id, if_match=if_match))


class Sessions(_Resource):
    """Sessions of an agent: `/v1/combo/agents/{agent_id}/sessions` and `/v1/combo/sessions/{id}`."""

    def create(self, *, agent_id: str, title: Optional[str] = None, **extra: Any) -> Session:
        return self._client._run(
            ops.session_create(self._client._session_agents, agent_id=agent_id, fields=dict(title=title, **extra))
        )

    def list(self, *, agent_id: str, limit: Optional[int] = None) -> SyncCursor[Session]:
        return self._client._paginate(ops.session_list(agent_id=agent_id, limit=limit))

    def retrieve(
        self,
        session_id: str,
        *,
        agent_id: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> Session:
        """The session with one page of its messages (oldest first) in `.messages`;
        `.messages_next_cursor` continues. `list_messages()` walks them all."""
        return self._client._run(
            ops.session_retrieve(
                self._client._session_agents, session_id, agent_id=agent_id, limit=limit, cursor=cursor
            )
        )

    def list_messages(self, session_id: str, *, limit: Optional[int] = None) -> SyncCursor[Message]:
        """Every message of the session, oldest first."""
        return self._client._paginate(ops.session_list_messages(session_id, limit=limit))

    def delete(self, session_id: str, *, agent_id: Optional[str] = None) -> None:
        """Delete the session (its agent is looked up when not given)."""
        self._client._run(ops.session_delete(self._client._session_agents, session_id, agent_id=agent_id))


class Completions(_Resource):
    """`POST /v1/combo/agents/{agent_id}/completions`."""

    @overload
    def create(
        self,
        *,
        question: str,
        session_id: Optional[str] = ...,
        agent_id: Optional[str] = ...,
        stream: Literal[False] = ...,
    ) -> Completion: ...

    @overload
    def create(
        self,
        *,
        question: str,
        session_id: Optional[str] = ...,
        agent_id: Optional[str] = ...,
        stream: Literal[True],
    ) -> Stream: ...

    @overload
    def create(
        self,
        *,
        question: str,
        session_id: Optional[str] = ...,
        agent_id: Optional[str] = ...,
        stream: bool = ...,
    ) -> Union[Completion, Stream]: ...

    def create(
        self,
        *,
        question: str,
        session_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        stream: bool = False,
    ) -> Union[Completion, Stream]:
        """Ask a question.

        With `session_id` alone the session's agent is found for you (one
        `GET /v1/combo/sessions/{id}`, then cached); with `agent_id` alone a
        new session starts (its id is in the answer). `stream=True` returns a
        `Stream` of typed events instead of a `Completion`.
        """
        result: Union[Completion, Stream] = self._client._run(
            ops.completion_create(
                self._client._session_agents,
                question=question,
                session_id=session_id,
                agent_id=agent_id,
                stream=stream,
            )
        )
        return result


class Files(_Resource):
    """`/v1/combo/files`: upload, list, retrieve, delete, and wait for ingestion."""

    def upload(
        self,
        file: ops.FileInput,
        *,
        agent_id: Optional[str] = None,
        filename: Optional[str] = None,
        content_type: Optional[str] = None,
    ) -> File:
        """Upload from a path, bytes (with `filename=`) or a binary file object.

        Returns the file with status `queued` (or the existing file, when the
        same bytes were uploaded before). `agent_id` attaches it at once.
        """
        return self._client._run(
            ops.file_upload(file, agent_id=agent_id, filename=filename, content_type=content_type)
        )

    def list(self, *, limit: Optional[int] = None, **filters: Any) -> SyncCursor[File]:
        return self._client._paginate(ops.file_list(limit=limit, filters=filters))

    @overload
    def retrieve(self, file_id: str) -> File: ...

    @overload
    def retrieve(self, file_id: str, *, if_none_match: Optional[str]) -> Optional[File]: ...

    def retrieve(self, file_id: str, *, if_none_match: Optional[str] = None) -> Optional[File]:
        """The file and its status, with its version in `.etag`.

        `if_none_match=etag` makes it a conditional read, for polling: None
        while the file is still that version (the server's 304, no body),
        else the file as it is now, with its new `.etag`.
        """
        return self._client._run(ops.file_retrieve(file_id, if_none_match=if_none_match))

    def delete(self, file_id: str, *, if_match: Any = NOT_GIVEN) -> None:
        """Delete the file.

        `if_match=etag` (from `retrieve()`) deletes it only if it is still
        that version (its ingestion moving on is a new version), else raises `PreconditionFailedError` and nothing
        is deleted; `if_match="*"` only requires that it exists.
        """
        self._client._run(ops.file_delete(file_id, if_match=if_match))

    def wait_until_ready(self, file_id: str, *, timeout: float = 120.0, poll_interval: float = 0.5) -> File:
        """Poll until the file is `ready` (returned); FileProcessingError if it `failed`,
        TimeoutError after `timeout` seconds.

        After the first read each poll is conditional (If-None-Match with the
        last `.etag`): while the file is unchanged the server answers 304 with
        no body.
        """
        return self._client._run(ops.file_wait_until_ready(file_id, timeout=timeout, poll_interval=poll_interval))


class Webhooks(_Resource):
    """`/v1/integrations/webhooks`, plus the signature helpers (usable without a client)."""

    sign = staticmethod(signatures.sign)
    verify = staticmethod(signatures.verify)
    construct_event = staticmethod(signatures.construct_event)

    def list(self, *, limit: Optional[int] = None) -> SyncCursor[Webhook]:
        return self._client._paginate(ops.webhook_list(limit=limit))

    def create(
        self,
        *,
        name: str,
        agent_id: str,
        question_template: Optional[str] = None,
        callback_url: Optional[str] = None,
        enabled: Optional[bool] = None,
        **extra: Any,
    ) -> Webhook:
        """Create a webhook; the answer shows its `secret` (keep it)."""
        fields = dict(
            name=name, agent_id=agent_id, question_template=question_template,
            callback_url=callback_url, enabled=enabled, **extra,
        )
        return self._client._run(ops.webhook_create(fields))

    @overload
    def retrieve(self, webhook_id: str) -> Webhook: ...

    @overload
    def retrieve(self, webhook_id: str, *, if_none_match: Optional[str]) -> Optional[Webhook]: ...

    def retrieve(self, webhook_id: str, *, if_none_match: Optional[str] = None) -> Optional[Webhook]:
        """The webhook (without its secret), with its version in `.etag`.

        `if_none_match=etag`: None when the webhook is still that version
        (the server's 304, no body), else the webhook with its new `.etag`.
        """
        return self._client._run(ops.webhook_retrieve(webhook_id, if_none_match=if_none_match))

    def update(self, webhook_id: str, *, if_match: Any = NOT_GIVEN, **fields: Any) -> Webhook:
        """Change some fields (PATCH); returns the webhook with its new `.etag`.

        `if_match=etag` applies the change only if the webhook is still that
        version (a rotated secret is a new version), else raises
        `PreconditionFailedError` and nothing changes.
        """
        return self._client._run(ops.webhook_update(webhook_id, fields, if_match=if_match))

    def delete(self, webhook_id: str, *, if_match: Any = NOT_GIVEN) -> None:
        """Delete the webhook.

        `if_match=etag` (from `retrieve()`) deletes it only if it is still
        that version (a rotated secret is a new version), else raises `PreconditionFailedError` and nothing
        is deleted; `if_match="*"` only requires that it exists.
        """
        self._client._run(ops.webhook_delete(webhook_id, if_match=if_match))

    def rotate_secret(self, webhook_id: str) -> Webhook:
        """A new secret (in the answer); the previous one stays valid for a grace period."""
        return self._client._run(ops.webhook_rotate_secret(webhook_id))

    def list_deliveries(self, webhook_id: str, *, limit: Optional[int] = None) -> SyncCursor[WebhookDelivery]:
        return self._client._paginate(ops.webhook_deliveries(webhook_id, limit=limit))

    def redeliver(self, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        return self._client._run(ops.webhook_redeliver(webhook_id, delivery_id))


class ApiKeys(_Resource):
    """`/v1/api-keys`: needs a JWT credential (an API key cannot mint or revoke keys)."""

    def list(self, *, limit: Optional[int] = None) -> SyncCursor[ApiKey]:
        return self._client._paginate(ops.api_key_list(limit=limit))

    def create(self, *, name: str, expires_at: Optional[Union[str, datetime]] = None) -> ApiKey:
        """A new key; `.key` holds the full key, shown this once."""
        return self._client._run(ops.api_key_create(name=name, expires_at=expires_at))

    def retrieve(self, key_id: str) -> ApiKey:
        return self._client._run(ops.api_key_retrieve(key_id))

    def delete(self, key_id: str) -> ApiKey:
        """Revoke the key; it stays listed with `revoked_at`."""
        return self._client._run(ops.api_key_delete(key_id))

    revoke = delete


class Auth(_Resource):
    """`/v1/auth/token`: exchange a username and password for a JWT pair."""

    def token(self, *, username: str, password: str) -> Token:
        return self._client._run(ops.auth_token(username=username, password=password))

    def refresh(self, *, refresh: str) -> Token:
        return self._client._run(ops.auth_refresh(refresh=refresh))


class ComboAgent:
    """The Combo API client.

        from combo_sdk import ComboAgent
        client = ComboAgent(api_key="ragflow-...", base_url="http://localhost:9380/v1")

    `api_key` is the bearer credential: an API key (`ragflow-...`) or a JWT
    access token; it defaults to `$COMBO_API_KEY`. `base_url` may end in `/v1`
    or not; it defaults to `$COMBO_BASE_URL`, else `http://localhost:9380/v1`.
    `timeout` (seconds or an `httpx.Timeout`) and `max_retries` apply to every
    request; `with_options()` makes a copy with other values. Use it as a
    context manager, or call `close()`, to release its connections.
    """

    agents: Agents
    sessions: Sessions
    completions: Completions
    files: Files
    webhooks: Webhooks
    api_keys: ApiKeys
    auth: Auth

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.Client] = None,
    ) -> None:
        self._config = ClientConfig.build(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)
        self._session_agents: Dict[str, str] = {}
        self.agents = Agents(self)
        self.sessions = Sessions(self)
        self.completions = Completions(self)
        self.files = Files(self)
        self.webhooks = Webhooks(self)
        self.api_keys = ApiKeys(self)
        self.auth = Auth(self)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def api_key(self) -> Optional[str]:
        return self._config.api_key

    @property
    def timeout(self) -> TimeoutTypes:
        return self._config.timeout

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    def with_options(
        self,
        *,
        api_key: Any = NOT_GIVEN,
        base_url: Any = NOT_GIVEN,
        timeout: Any = NOT_GIVEN,
        max_retries: Any = NOT_GIVEN,
    ) -> ComboAgent:
        """A copy with some settings changed, sharing this client's connection pool."""
        config = self._config
        return type(self)(
            api_key=config.api_key if api_key is NOT_GIVEN else api_key,
            base_url=config.base_url if base_url is NOT_GIVEN else base_url,
            timeout=config.timeout if timeout is NOT_GIVEN else timeout,
            max_retries=config.max_retries if max_retries is NOT_GIVEN else max_retries,
            default_headers=config.default_headers,
            http_client=self._http,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ComboAgent:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ComboAgent(base_url={self.base_url!r})"

    # --- running operations ---------------------------------------------------

    @overload
    def _run(self, operation: APIRequest[T]) -> T: ...

    @overload
    def _run(self, operation: Generator[Any, Any, T]) -> T: ...

    def _run(self, operation: Any) -> Any:
        if isinstance(operation, APIRequest):
            return self._execute(operation)
        try:
            step = next(operation)
            while True:
                try:
                    if isinstance(step, Sleep):
                        time.sleep(step.seconds)
                        result = None
                    else:
                        result = self._execute(step)
                except Exception as exc:  # noqa: BLE001 - let the operation see (and usually re-raise) it
                    step = operation.throw(exc)
                else:
                    step = operation.send(result)
        except StopIteration as stop:
            return stop.value

    def _paginate(self, request: PageRequest[T]) -> SyncCursor[T]:
        return SyncCursor(self, request)

    def _execute(self, request: APIRequest[Any]) -> Any:
        response = self._send(request)
        if request.stream:
            return Stream(response, on_done=request.on_done)
        return result_of(request, response)

    def _send(self, request: APIRequest[Any]) -> httpx.Response:
        """Send with retries; a 2xx answer comes back (read, or open for a stream), else an error is raised."""
        policy = self._config.retry
        attempt = 0
        while True:
            http_request = build_httpx_request(self._http, self._config, request)
            try:
                response = self._http.send(http_request, stream=request.stream)
            except httpx.TransportError as exc:
                delay = policy.delay_for_exception(request.method, exc, attempt)
                if delay is None:
                    raise connection_error(exc, http_request) from exc
                log.info("%s %s failed (%r); retrying in %.2fs", request.method, request.path, exc, delay)
                time.sleep(delay)
                attempt += 1
                continue
            if response.is_success or is_not_modified(request, response):
                return response
            if request.stream:
                try:
                    response.read()
                except httpx.TransportError as exc:
                    response.close()
                    raise connection_error(exc, http_request) from exc
                response.close()
            delay = policy.delay_for_status(request.method, response.status_code, response.headers, attempt)
            if delay is None:
                raise_for_error(response)  # always raises for a non-2xx answer
                return response
            log.info(
                "%s %s answered %s; retrying in %.2fs", request.method, request.path, response.status_code, delay
            )
            time.sleep(delay)
            attempt += 1
