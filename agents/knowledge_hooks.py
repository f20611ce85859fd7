"""What a completion asks of the agent's knowledge: the passages for a question.

The top COMBO_RETRIEVAL_TOP_K chunks of the agent's `ready` files, ranked by
full-text search (agents.knowledge.search). Files still queued, processing or
failed are not searched.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import F

from agents.knowledge.search import search
from agents.llm.base import Passage
from agents.models import KnowledgeFile


def _significant(score: float, digits: int = 6) -> float:
    # Significant digits, not decimal places: FTS5's bm25 can be as small as
    # 1e-6 per term (its idf floor for words in most chunks of a small corpus).
    return float(f"{score:.{digits}g}")


@dataclass(frozen=True)
class Retrieved:
    passage: Passage
    file_id: str


def ready_files(agent_ids) -> dict:
    """{agent id: {file id: file name}} of the `ready` files of these agents, in one query.

    An agent without ready files is absent, and so is a file of another owner
    than the agent's: attaching checks that, and this does again.
    """
    out: dict = {}
    rows = (
        KnowledgeFile.objects.ready()
        .filter(agents__in=list(agent_ids), agents__owner=F("owner"))
        .values_list("agents", "id", "name")
    )
    for agent_id, file_id, name in rows:
        out.setdefault(agent_id, {})[file_id] = name
    return out


def retrieve_passages(*, agent, question: str, k: int | None = None, names: dict | None = None) -> list[Retrieved]:
    """The passages for `question`; `names` is the agent's entry of `ready_files()` when known."""
    if names is None:
        names = ready_files([agent.id]).get(agent.id, {})
    if not names:
        return []
    hits = search(file_ids=names, query=question, k=k or settings.COMBO_RETRIEVAL_TOP_K)
    return [
        Retrieved(
            passage=Passage(
                # "<file id>:<chunk index>": stable for the file, and it says where to look.
                id=f"{hit.file_id}:{hit.index}",
                file_name=names[hit.file_id],
                content=hit.text,
                score=_significant(hit.score),
                position=hit.position,
            ),
            file_id=str(hit.file_id),
        )
        for hit in hits
    ]
