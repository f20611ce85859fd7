"""The built-in answerer used when no language model is configured.

A fresh Combo install has no LLM endpoint, yet agents must still answer. This
provider never pretends to be a model: every answer opens by saying that no
language model is configured, then reports honestly what it has — the best
knowledge passages retrieved for the question, or what the agent's
instructions are about. It is deterministic (same request, same text), so it
also serves as a stable provider in tests and demos.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

from .base import ChatRequest, Passage, Provider, Usage

NOTICE = (
    "No language model is configured for this deployment, so this answer was "
    "assembled from the agent's files without one (an operator can connect a "
    "model by setting COMBO_LLM_BASE_URL)."
)

MAX_PASSAGES = 3
PASSAGE_CHARS = 300
INSTRUCTIONS_CHARS = 200
QUESTION_CHARS = 200

# A word with the whitespace before it, or trailing whitespace: the pieces
# concatenate back to exactly the original text.
_PIECE = re.compile(r"\s*\S+|\s+")


def _trim(text: str, limit: int) -> str:
    """Whitespace collapsed, then cut at a word boundary to at most `limit` chars."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"


def _best(passages: list[Passage]) -> list[Passage]:
    # Ties broken by file name and id so that the order never depends on the
    # order the retriever happened to return them in.
    ranked = sorted(passages, key=lambda p: (-p.score, p.file_name, p.id))
    return ranked[:MAX_PASSAGES]


def compose_answer(request: ChatRequest) -> str:
    """The full answer text for `request`."""
    question = _trim(request.last_user_message or "", QUESTION_CHARS)
    asked = f'your question "{question}"' if question else "your message"
    parts = [NOTICE]
    passages = [p for p in request.passages if p.content.strip()]
    if passages:
        parts.append(f"These are the passages in the agent's files that best match {asked}:")
        for passage in _best(passages):
            parts.append(f'From "{passage.file_name}": {_trim(passage.content, PASSAGE_CHARS)}')
    else:
        instructions = request.system_prompt
        if instructions and instructions.strip():
            parts.append(f'This agent\'s instructions begin: "{_trim(instructions, INSTRUCTIONS_CHARS)}"')
        parts.append(f"I found no passage in the agent's files relevant to {asked}.")
    return "\n\n".join(parts)


def split_pieces(text: str) -> list[str]:
    """Word-sized pieces whose concatenation is exactly `text`."""
    return _PIECE.findall(text)


class OfflineProvider(Provider):
    """Deterministic, model-free answers; streams word by word.

    `delay` is the pause between pieces in seconds; 0 still yields to the event
    loop between pieces so that one long answer cannot starve other streams.
    """

    name = "builtin"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def stream(self, request: ChatRequest) -> AsyncGenerator[str | Usage, None]:
        text = compose_answer(request)
        for index, piece in enumerate(split_pieces(text)):
            if index:
                await asyncio.sleep(self.delay)
            yield piece
        yield Usage(
            prompt_tokens=sum(len(m.content.split()) for m in request.messages),
            completion_tokens=len(text.split()),
        )
