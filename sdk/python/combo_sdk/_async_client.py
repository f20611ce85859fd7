"""`AsyncComboAgent`: the asyncio client, with the same surface as `ComboAgent`.

Methods are coroutines; lists are async iterators (`async for`), and
`completions.create(stream=True)` returns an `AsyncStream`. The operations
themselves (paths, bodies, parsing, multi-step flows) are shared with the sync
client through `_operations.py`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import (
    Any,
    AsyncIterator,
    Dict,
    Generator,
    Generic,
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
from ._streaming import AsyncStream
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
    "AsyncComboAgent",
    "AsyncCursor",
    "AsyncAgents",
    "AsyncSessions",
    "AsyncCompletions",
    "AsyncFiles",
    "AsyncWebhooks",
    "AsyncApiKeys",
    "AsyncAuth",
]

log = logging.getLogger("combo_sdk")
T = TypeVar("T")


class AsyncCursor(Generic[T]):
    """An async iterator over every item of a list, following `next_cursor` page by page."""

    def __init__(self, client: AsyncComboAgent, request: PageRequest[T]) -> None:
        self._client = client
        self._request = request
        self._items: Optional[AsyncIterator[T]] = None

    async def pages(self) -> AsyncIterator[Page]:
        cursor: Optional[str] = None
        seen = set()
        while True:
            params = dict(self._request.params, cursor=cursor)
            data = await self._client._execute(APIRequest("GET", self._request.path, params=params))
            raw_items, next_cursor = page_of(data, self._request.items_key)
            cast = self._request.cast
            items = [cast(item) for item in raw_items] if cast else raw_items
            yield Page.from_dict({"items": items, "next_cursor": next_cursor})
            if not next_cursor or next_cursor in seen:
                return
            seen.add(next_cursor)
            cursor = next_cursor

    async def _walk(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.items:
                yield item

    def __aiter__(self) -> AsyncCursor[T]:
        return self

    async def __anext__(self) -> T:
        if self._items is None:
            self._items = self._walk()
        return await self._items.__anext__()

    async def to_list(self) -> List[T]:
        return [item async for item in self]


class _AsyncResource:
    def __init__(self, client: AsyncComboAgent) -> None:
        self._client = client


class AsyncAgents(_AsyncResource):
    def list(self, *, limit: Optional[int] = None) -> AsyncCursor[Agent]:
        return self._client._paginate(ops.agent_list(limit=limit))

    async def create(
        self,
        *,
        name: str,
        description: Optional[str] = None,
        instructions: Optional[str] = None,
        opening_message: Optional[str] = None,
        llm: Optional[Union[LLMConfig, Mapping[str, Any]]] = None,
        **extra: Any,
    ) -> Agent:
        fields = dict(
            name=name, description=description, instructions=instructions,
            opening_message=opening_message, llm=llm, **extra,
        )
        return await self._client._run(ops.agent_create(fields))

    @overload
    async def retrieve(self, agent_id: str) -> Agent: ...

    @overload
    async def retrieve(self, agent_id: str, *, if_none_match: Optional[str]) -> Optional[Agent]: ...

    async def retrieve(self, agent_id: str, *, if_none_match: Optional[str] = None) -> Optional[Agent]:
        """The agent with its `.etag`; with `if_none_match=etag`, None while it is still that version."""
        return await self._client._run(ops.agent_retrieve(agent_id, if_none_match=if_none_match))

    async def update(self, agent_id: str, *, if_match: Any = NOT_GIVEN, **fields: Any) -> Agent:
        """PATCH; with `if_match=etag`, only if the agent is still that version (else PreconditionFailedError)."""
        return await self._client._run(ops.agent_update(agent_id, fields, if_match=if_match))

    async def delete(self, agent_id: str, *, if_match: Any = NOT_GIVEN) -> None:
        """DELETE; with `if_match=etag`, only if the agent is still that version (else PreconditionFailedError)."""
        await self._client._run(ops.agent_delete(agent_id, if_match=if_match))


class AsyncSessions(_AsyncResource):
    async def create(self, *, agent_id: str, title: Optional[str] = None, **extra: Any) -> Session:
        return await self._client._run(
            ops.session_create(self._client._session_agents, agent_id=agent_id, fields=dict(title=title, **extra))
        )

    def list(self, *, agent_id: str, limit: Optional[int] = None) -> AsyncCursor[Session]:
        return self._client._paginate(ops.session_list(agent_id=agent_id, limit=limit))

    async def retrieve(
        self,
        session_id: str,
        *,
        agent_id: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> Session:
        return await self._client._run(
            ops.session_retrieve(
                self._client._session_agents, session_id, agent_id=agent_id, limit=limit, cursor=cursor
            )
        )

    def list_messages(self, session_id: str, *, limit: Optional[int] = None) -> AsyncCursor[Message]:
        return self._client._paginate(ops.session_list_messages(session_id, limit=limit))

    async def delete(self, session_id: str, *, agent_id: Optional[str] = None) -> None:
        await self._client._run(ops.session_delete(self._client._session_agents, session_id, agent_id=agent_id))


class AsyncCompletions(_AsyncResource):
    @overload
    async def create(
        self,
        *,
        question: str,
        session_id: Optional[str] = ...,
        agent_id: Optional[str] = ...,
        stream: Literal[False] = ...,
    ) -> Completion: ...

    @overload
    async def create(
        self,
        *,
        question: str,
        session_id: Optional[str] = ...,
        agent_id: Optional[str] = ...,
        stream: Literal[True],
    ) -> AsyncStream: ...

    @overload
    async def create(
        self,
        *,
        question: str,
        session_id: Optional[str] = ...,
        agent_id: Optional[str] = ...,
        stream: bool = ...,
    ) -> Union[Completion, AsyncStream]: ...

    async def create(
        self,
        *,
        question: str,
        session_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        stream: bool = False,
    ) -> Union[Completion, AsyncStream]:
        """See `ComboAgent.completions.create()`; with `stream=True`, an `AsyncStream`."""
        result: Union[Completion, AsyncStream] = await self._client._run(
            ops.completion_create(
                self._client._session_agents,
                question=question,
                session_id=session_id,
                agent_id=agent_id,
                stream=stream,
            )
        )
        return result


class AsyncFiles(_AsyncResource):
    async def upload(
        self,
        file: ops.FileInput,
        *,
        agent_id: Optional[str] = None,
        filename: Optional[str] = None,
        content_type: Optional[str] = None,
    ) -> File:
        return await self._client._run(
            ops.file_upload(file, agent_id=agent_id, filename=filename, content_type=content_type)
        )

    def list(self, *, limit: Optional[int] = None, **filters: Any) -> AsyncCursor[File]:
        return self._client._paginate(ops.file_list(limit=limit, filters=filters))

    @overload
    async def retrieve(self, file_id: str) -> File: ...

    @overload
    async def retrieve(self, file_id: str, *, if_none_match: Optional[str]) -> Optional[File]: ...

    async def retrieve(self, file_id: str, *, if_none_match: Optional[str] = None) -> Optional[File]:
        """The file with its `.etag`; with `if_none_match=etag`, None while it is still that version."""
        return await self._client._run(ops.file_retrieve(file_id, if_none_match=if_none_match))

    async def delete(self, file_id: str, *, if_match: Any = NOT_GIVEN) -> None:
        """DELETE; with `if_match=etag`, only if the file is still that version (else PreconditionFailedError)."""
        await self._client._run(ops.file_delete(file_id, if_match=if_match))

    async def wait_until_ready(self, file_id: str, *, timeout: float = 120.0, poll_interval: float = 0.5) -> File:
        return await self._client._run(
            ops.file_wait_until_ready(file_id, timeout=timeout, poll_interval=poll_interval)
        )


class AsyncWebhooks(_AsyncResource):
    sign = staticmethod(signatures.sign)
    verify = staticmethod(signatures.verify)
    construct_event = staticmethod(signatures.construct_event)

    def list(self, *, limit: Optional[int] = None) -> AsyncCursor[Webhook]:
        return self._client._paginate(ops.webhook_list(limit=limit))

    async def create(
        self,
        *,
        name: str,
        agent_id: str,
        question_template: Optional[str] = None,
        callback_url: Optional[str] = None,
        enabled: Optional[bool] = None,
        **extra: Any,
    ) -> Webhook:
        fields = dict(
            name=name, agent_id=agent_id, question_template=question_template,
            callback_url=callback_url, enabled=enabled, **extra,
        )
        return await self._client._run(ops.webhook_create(fields))

    @overload
    async def retrieve(self, webhook_id: str) -> Webhook: ...

    @overload
    async def retrieve(self, webhook_id: str, *, if_none_match: Optional[str]) -> Optional[Webhook]: ...

    async def retrieve(self, webhook_id: str, *, if_none_match: Optional[str] = None) -> Optional[Webhook]:
        """The webhook with its `.etag`; with `if_none_match=etag`, None while it is still that version."""
        return await self._client._run(ops.webhook_retrieve(webhook_id, if_none_match=if_none_match))

    async def update(self, webhook_id: str, *, if_match: Any = NOT_GIVEN, **fields: Any) -> Webhook:
        """PATCH; with `if_match=etag`, only if the webhook is still that version (else PreconditionFailedError)."""
        return await self._client._run(ops.webhook_update(webhook_id, fields, if_match=if_match))

    async def delete(self, webhook_id: str, *, if_match: Any = NOT_GIVEN) -> None:
        """DELETE; with `if_match=etag`, only if the webhook is still that version (else PreconditionFailedError)."""
        await self._client._run(ops.webhook_delete(webhook_id, if_match=if_match))

    async def rotate_secret(self, webhook_id: str) -> Webhook:
        return await self._client._run(ops.webhook_rotate_secret(webhook_id))

    def list_deliveries(self, webhook_id: str, *, limit: Optional[int] = None) -> AsyncCursor[WebhookDelivery]:
        return self._client._paginate(ops.webhook_deliveries(webhook_id, limit=limit))

    async def redeliver(self, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        return await self._client._run(ops.webhook_redeliver(webhook_id, delivery_id))


class AsyncApiKeys(_AsyncResource):
    def list(self, *, limit: Optional[int] = None) -> AsyncCursor[ApiKey]:
        return self._client._paginate(ops.api_key_list(limit=limit))

    async def create(self, *, name: str, expires_at: Optional[Union[str, datetime]] = None) -> ApiKey:
        return await self._client._run(ops.api_key_create(name=name, expires_at=expires_at))

    async def retrieve(self, key_id: str) -> ApiKey:
        return await self._client._run(ops.api_key_retrieve(key_id))

    async def delete(self, key_id: str) -> ApiKey:
        return await self._client._run(ops.api_key_delete(key_id))

    revoke = delete


class AsyncAuth(_AsyncResource):
    async def token(self, *, username: str, password: str) -> Token:
        return await self._client._run(ops.auth_token(username=username, password=password))

    async def refresh(self, *, refresh: str) -> Token:
        return await self._client._run(ops.auth_refresh(refresh=refresh))


class AsyncComboAgent:
    """The asyncio Combo API client; same arguments and resources as `ComboAgent`.

        async with AsyncComboAgent(api_key="ragflow-...") as client:
            session = await client.sessions.create(agent_id=agent_id)
            response = await client.completions.create(session_id=session.id, question="hi")
    """

    agents: AsyncAgents
    sessions: AsyncSessions
    completions: AsyncCompletions
    files: AsyncFiles
    webhooks: AsyncWebhooks
    api_keys: AsyncApiKeys
    auth: AsyncAuth

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.AsyncClient] = None,
    ) -> None:
        self._config = ClientConfig.build(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=timeout)
        self._session_agents: Dict[str, str] = {}
        self.agents = AsyncAgents(self)
        self.sessions = AsyncSessions(self)
        self.completions = AsyncCompletions(self)
        self.files = AsyncFiles(self)
        self.webhooks = AsyncWebhooks(self)
        self.api_keys = AsyncApiKeys(self)
        self.auth = AsyncAuth(self)

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
    ) -> AsyncComboAgent:
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

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncComboAgent:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncComboAgent(base_url={self.base_url!r})"

    # --- running operations ---------------------------------------------------

    @overload
    async def _run(self, operation: APIRequest[T]) -> T: ...

    @overload
    async def _run(self, operation: Generator[Any, Any, T]) -> T: ...

    async def _run(self, operation: Any) -> Any:
        if isinstance(operation, APIRequest):
            return await self._execute(operation)
        try:
            step = next(operation)
            while True:
                try:
                    if isinstance(step, Sleep):
                        await asyncio.sleep(step.seconds)
                        result = None
                    else:
                        result = await self._execute(step)
                except Exception as exc:  # noqa: BLE001 - let the operation see (and usually re-raise) it
                    step = operation.throw(exc)
                else:
                    step = operation.send(result)
        except StopIteration as stop:
            return stop.value

    def _paginate(self, request: PageRequest[T]) -> AsyncCursor[T]:
        return AsyncCursor(self, request)

    async def _execute(self, request: APIRequest[Any]) -> Any:
        response = await self._send(request)
        if request.stream:
            return AsyncStream(response, on_done=request.on_done)
        return result_of(request, response)

    async def _send(self, request: APIRequest[Any]) -> httpx.Response:
        policy = self._config.retry
        attempt = 0
        while True:
            http_request = build_httpx_request(self._http, self._config, request)
            try:
                response = await self._http.send(http_request, stream=request.stream)
            except httpx.TransportError as exc:
                delay = policy.delay_for_exception(request.method, exc, attempt)
                if delay is None:
                    raise connection_error(exc, http_request) from exc
                log.info("%s %s failed (%r); retrying in %.2fs", request.method, request.path, exc, delay)
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if response.is_success or is_not_modified(request, response):
                return response
            if request.stream:
                try:
                    await response.aread()
                except httpx.TransportError as exc:
                    await response.aclose()
                    raise connection_error(exc, http_request) from exc
                await response.aclose()
            delay = policy.delay_for_status(request.method, response.status_code, response.headers, attempt)
            if delay is None:
                raise_for_error(response)  # always raises for a non-2xx answer
                return response
            log.info(
                "%s %s answered %s; retrying in %.2fs", request.method, request.path, response.status_code, delay
            )
            await asyncio.sleep(delay)
            attempt += 1
