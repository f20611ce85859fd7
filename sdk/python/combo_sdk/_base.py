"""What the sync and async clients share: configuration, requests as data, envelope parsing.

Resource methods never do I/O themselves. They describe a request
(`APIRequest`), a paginated list (`PageRequest`), or, for flows of several
steps (find a session's agent then ask it; poll a file until it is ready), a
generator that yields those descriptions and `Sleep`s and receives each
answer back (see `_operations.py`). `ComboAgent` and `AsyncComboAgent` each
run them with their own transport, so the logic exists once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
    Generic,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import quote, urlsplit

import httpx

from ._retry import RetryPolicy, parse_retry_after
from ._version import __version__
from .errors import (
    APIConnectionError,
    APITimeoutError,
    ComboAPIError,
    error_from_envelope,
)
from .types import ComboObject

DEFAULT_BASE_URL = "http://localhost:9380/v1"
DEFAULT_MAX_RETRIES = 2
# Generous read timeout: a non-streamed answer from a slow model takes a while.
# Streams send a keep-alive comment every 15 s, so the read timeout (the longest
# gap between two chunks) is never hit by a healthy stream.
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)

TimeoutTypes = Union[float, httpx.Timeout, None]
T = TypeVar("T")


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Any = _NotGiven()


def normalize_base_url(base_url: str) -> str:
    """`http://host:9380/v1`, from that or `http://host:9380` (trailing slashes ignored)."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL!r}, not {base_url!r}")
    if not parts.path.endswith("/v1"):
        url += "/v1"
    return url


def seg(value: Any) -> str:
    """An id as one URL path segment: nothing in it can change the path."""
    return quote(str(value), safe="")


