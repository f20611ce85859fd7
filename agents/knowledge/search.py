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

On a large corpus a common word can be in a quarter of all chunks, and scoring
all of them would make one question cost a hundred milliseconds. So the chunks
considered are those holding the question's rarest words, as many words as fit
RANK_BUDGET_ROWS estimated matches (SQLite counts them in the index, stopping at
the budget; PostgreSQL reads the planner's lexeme statistics); on PostgreSQL
those chunks are still ranked by every word. On a small corpus nothing is cut.
The term statistics (bm25's idf, the row estimates) are over all chunks of the
deployment, not only the files searched.

A question is never passed to the database as query syntax. For FTS5 it is cut
into words, each quoted and the quotes ORed, so "AND", "NEAR(", `*`, `"` or `^`
are just words; for PostgreSQL the text goes to websearch_to_tsquery and
plainto_tsquery, which never raise a syntax error. Either way no question can
make retrieval fail.
"""

from __future__ import annotations

import re
import time
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
    return " OR ".join(_fts5_phrase(term) for term in terms)


def _fts5_phrase(term: str) -> str:
    # A term is \w+ only, which never contains a double quote: it cannot close its own quotes.
    return f'"{term}"'


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


# Ranking scores every candidate chunk, so at most about this many are
# ranked: the candidates are the chunks holding the question's rarest words.
RANK_BUDGET_ROWS = 1000


def within_budget(terms: list[str], matches) -> list[str]:
    """The rarest terms whose estimated matches fit RANK_BUDGET_ROWS together (always at least one).

    Like an IDF cut-off: a word found in a quarter of all chunks says little
    about which chunk answers, and scoring all those chunks is what would make
    a question slow on a large corpus. On a small corpus nothing is cut.
    """
    picked, total = [], 0
    for term in sorted(terms, key=matches):
        count = matches(term)
        if picked and total + count > RANK_BUDGET_ROWS:
            break
        picked.append(term)
        total += count
    return picked


def _search_sqlite(ids: list[uuid.UUID], query: str, k: int) -> list[Hit]:
    placeholders = ", ".join(["%s"] * len(ids))
    sql = f"""
        SELECT c.id, c.file_id, c."index", c.text, c.position, bm25(agents_chunk_fts) AS rank
        FROM agents_chunk_fts
        JOIN agents_chunk AS c ON c.id = agents_chunk_fts.rowid
        WHERE agents_chunk_fts MATCH %s AND c.file_id IN ({placeholders})
        ORDER BY rank, c.id
        LIMIT %s
    """
    with connection.cursor() as cursor:
        counts = {}
        for term in query_terms(query):
            # How many chunks hold the word, counting no further than the budget:
            # reading a doclist's first rowids is cheap, scoring them all is not.
            cursor.execute(
                "SELECT count(*) FROM (SELECT 1 FROM agents_chunk_fts WHERE agents_chunk_fts MATCH %s LIMIT %s)",
                [_fts5_phrase(term), RANK_BUDGET_ROWS + 1],
            )
            counts[term] = cursor.fetchone()[0]
        terms = within_budget(list(counts), counts.__getitem__)
        expression = " OR ".join(_fts5_phrase(term) for term in terms)
        # UUIDField is stored as 32 hex characters on SQLite.
        cursor.execute(sql, [expression, *[file_id.hex for file_id in ids], k])
        rows = cursor.fetchall()
    return _hits(rows, lambda rank: -rank)


_PG_STRICT = """
    SELECT c.id, c.file_id, c."index", c.text, c.position, ts_rank_cd(c.search_vector, q.query, 32) AS rank
    FROM agents_chunk AS c, (SELECT websearch_to_tsquery('english', %s)) AS q(query)
    WHERE c.file_id = ANY(%s) AND c.search_vector @@ q.query
    ORDER BY rank DESC, c.id
    LIMIT %s
"""
_PG_ANY = """
    SELECT c.id, c.file_id, c."index", c.text, c.position, ts_rank_cd(c.search_vector, q.ranked, 32) AS rank
    FROM agents_chunk AS c, (SELECT {candidates}, {ranked}) AS q(candidates, ranked)
    WHERE c.file_id = ANY(%s) AND c.search_vector @@ q.candidates AND NOT (c.id = ANY(%s))
    ORDER BY rank DESC, c.id
    LIMIT %s
"""
# How long the planner's lexeme statistics are reused (see _pg_lexeme_matches).
_STATS_SECONDS = 60
_stats: dict[str, tuple[float, dict[str, float], float]] = {}


def _search_postgresql(ids: list[uuid.UUID], query: str, k: int) -> list[Hit]:
    with connection.cursor() as cursor:
        # Every term: websearch_to_tsquery ANDs the words of a question.
        cursor.execute(_PG_STRICT, [query, ids, k])
        hits = _hits(cursor.fetchall(), lambda rank: 1.0 + rank)
        if len(hits) >= k:
            return hits
        # Any term: a natural-language question rarely has every word in one chunk.
        cursor.execute("SELECT tsvector_to_array(to_tsvector('english', %s))", [" ".join(query_terms(query))])
        lexemes = cursor.fetchone()[0] or []
        if not lexemes:
            return hits
        matches = _pg_lexeme_matches(cursor)
        selective = within_budget(lexemes, matches) if matches else lexemes
        any_of = " || ".join(["plainto_tsquery('simple', %s)"] * len(lexemes))
        candidates = " || ".join(["plainto_tsquery('simple', %s)"] * len(selective))
        cursor.execute(
            _PG_ANY.format(candidates=candidates, ranked=any_of),
            [*selective, *lexemes, ids, [hit.chunk_id for hit in hits], k - len(hits)],
        )
        return hits + _hits(cursor.fetchall(), lambda rank: rank)


def _pg_lexeme_matches(cursor):
    """An estimate of the chunks holding a lexeme, from the planner's statistics; None without any.

    ANALYZE keeps the most common lexemes of search_vector with their share of
    rows (a lexeme not listed is rarer than the least common one listed). The
    shares are reused for a minute; the row count is read fresh each time.
    """
    cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'agents_chunk'::regclass")
    rows = float(cursor.fetchone()[0] or 0)
    fetched, shares, floor = _stats.get(connection.alias, (0.0, {}, 0.0))
    if time.monotonic() - fetched > _STATS_SECONDS:
        cursor.execute(
            """
            SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs
            FROM pg_stats AS s
            WHERE s.schemaname = current_schema() AND s.tablename = 'agents_chunk' AND s.attname = 'search_vector'
            """
        )
        row = cursor.fetchone()
        shares, floor = {}, 0.0
        if row and row[0] and row[1]:
            shares = dict(zip(row[0], row[1]))  # the last three numbers are the min, max and null shares
            floor = row[1][len(row[0])]
        _stats[connection.alias] = (time.monotonic(), shares, floor)
    if not shares or rows <= 0:
        return None
    return lambda lexeme: shares.get(lexeme, floor / 2) * rows
