"""What a completion asks of the agent's knowledge: the passages for a question.

The knowledge part of the agents app (files, chunks, full-text search) plugs in
here; until an agent has ready files, there is nothing to retrieve.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.llm.base import Passage


@dataclass(frozen=True)
class Retrieved:
    passage: Passage
    file_id: str


def retrieve_passages(*, agent, question: str) -> list[Retrieved]:
    return []
