"""Behaviour of the LLM providers, through a real fake server and the real SDK.

The OpenAI-compatible provider is exercised end to end: the `openai` SDK and
its HTTP stack talk to `FakeOpenAIServer` on 127.0.0.1, whose `model` names
choose the fault. Each fault test runs on both HTTP transports the provider
can use (the aiohttp one only where aiohttp is installed).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from agents.llm import registry
from agents.llm.base import ChatMessage, ChatRequest, LLMError, Passage, Provider, Usage
from agents.llm.offline import NOTICE, OfflineProvider, compose_answer, split_pieces
from agents.llm.openai_compat import OpenAICompatibleProvider, _loads, _usage
from combo.errors import ComboError, ErrorCode
from tests.fakes.openai_server import FakeOpenAIServer, RecordedRequest

API_KEY = "sk-test-0123456789abcdefSECRET"

try:
    import aiohttp  # noqa: F401

    TRANSPORTS = ["httpx", "aiohttp"]
except ImportError:
    TRANSPORTS = ["httpx"]


# -- fixtures and helpers ------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    # On its own loop in a thread, so every test's loop can talk to it.
    with FakeOpenAIServer(tokens=8) as fake:
        yield fake


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture
async def make_provider(
    server: FakeOpenAIServer, transport: str
) -> AsyncIterator[Callable[..., OpenAICompatibleProvider]]:
    made: list[OpenAICompatibleProvider] = []

    def make(base_url: str | None = None, timeout: float = 5.0, api_key: str = API_KEY) -> OpenAICompatibleProvider:
        provider = OpenAICompatibleProvider(base_url or server.base_url, api_key, timeout=timeout, transport=transport)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def ask(question: str, model: str = "fake", **kwargs: object) -> ChatRequest:
    return ChatRequest(
        messages=[ChatMessage("system", "You answer questions about Combo."), ChatMessage("user", question)],
        model=model,
        **kwargs,  # type: ignore[arg-type]
    )


async def collect(provider: Provider, request: ChatRequest) -> tuple[list[str], list[Usage]]:
    deltas: list[str] = []
    usages: list[Usage] = []
    async for piece in provider.stream(request):
        (usages if isinstance(piece, Usage) else deltas).append(piece)  # type: ignore[arg-type]
    return deltas, usages


async def failure(provider: Provider, request: ChatRequest) -> tuple[LLMError, list[str]]:
    """The LLMError the stream ends with, and the deltas received before it."""
    deltas: list[str] = []
    with pytest.raises(LLMError) as caught:
        async for piece in provider.stream(request):
            if isinstance(piece, str):
                deltas.append(piece)
    return caught.value, deltas


def recorded(server: FakeOpenAIServer, marker: str) -> RecordedRequest:
    matches = [r for r in server.requests if any(marker in str(m.get("content")) for m in r.messages)]
    assert len(matches) == 1, f"expected one request containing {marker!r}, got {len(matches)}"
    return matches[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- OpenAI-compatible provider: the normal path -------------------------------


@pytest.mark.asyncio
async def test_it_streams_the_answer_as_deltas_then_usage(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    deltas, usages = await collect(make_provider(), ask("What is Combo?"))

    assert deltas == ["You", " asked:", " What", " is", " Combo?", " tok5", " tok6", " tok7"]
    assert "".join(deltas) == "You asked: What is Combo? tok5 tok6 tok7"
    # 5 words of system prompt + 3 of the question, as the fake counts them.
    assert usages == [Usage(prompt_tokens=8, completion_tokens=8)]


@pytest.mark.asyncio
async def test_it_sends_the_messages_model_and_key(
    server: FakeOpenAIServer, make_provider: Callable[..., OpenAICompatibleProvider], transport: str
) -> None:
    question = f"Which plans exist? ({transport} messages check)"
    request = ChatRequest(
        messages=[
            ChatMessage("system", "Answer from the pricing guide."),
            ChatMessage("user", "Hello"),
            ChatMessage("assistant", "Hi, how can I help?"),
            ChatMessage("user", question),
        ],
        model="fake",
        temperature=0.2,
    )
    await collect(make_provider(), request)

    sent = recorded(server, question)
    assert sent.method == "POST"
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body["model"] == "fake"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["temperature"] == 0.2
    assert "max_tokens" not in sent.body
    assert sent.messages == [
        {"role": "system", "content": "Answer from the pricing guide."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": question},
    ]


@pytest.mark.asyncio
async def test_any_text_reaches_the_model_unchanged(
    server: FakeOpenAIServer, make_provider: Callable[..., OpenAICompatibleProvider], transport: str
) -> None:
    instructions = 'Zürich, naïve, 東京, 😀 "quoted" \\ back\tslash\nnew line \u2028 \x1f end'
    question = f"Which symbols? ({transport}) ✓ \u00a0 </script>"
    await collect(make_provider(), ChatRequest(
        messages=[ChatMessage("system", instructions), ChatMessage("user", question)], model="fake", temperature=1e-7,
    ))

    sent = recorded(server, question)
    assert sent.messages == [{"role": "system", "content": instructions}, {"role": "user", "content": question}]
    assert sent.body["temperature"] == 1e-7


@pytest.mark.asyncio
async def test_it_passes_max_tokens_and_accepts_a_length_finish(
    server: FakeOpenAIServer, make_provider: Callable[..., OpenAICompatibleProvider], transport: str
) -> None:
    question = f"Be brief ({transport})"
    deltas, usages = await collect(make_provider(), ask(question, max_tokens=3))

    assert recorded(server, question).body["max_tokens"] == 3
    assert "".join(deltas) == "You asked: Be"
    assert usages[0].completion_tokens == 3


@pytest.mark.asyncio
async def test_it_tolerates_a_server_that_ignores_include_usage(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    deltas, usages = await collect(make_provider(), ask("No usage?", model="fake-nousage"))

    assert "".join(deltas) == "You asked: No usage? tok4 tok5 tok6 tok7"
    assert usages == []


@pytest.mark.asyncio
async def test_usage_that_is_no_token_count_is_left_out(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    # A string and an integer beyond 64 bits: neither fits a message's counters.
    deltas, usages = await collect(make_provider(), ask("Odd usage?", model="fake-oddusage"))

    assert "".join(deltas) == "You asked: Odd usage? tok4 tok5 tok6 tok7"
    assert usages == [Usage(prompt_tokens=None, completion_tokens=None)]


@pytest.mark.parametrize(
    "reported, expected",
    [
        ({"prompt_tokens": 5, "completion_tokens": 0}, Usage(5, 0)),
        ({"prompt_tokens": -1, "completion_tokens": 2**31}, Usage(None, None)),
        ({"prompt_tokens": True, "completion_tokens": 3.0}, Usage(None, None)),
        ({"prompt_tokens": 2**31 - 1}, Usage(2**31 - 1, None)),
        ([1, 2], None),
    ],
)
def test_only_token_counts_a_message_can_hold_are_kept(reported, expected) -> None:
    assert _usage(reported) == expected


@pytest.mark.parametrize(
    "payload",
    [
        b'{"choices":[{"delta":{"content":" tok"},"finish_reason":null}],"usage":null}',
        b' {"a": [1, 2.5, "\\u00e9\\ud83d\\ude00", true, null]} ',
        b'{"a": NaN, "b": -Infinity}',  # orjson refuses these; json reads them
        b'"\\ud800"',
        b'{"a": 1, "a": 2}',
        b'{"a": 1} {"b": 2}',
        b'{"a": "\xff"}',
        b'{"a": "caf\xe9 \xf0\x9f"}',
        b'{"a": 1}\xff',
        b"[" * 5000 + b"]" * 5000,
        b"\xef\xbb\xbf{}",
        b"",
    ],
)
def test_event_json_is_read_as_the_standard_library_reads_it(payload) -> None:
    def outcome(parse):
        try:
            return "value", parse(payload)
        except RecursionError:
            return "too deep", None
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
            return type(exc).__name__, None

    # Bytes that are not UTF-8 become U+FFFD, as the SSE standard decodes a stream.
    assert repr(outcome(_loads)) == repr(outcome(lambda data: json.loads(data.decode("utf-8", "replace"))))


@pytest.mark.asyncio
async def test_it_accepts_a_server_that_answers_without_streaming(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    deltas, usages = await collect(make_provider(), ask("Whole answer?", model="fake-nostream"))

    assert deltas == ["You asked: Whole answer? tok4 tok5 tok6 tok7"]
    assert usages == [Usage(prompt_tokens=7, completion_tokens=8)]


@pytest.mark.asyncio
async def test_stopping_early_releases_the_stream_for_the_next_request(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    provider = make_provider()
    stream = provider.stream(ask("Long answer please"))
    first = [await stream.__anext__(), await stream.__anext__()]
    await stream.aclose()  # what a view does when its client disconnects

    deltas, _ = await collect(provider, ask("Next one"))
    assert first == ["You", " asked:"]
    assert "".join(deltas).startswith("You asked: Next one")


def test_it_works_from_one_event_loop_after_another(server: FakeOpenAIServer, transport: str) -> None:
    # Sync Django code runs each async_to_sync call on a fresh loop; pooled
    # connections must not leak from one loop to the next.
    provider = OpenAICompatibleProvider(server.base_url, API_KEY, timeout=5, transport=transport)
    first, _ = asyncio.run(collect(provider, ask("First loop")))
    second, _ = asyncio.run(collect(provider, ask("Second loop")))

    assert "".join(first).startswith("You asked: First loop")
    assert "".join(second).startswith("You asked: Second loop")
    # Clients don't pile up: the first loop's was forgotten when the second
    # asked for one, so only the last loop's is remembered.
    assert len(provider._clients) == 1


@pytest.mark.asyncio
async def test_complete_returns_the_whole_text_and_usage(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    text, usage = await make_provider().complete(ask("All at once"))

    assert text == "You asked: All at once tok5 tok6 tok7"
    assert usage == Usage(prompt_tokens=8, completion_tokens=8)


# -- OpenAI-compatible provider: fault mapping ---------------------------------


@pytest.mark.asyncio
async def test_it_maps_500_to_a_retryable_upstream_error(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    error, deltas = await failure(make_provider(), ask("q", model="fake-500"))

    assert error.error is ErrorCode.UPSTREAM_ERROR
    assert error.retryable is True
    assert "HTTP 500" in error.message
    assert deltas == []


@pytest.mark.asyncio
async def test_it_maps_429_to_upstream_rate_limited(make_provider: Callable[..., OpenAICompatibleProvider]) -> None:
    error, _ = await failure(make_provider(), ask("q", model="fake-429"))

    assert error.error is ErrorCode.UPSTREAM_RATE_LIMITED
    assert error.retryable is True
    assert error.retry_after == 1.0
    assert "HTTP 429" in error.message


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [401, 403])
async def test_it_maps_401_and_403_to_upstream_auth_failed(
    make_provider: Callable[..., OpenAICompatibleProvider], status: int
) -> None:
    error, _ = await failure(make_provider(), ask("q", model=f"fake-{status}"))

    assert error.error is ErrorCode.UPSTREAM_AUTH_FAILED
    assert error.retryable is False
    assert "check COMBO_LLM_API_KEY" in error.message


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 404, 422])
async def test_it_maps_other_4xx_to_a_non_retryable_upstream_error(
    make_provider: Callable[..., OpenAICompatibleProvider], status: int
) -> None:
    error, _ = await failure(make_provider(), ask("q", model=f"fake-{status}"))

    assert error.error is ErrorCode.UPSTREAM_ERROR
    assert error.retryable is False
    assert f"HTTP {status}" in error.message
    # The upstream's explanation is passed on, with the key it echoed removed.
    assert "this model cannot do that" in error.message
    assert "[redacted]" in error.message


@pytest.mark.asyncio
async def test_it_maps_a_server_that_never_answers_to_upstream_timeout(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    started = time.monotonic()
    error, deltas = await failure(make_provider(timeout=0.3), ask("q", model="fake-hang"))

    assert error.error is ErrorCode.UPSTREAM_TIMEOUT
    assert error.retryable is True
    assert deltas == []
    assert 0.25 <= time.monotonic() - started < 3


@pytest.mark.asyncio
async def test_it_maps_a_stream_that_stalls_midway_to_upstream_timeout(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    error, deltas = await failure(make_provider(timeout=0.3), ask("Stall here", model="fake-stall"))

    assert error.error is ErrorCode.UPSTREAM_TIMEOUT
    assert error.retryable is True
    assert deltas == ["You", " asked:", " Stall"]  # what came before the stall


@pytest.mark.asyncio
async def test_it_maps_a_cut_connection_to_upstream_bad_response(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    error, deltas = await failure(make_provider(), ask("Cut here", model="fake-cut"))

    assert error.error is ErrorCode.UPSTREAM_BAD_RESPONSE
    assert error.retryable is True
    assert deltas == ["You", " asked:", " Cut"]


@pytest.mark.asyncio
async def test_it_maps_a_stream_that_ends_without_finishing_to_upstream_bad_response(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    error, deltas = await failure(make_provider(), ask("End here", model="fake-truncated"))

    assert error.error is ErrorCode.UPSTREAM_BAD_RESPONSE
    assert "without finishing" in error.message
    assert deltas == ["You", " asked:", " End"]


@pytest.mark.asyncio
async def test_it_maps_malformed_json_to_upstream_bad_response(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    error, _ = await failure(make_provider(), ask("q", model="fake-garbage"))

    assert error.error is ErrorCode.UPSTREAM_BAD_RESPONSE
    assert "malformed" in error.message


@pytest.mark.asyncio
async def test_it_maps_a_closed_port_to_upstream_unavailable(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    port = closed_port()
    error, _ = await failure(make_provider(f"http://127.0.0.1:{port}/v1"), ask("q"))

    assert error.error is ErrorCode.UPSTREAM_UNAVAILABLE
    assert error.retryable is True
    assert f"http://127.0.0.1:{port}/v1" in error.message
    assert "check COMBO_LLM_BASE_URL" in error.message


@pytest.mark.asyncio
async def test_it_maps_an_unresolvable_host_to_upstream_unavailable(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    error, _ = await failure(make_provider("http://nonexistent.invalid/v1"), ask("q"))

    assert error.error is ErrorCode.UPSTREAM_UNAVAILABLE
    assert error.retryable is True
    assert "host name could not be resolved" in error.message


FAULTS = ["fake-500", "fake-429", "fake-401", "fake-403", "fake-400", "fake-404", "fake-hang", "fake-stall",
          "fake-cut", "fake-truncated", "fake-garbage"]  # fmt: skip


@pytest.mark.asyncio
async def test_no_error_ever_shows_the_api_key(make_provider: Callable[..., OpenAICompatibleProvider]) -> None:
    # The fake's 4xx bodies echo the whole key, the worst a server can do.
    provider = make_provider(timeout=0.3)
    errors = [(await failure(provider, ask("q", model=model)))[0] for model in FAULTS]
    errors.append((await failure(make_provider(f"http://127.0.0.1:{closed_port()}/v1"), ask("q")))[0])

    assert len(errors) == len(FAULTS) + 1
    for error in errors:
        assert error.upstream
        # Also what a log line of the exception with its causes would show.
        shown = "".join(traceback.format_exception(error)) + repr(error) + str(error)
        assert API_KEY not in shown, error.error
        assert API_KEY[:12] not in shown, error.error


@pytest.mark.asyncio
async def test_it_never_shows_credentials_from_the_base_url(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    port = closed_port()
    error, _ = await failure(make_provider(f"http://admin:hunter2@127.0.0.1:{port}/v1?token=t0ps3cret"), ask("q"))

    assert error.upstream
    assert "hunter2" not in error.message
    assert "t0ps3cret" not in error.message
    assert "admin" not in error.message


def test_llm_errors_are_combo_errors_of_the_upstream_class() -> None:
    error = LLMError(ErrorCode.UPSTREAM_TIMEOUT, "slow", retryable=True)

    assert isinstance(error, ComboError)
    assert error.upstream is True
    assert error.error.code == 30002
    assert LLMError(ErrorCode.INTERNAL_ERROR, "x").upstream is False
    assert LLMError(ErrorCode.UPSTREAM_ERROR).message == ErrorCode.UPSTREAM_ERROR.default_message


def test_it_refuses_an_empty_base_url_rather_than_fall_back_to_openai() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatibleProvider("  ", "k")


def test_it_rejects_an_unknown_transport() -> None:
    with pytest.raises(ValueError, match="transport"):
        OpenAICompatibleProvider("http://127.0.0.1:1/v1", "k", transport="carrier-pigeon")


# -- offline provider ----------------------------------------------------------

GUIDE = Passage(
    id="p1", file_name="guide.md", content="Combo agents answer from their files.", score=0.9, position=None
)
FAQ = Passage(id="p2", file_name="faq.txt", content="Plans: Free and Team.", score=0.7, position={"line": 3})
NOTES = Passage(
    id="p3", file_name="notes.md", content="Internal notes on   pricing.\n\nSecond para.", score=0.8, position=None
)
OLD = Passage(id="p4", file_name="old.md", content="An outdated remark.", score=0.1, position=None)


def offline_request(passages: list[Passage], system: str | None = "You are the Combo helpdesk agent.") -> ChatRequest:
    messages = [ChatMessage("system", system)] if system is not None else []
    messages.append(ChatMessage("user", "How much does Combo cost?"))
    return ChatRequest(messages=messages, model="builtin", passages=passages)


@pytest.mark.asyncio
async def test_offline_says_first_that_no_language_model_is_configured() -> None:
    deltas, _ = await collect(OfflineProvider(), offline_request([GUIDE]))
    text = "".join(deltas)

    assert text.startswith("No language model is configured for this deployment")
    assert text.startswith(NOTICE)
    assert "COMBO_LLM_BASE_URL" in text.split("\n\n")[0]


@pytest.mark.asyncio
async def test_offline_quotes_the_three_best_passages_highest_score_first() -> None:
    deltas, _ = await collect(OfflineProvider(), offline_request([OLD, FAQ, GUIDE, NOTES]))
    paragraphs = "".join(deltas).split("\n\n")

    assert paragraphs[1] == (
        'These are the passages in the agent\'s files that best match your question "How much does Combo cost?":'
    )
    assert paragraphs[2:] == [
        'From "guide.md": Combo agents answer from their files.',
        'From "notes.md": Internal notes on pricing. Second para.',
        'From "faq.txt": Plans: Free and Team.',
    ]
    assert "old.md" not in "".join(deltas)


def test_offline_trims_long_passages_to_about_300_characters() -> None:
    long = Passage(id="l", file_name="long.md", content="word " * 200, score=1.0, position=None)
    quote = compose_answer(offline_request([long])).split("\n\n")[2]

    assert quote.startswith('From "long.md": word word')
    assert quote.endswith("…")
    assert len(quote) - len('From "long.md": ') <= 300


def test_offline_without_passages_says_what_the_instructions_are_and_that_nothing_matched() -> None:
    instructions = "You are the Combo helpdesk agent. " * 20
    text = compose_answer(offline_request([], system=instructions))
    paragraphs = text.split("\n\n")

    assert paragraphs[0] == NOTICE
    assert paragraphs[1].startswith("This agent's instructions begin: \"You are the Combo helpdesk agent.")
    assert len(paragraphs[1]) < len('This agent\'s instructions begin: ""') + 201
    assert paragraphs[2] == (
        'I found no passage in the agent\'s files relevant to your question "How much does Combo cost?".'
    )


def test_offline_without_instructions_or_passages_still_answers_honestly() -> None:
    text = compose_answer(offline_request([], system=None))

    assert text == NOTICE + "\n\n" + (
        'I found no passage in the agent\'s files relevant to your question "How much does Combo cost?".'
    )


@pytest.mark.asyncio
async def test_offline_is_deterministic() -> None:
    request = offline_request([NOTES, GUIDE, FAQ])
    first = await collect(OfflineProvider(), request)
    second = await collect(OfflineProvider(), offline_request([FAQ, GUIDE, NOTES]))

    assert first == second


@pytest.mark.asyncio
async def test_offline_streams_word_sized_pieces_that_join_to_the_full_answer() -> None:
    request = offline_request([GUIDE, FAQ])
    deltas, usages = await collect(OfflineProvider(), request)
    text = compose_answer(request)

    assert "".join(deltas) == text
    assert len(deltas) == len(text.split())
    assert all(len(piece.split()) == 1 for piece in deltas)
    assert usages == [Usage(prompt_tokens=11, completion_tokens=len(text.split()))]


def test_split_pieces_keeps_every_character() -> None:
    for text in ["", "one", "  lead and trail  ", "a\n\nb\tc", 'From "x.md": y…']:
        assert "".join(split_pieces(text)) == text


@pytest.mark.asyncio
async def test_offline_pauses_between_pieces_when_asked() -> None:
    started = time.monotonic()
    deltas, _ = await collect(OfflineProvider(delay=0.01), offline_request([]))

    assert time.monotonic() - started >= 0.01 * (len(deltas) - 1) * 0.9


# -- registry ------------------------------------------------------------------


@pytest.fixture
def clean_registry() -> Iterator[None]:
    saved = registry.snapshot()
    yield
    registry.restore(saved)


def test_registry_serves_the_builtin_provider_until_configured(clean_registry: None) -> None:
    provider = registry.get_provider()

    assert isinstance(provider, OfflineProvider)
    assert provider.name == "builtin"
    assert registry.get_provider("builtin") is provider


def test_registry_returns_configured_providers_and_the_default(clean_registry: None) -> None:
    offline = OfflineProvider()
    remote = OpenAICompatibleProvider("http://127.0.0.1:1/v1", "k", transport="httpx")
    registry.configure({"builtin": offline, "openai": remote}, default="openai")

    assert registry.get_provider("openai") is remote
    assert registry.get_provider("builtin") is offline
    assert registry.get_provider() is remote
    assert registry.get_provider("") is remote


def test_registry_refuses_an_unknown_name_with_a_non_retryable_upstream_error(clean_registry: None) -> None:
    registry.configure({"builtin": OfflineProvider()}, default="builtin")

    with pytest.raises(LLMError) as caught:
        registry.get_provider("claude")

    assert caught.value.error is ErrorCode.UPSTREAM_ERROR
    assert caught.value.retryable is False
    assert "No provider named 'claude' is configured" in caught.value.message


def test_registry_lists_names_and_restores_a_snapshot(clean_registry: None) -> None:
    before = registry.snapshot()
    registry.configure({"builtin": OfflineProvider(), "zeta": OfflineProvider()}, default="zeta")
    assert registry.names() == ["builtin", "zeta"]
    assert registry.default_name() == "zeta"

    registry.restore(before)

    assert registry.names() == sorted(before[0])
    assert registry.default_name() == before[1]


def test_registry_refuses_a_default_it_does_not_have(clean_registry: None) -> None:
    with pytest.raises(ValueError):
        registry.configure({"builtin": OfflineProvider()}, default="openai")