def drop_none(values: Mapping[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


@dataclass
class APIRequest(Generic[T]):
    """One HTTP call: `cast` turns the envelope's `data` into the return value."""

    method: str
    path: str  # relative to the base URL (which ends in /v1)
    params: Optional[Dict[str, Any]] = None
    json: Any = None
    files: Any = None
    data: Optional[Dict[str, Any]] = None
    cast: Optional[Callable[[Any], T]] = None
    stream: bool = False
    authenticated: bool = True
    on_done: Optional[Callable[[Any], None]] = None  # streams: called with the DoneEvent
    headers: Optional[Dict[str, str]] = None  # e.g. If-Match / If-None-Match (conditional_headers)


@dataclass
class PageRequest(Generic[T]):
    """A cursor-paginated list; `items_key` picks the page out of `data` when it is nested."""

    path: str
    params: Dict[str, Any] = field(default_factory=dict)
    cast: Optional[Callable[[Any], T]] = None
    items_key: Optional[str] = None


@dataclass
class Sleep:
    seconds: float


# An operation of several steps, returning T.
Operation = Generator[Union["APIRequest[Any]", Sleep], Any, T]


@dataclass(frozen=True)
class ClientConfig:
    api_key: Optional[str]
    base_url: str
    timeout: TimeoutTypes
    retry: RetryPolicy
    default_headers: Dict[str, str]

    @classmethod
    def build(
        cls,
        *,
        api_key: Optional[str],
        base_url: Optional[str],
        timeout: TimeoutTypes,
        max_retries: int,
        default_headers: Optional[Mapping[str, str]],
    ) -> ClientConfig:
        if api_key is None:
            api_key = os.environ.get("COMBO_API_KEY") or None
        if base_url is None:
            base_url = os.environ.get("COMBO_BASE_URL") or DEFAULT_BASE_URL
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        return cls(
            api_key=api_key,
            base_url=normalize_base_url(base_url),
            timeout=timeout,
            retry=RetryPolicy(max_retries=max_retries),
            default_headers=dict(default_headers or {}),
        )

    @property
    def max_retries(self) -> int:
        return self.retry.max_retries

    def headers(self, request: APIRequest[Any]) -> Dict[str, str]:
        headers = {
            "User-Agent": f"combo-sdk-python/{__version__}",
            "Accept": "text/event-stream" if request.stream else "application/json",
        }
        headers.update(self.default_headers)
        if request.headers:
            headers.update(request.headers)
        if request.authenticated and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")


def build_httpx_request(http: Any, config: ClientConfig, request: APIRequest[Any]) -> httpx.Request:
    built: httpx.Request = http.build_request(
        request.method,
        config.url(request.path),
        params=drop_none(request.params or {}) or None,
        json=request.json,
        files=request.files,
        data=request.data,
        headers=config.headers(request),
        timeout=config.timeout,
    )
    return built


def conditional_headers(*, if_match: Any = NOT_GIVEN, if_none_match: Optional[str] = None) -> Optional[Dict[str, str]]:
    """The If-Match / If-None-Match headers of a conditional request (None when there are none).

    `if_match` left out means an unconditional update; given, it must be an
    ETag (or `*`): None there is refused, since an object read without an
    ETag (from `create()`, say) would otherwise turn a safe update into an
    unconditional one without a word. `if_none_match=None` is a plain read.
    """
    headers: Dict[str, str] = {}
    if if_match is not NOT_GIVEN:
        headers["If-Match"] = _entity_tag("if_match", if_match)
    if if_none_match is not None:
        headers["If-None-Match"] = _entity_tag("if_none_match", if_none_match)
    return headers or None


def _entity_tag(name: str, value: Any) -> str:
    if value is None:
        raise ValueError(
            f"{name}=None: there is no ETag to send. Objects from retrieve() and update() carry one in "
            "`.etag`; read the object first, or pass if_match='*' to require only that it exists."
        )
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{name} must be an ETag string such as '\"3f2a...\"' (or '*'), not {value!r}")
    return value.strip()


def is_not_modified(request: APIRequest[Any], response: httpx.Response) -> bool:
    """A 304 answering a conditional read (If-None-Match): the object did not change."""
    return response.status_code == 304 and "If-None-Match" in (request.headers or {})


def result_of(request: APIRequest[Any], response: httpx.Response) -> Any:
    """The return value of a (non-stream) request from its read answer.

    None for a 304 to a conditional read. An object (`ComboObject`) gets the
    answer's `ETag` header as its `etag` attribute (None when there is none).
    """
    if is_not_modified(request, response):
        return None
    data = parse_data(response)
    result = request.cast(data) if request.cast is not None else data
    if isinstance(result, ComboObject):
        result._etag = response.headers.get("etag") or None
    return result


def raise_for_error(response: httpx.Response) -> None:
    """Raise the matching ComboAPIError when `response` (already read) is an error."""
    body = _json_or_none(response)
    if response.is_success and not (isinstance(body, dict) and _is_error_envelope(body)):
        return
    raise error_from_envelope(
        body,
        status=response.status_code,
        request_id=response.headers.get("x-request-id") or None,
        headers=dict(response.headers),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        response=response,
    )


def parse_data(response: httpx.Response) -> Any:
    """The envelope's `data` of a successful answer (already read); raises on errors."""
    raise_for_error(response)
    if response.status_code == 204 or not response.content:
        return None
    body = _json_or_none(response)
    if body is None:
        return response.text
    if isinstance(body, dict) and "code" in body and ("data" in body or "message" in body):
        return body.get("data")
    return body  # a success that is not an envelope (e.g. the OpenAPI document)


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _is_error_envelope(body: Dict[str, Any]) -> bool:
    code = body.get("code")
    return isinstance(code, int) and not isinstance(code, bool) and code != 0


def connection_error(exc: Exception, request: Optional[httpx.Request] = None) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"The request to the Combo server timed out: {exc!r}", request=request)
    return APIConnectionError(f"Could not reach the Combo server: {exc!r}", request=request)


def page_of(data: Any, items_key: Optional[str]) -> Tuple[List[Any], Optional[str]]:
    """(items, next_cursor) from a list answer."""
    if items_key is not None:
        data = (data or {}).get(items_key) or {}
    if isinstance(data, list):  # a plain list: one page
        return data, None
    if not isinstance(data, dict):
        return [], None
    return list(data.get("items") or []), data.get("next_cursor")


__all__ = [
    "APIRequest",
    "PageRequest",
    "Sleep",
    "Operation",
    "ClientConfig",
    "ComboAPIError",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "normalize_base_url",
    "seg",
    "drop_none",
    "build_httpx_request",
    "conditional_headers",
    "is_not_modified",
    "result_of",
    "parse_data",
    "raise_for_error",
    "connection_error",
    "page_of",
]
