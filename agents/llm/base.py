"""The provider interface every language-model backend implements.

Combo's chat views talk to a `Provider` and nothing else: the OpenAI-compatible
client, the built-in offline answerer and any future backend all stream text
deltas through `Provider.stream()` and report every failure as an `LLMError`
carrying one of the shared UPSTREAM_* codes. No Django imports here, so this
package can be tested and benchmarked on its own.
"""

from __future__ import annotations

import abc
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from combo.errors import ComboError, ErrorCode


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Passage:
    """A piece of an agent's knowledge files retrieved for this question."""

    id: str
    file_name: str
    content: str
    score: float
    position: dict | None = None


@dataclass
class Usage:
    """What a finished answer cost, and why the model stopped.

    `finish_reason` is the model's own word, as OpenAI-compatible servers
    report it: "stop" (a natural end), "length" (cut by max tokens),
    "content_filter", ...; None when the provider did not say. It takes no
    part in comparisons: a Usage is its token counts.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ChatRequest:
    messages: list[ChatMessage]
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    # Already rendered into `messages` by the caller; kept separately so that
    # providers without a model (the offline one) can use them directly.
    passages: list[Passage] = field(default_factory=list)

    @property
    def system_prompt(self) -> str | None:
        for message in self.messages:
            if message.role == "system":
                return message.content
        return None

    @property
    def last_user_message(self) -> str | None:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return None


class LLMError(ComboError):
    """A provider failure, already classified for the API envelope.

    `message` is shown to API users, so it says what to do and never carries an
    API key, an auth header or credentials from the base URL. `retryable` tells
    the caller whether the same request may succeed if sent again later.
    It is a ComboError so that a view which lets it escape renders the normal
    envelope for its code.
    """

    def __init__(
        self,
        error: ErrorCode,
        message: str | None = None,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(error, message)
        self.retryable = retryable
        # Seconds the upstream asked us to wait (HTTP Retry-After), if it said.
        self.retry_after = retry_after
        if retry_after is not None:
            # Passed on to Combo's caller as the header (non-stream) and as
            # `data.retry_after` (both modes), in whole seconds, at least 1.
            wait = max(1, math.ceil(retry_after))
            self.headers["Retry-After"] = str(wait)
            self.extra["retry_after"] = wait

    @property
    def upstream(self) -> bool:
        return 30000 <= self.error.code < 40000

    def __repr__(self) -> str:
        return f"LLMError({self.error.name}, {self.message!r}, retryable={self.retryable})"


class Provider(abc.ABC):
    """A language-model backend.

    Implementations are async generators:

        async for piece in provider.stream(request):
            if isinstance(piece, Usage): ...   # at most once, last (with finish_reason)
            else: ...                          # a text delta (str)

    Every failure, before or during the stream, is raised as `LLMError`.
    """

    name: str = "provider"

    # Declared without `async` on purpose: an `async def` that yields is an
    # async generator function, and this is the type such a function has.
    # An async generator (not just an iterator) so that a caller whose client
    # went away can `aclose()` it and so release the upstream connection.
    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncGenerator[str | Usage, None]:
        """Yield text deltas, then at most one `Usage`; raise `LLMError` on failure."""

    async def complete(self, request: ChatRequest) -> tuple[str, Usage | None]:
        """The whole answer at once, for callers that do not stream."""
        parts: list[str] = []
        usage: Usage | None = None
        async for piece in self.stream(request):
            if isinstance(piece, str):
                parts.append(piece)
            else:
                usage = piece
        return "".join(parts), usage

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release network resources; the default provider holds none."""
