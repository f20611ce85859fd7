"""Full-text retrieval over chunks: one interface, a backend per database vendor.

`search(file_ids=..., query=..., k=...)` returns the best `k` chunks of the
given files for a natural-language question, best first, each with a score
that is higher-is-better on both backends (comparable within one result list,
not across backends):

* SQLite (the embedded default): the FTS5 table `agents_chunk_fts` (migration
  0003), ranked by bm25(). FTS5's bm25 is lower-is-better (more negative is a
  better match), so the score is its negation.
* PostgreSQL: the generated `search_vector` column with its GIN index, ranked
  by ts_rank_cd(..., 32), which maps the rank into [0, 1). Chunks that match
  every term (websearch_to_tsquery, which ANDs terms and understands "quoted
  phrases", `or` and `-word`) come first with score 1 + rank; when fewer than
  k do, chunks matching any term fill the list with score rank (< 1).

A question is never passed to the database as query syntax. For FTS5 it is cut
into words, each quoted and the quotes ORed, so "AND", "NEAR(", `*`, `"` or `^`
are just words; for PostgreSQL the text goes to websearch_to_tsquery and
plainto_tsquery, which never raise a syntax error. Either way no question can
make retrieval fail.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import connection

# Words that carry no meaning for retrieval. PostgreSQL's 'english'
# configuration drops them itself; FTS5 has no stop-word list, and a question's
# "the", "is", "how" would otherwise match (and score) most chunks.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she should
    so some such than that the their theirs them themselves then there these they this those through to
    too under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves""".split()
)
# Enough for any real question; caps the work a pasted essay can cause.
MAX_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: int
    file_id: uuid.UUID
    index: int
    text: str
    position: dict | None
    score: float


def clean_question(question: str) -> str:
    """The question as text every database accepts: no NUL, no lone UTF-16 surrogates."""
    return question.encode("utf-8", "replace").decode("utf-8").replace("\x00", " ")


def query_terms(question: str) -> list[str]:
    """The distinct words of a question, lower-cased, stop words dropped (unless nothing else is left)."""
    words: list[str] = []
    seen: set[str] = set()
    for word in _WORD.findall(clean_question(question).lower()):
        word = word.strip("_")
        if word and word not in seen:
            seen.add(word)
            words.append(word)
    meaningful = [word for word in words if word not in STOP_WORDS]
    return (meaningful or words)[:MAX_TERMS]


def fts5_match_expression(question: str) -> str | None:
    """A safe FTS5 MATCH expression: every word quoted, ORed together; None if no words."""
    terms = query_terms(question)
    if not terms:
        return None
    # \w never matches a double quote, so no term can close its own quotes.
    return " OR ".join(f'"{term}"' for term in terms)


def search(*, file_ids: Iterable[uuid.UUID | str], query: str, k: int) -> list[Hit]:
    ids = [uuid.UUID(str(file_id)) for file_id in file_ids]
    query = clean_question(query)
    if not ids or k < 1 or not query_terms(query):
        return []
    if connection.vendor == "postgresql":
        return _search_postgresql(ids, query, k)
    if connection.vendor == "sqlite":
        return _search_sqlite(ids, query, k)
    raise NotImplementedError(f"no full-text search for the {connection.vendor} database")


def _hits(rows: Sequence[tuple], score) -> list[Hit]:
    import json

    hits = []
    for chunk_id, file_id, index, text, position, rank in rows:
        if isinstance(position, str):  # SQLite returns JSON as text from raw SQL
            position = json.loads(position)
        hits.append(
            Hit(
                chunk_id=chunk_id,
                file_id=uuid.UUID(str(file_id)),
                index=index,
                text=text,
                position=position,
                score=score(rank),
            )
        )
    return hits


def _search_sqlite(ids: list[uuid.UUID], query: str, k: int) -> list[Hit]:
    expression = fts5_match_expression(query)
    placeholders = ", ".join(["%s"] * len(ids))
    sql = f"""
        SELECT c.id, c.file_id, c."index", c.text, c.position, bm25(agents_chunk_fts) AS rank
        FROM agents_chunk_fts
        JOIN agents_chunk AS c ON c.id = agents_chunk_fts.rowid
        WHERE agents_chunk_fts MATCH %s AND c.file_id IN ({placeholders})
        ORDER BY rank, c.id
        LIMIT %s
    """
    # UUIDField is stored as 32 hex characters on SQLite.
    with connection.cursor() as cursor:
        cursor.execute(sql, [expression, *[file_id.hex for file_id in ids], k])
        rows = cursor.fetchall()
    return _hits(rows, lambda rank: -rank)


_PG_SELECT = """
    SELECT c.id, c.file_id, c."index", c.text, c.position, ts_rank_cd(c.search_vector, q.query, 32) AS rank
    FROM agents_chunk AS c, ({tsquery}) AS q(query)
    WHERE c.file_id = ANY(%s) AND c.search_vector @@ q.query {exclude}
    ORDER BY rank DESC, c.id
    LIMIT %s
"""


def _search_postgresql(ids: list[uuid.UUID], query: str, k: int) -> list[Hit]:
    with connection.cursor() as cursor:
        # Every term: websearch_to_tsquery ANDs the words of a question.
        cursor.execute(
            _PG_SELECT.format(tsquery="SELECT websearch_to_tsquery('english', %s)", exclude=""),
            [query, ids, k],
        )
        hits = _hits(cursor.fetchall(), lambda rank: 1.0 + rank)
        if len(hits) >= k:
            return hits
        # Any term: a natural-language question rarely has every word in one chunk.
        terms = query_terms(query)
        any_term = " || ".join(["plainto_tsquery('english', %s)"] * len(terms))
        cursor.execute(
            _PG_SELECT.format(tsquery=f"SELECT {any_term}", exclude="AND NOT (c.id = ANY(%s))"),
            [*terms, ids, [hit.chunk_id for hit in hits], k - len(hits)],
        )
        return hits + _hits(cursor.fetchall(), lambda rank: rank)
