"""Full-text retrieval on whichever database the suite runs against (SQLite, or PostgreSQL in
tests/production_suite.py): ranking on a small corpus with known answers, questions that
would be query syntax, and the index staying in step with the chunks.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from agents.knowledge import services
from agents.knowledge.search import fts5_match_expression, query_terms, search
from agents.knowledge.tasks import ingest_file
from agents.models import Chunk, KnowledgeFile

HANDBOOK = b"""# Customer handbook

## Refunds

Refunds are issued within 14 days after the returned item reaches our warehouse.
A refund goes back to the original payment method; store credit is instant.

## Shipping

Orders ship from Rotterdam every weekday. International parcels take five to eight
business days; tracking numbers are emailed when the parcel leaves.

## Passwords

To reset a forgotten password, open Account settings and choose Reset password.
The reset link is valid for one hour.

## Warranty

Every device carries a two-year warranty covering manufacturing defects.
Accidental damage, such as a cracked screen, is not covered by the warranty.

## API limits

Each API key may make 60 completion requests per minute. File uploads are limited
to 10 per minute per key.

## Support hours

Support is open Monday to Friday from 9:00 to 17:00 CET, by chat and by email.
"""

MENU = b"""# Canteen menu

## Monday

Lentil soup, grilled halloumi and a lemon tart.

## Tuesday

Mushroom risotto with parmesan; apple crumble for dessert.
"""

KNOWN_ANSWERS = [
    ("How long do refunds take?", "Customer handbook > Refunds"),
    ("Where do orders ship from?", "Customer handbook > Shipping"),
    ("I forgot my password, how do I reset it?", "Customer handbook > Passwords"),
    ("Is accidental damage covered by the warranty?", "Customer handbook > Warranty"),
    ("How many file uploads per minute can a key make?", "Customer handbook > API limits"),
    ("When is support open?", "Customer handbook > Support hours"),
    ("what is for dessert on tuesday", "Canteen menu > Tuesday"),
    ("soup", "Canteen menu > Monday"),
]


def ingest(owner, name: str, data: bytes) -> KnowledgeFile:
    """Upload through the service, then run the real task function (no queue)."""
    file, _ = services.knowledge_file_upload(owner=owner, upload=SimpleUploadedFile(name, data))
    assert ingest_file.call(str(file.id)) == "ready"
    file.refresh_from_db()
    return file


@pytest.fixture
def corpus(alice):
    return [ingest(alice.user, "handbook.md", HANDBOOK), ingest(alice.user, "menu.md", MENU)]


@pytest.mark.parametrize("question, heading", KNOWN_ANSWERS)
def test_the_known_answer_ranks_first(corpus, question, heading):
    hits = search(file_ids=[f.id for f in corpus], query=question, k=3)
    assert hits, question
    assert hits[0].position == {"heading": heading}, [(h.position, h.score) for h in hits]


def test_scores_are_higher_is_better_and_in_order(corpus):
    hits = search(file_ids=[f.id for f in corpus], query="refund warranty password shipping", k=10)
    assert len(hits) >= 4
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True) and all(score > 0 for score in scores)


def test_every_word_matching_beats_some_words_matching(corpus):
    hits = search(file_ids=[f.id for f in corpus], query="cracked screen warranty", k=5)
    assert hits[0].position == {"heading": "Customer handbook > Warranty"}
    assert all(hit.score < hits[0].score for hit in hits[1:])


def test_k_limits_the_hits_and_only_the_given_files_are_searched(corpus):
    handbook, menu = corpus
    assert len(search(file_ids=[handbook.id], query="refund shipping password warranty support", k=2)) == 2
    assert search(file_ids=[menu.id], query="refund", k=5) == []
    assert search(file_ids=[], query="refund", k=5) == []
    assert {hit.file_id for hit in search(file_ids=[menu.id], query="soup risotto", k=5)} == {menu.id}


def test_another_owners_files_are_not_searched_unless_asked_for(corpus, bob):
    theirs = ingest(bob.user, "bob.md", b"# Bob\n\nRefunds for Bob are handled by Bob's bank.\n")
    hits = search(file_ids=[f.id for f in corpus], query="refunds bank", k=10)
    assert theirs.id not in {hit.file_id for hit in hits}


HOSTILE = [
    'refund "unbalanced',
    "refund AND OR NOT shipping",
    "NEAR(refund shipping, 2)",
    "NEAR(",
    "*",
    "refund*",
    "^refund",
    "text:refund",
    "(((refund",
    "-refund +shipping",
    "'; DROP TABLE agents_chunk; --",
    "refund\x00shipping",
    "lone \ud800 surrogate refund",
    "Rückerstattung 東京 🚀 naïve café refund",
    "???!!!...",
    "",
    "   ",
    "AND",
    "OR OR OR",
    '"" "',
    "refund " * 2000,
    "!@#$%^&*()_+{}|:<>?~`-=[]\\;',./",
]


@pytest.mark.parametrize("question", HOSTILE, ids=range(len(HOSTILE)))
def test_no_question_can_make_retrieval_fail(corpus, question):
    hits = search(file_ids=[f.id for f in corpus], query=question, k=5)
    # ("-refund" is websearch syntax for "without refund" on PostgreSQL, and kept as such.)
    if "refund" in question.lower() and "-refund" not in question:
        assert hits and "efund" in hits[0].text
    assert Chunk.objects.count() > 0  # and nothing was dropped


def test_the_fts5_expression_quotes_every_word_and_ors_them():
    assert fts5_match_expression('How do "refunds" AND NEAR(x) work*?') == '"refunds" OR "near" OR "x" OR "work"'
    assert fts5_match_expression("?!") is None
    assert query_terms("the and of") == ["the", "and", "of"], "only stop words: keep them rather than nothing"
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == 32


# ---------------------------------------------------------------- the index stays in step


def fts_rowids() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rowid FROM agents_chunk_fts WHERE agents_chunk_fts MATCH %s", ['"refunds"'])
        return {row[0] for row in cursor.fetchall()}


def assert_index_in_step() -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            # Raises "database disk image is malformed" when index and content disagree.
            cursor.execute("INSERT INTO agents_chunk_fts(agents_chunk_fts, rank) VALUES ('integrity-check', 1)")
        expected = set(Chunk.objects.filter(text__icontains="refunds").values_list("id", flat=True))
        assert fts_rowids() == expected


def test_the_index_follows_ingest_reingest_delete_and_cascades(alice, bob, corpus):
    assert_index_in_step()
    handbook = corpus[0]
    services.knowledge_file_requeue(files=[handbook])
    assert ingest_file.call(str(handbook.id)) == "ready"
    assert Chunk.objects.filter(file=handbook).count() == handbook.chunk_count
    assert_index_in_step()
    services.knowledge_file_delete(file=handbook)
    assert_index_in_step()
    ingest(bob.user, "refunds.txt", b"Refunds for everyone.")
    alice.user.delete()  # cascades to alice's files and chunks
    assert_index_in_step()
    assert len(search(file_ids=KnowledgeFile.objects.values_list("id", flat=True), query="refunds", k=5)) == 1


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the FTS5 index is SQLite's")
def test_the_sqlite_index_and_its_triggers_exist(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE name LIKE 'agents_chunk_fts%%'")
        names = {row[0] for row in cursor.fetchall()}
    assert {
        "agents_chunk_fts", "agents_chunk_fts_insert", "agents_chunk_fts_delete", "agents_chunk_fts_update"
    } <= names


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the tsvector index is PostgreSQL's")
def test_the_postgresql_column_and_gin_index_exist(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'agents_chunk_search_gin'")
        (definition,) = cursor.fetchone()
        cursor.execute(
            "SELECT generation_expression FROM information_schema.columns "
            "WHERE table_name = 'agents_chunk' AND column_name = 'search_vector'"
        )
        (expression,) = cursor.fetchone()
    assert "gin (search_vector)" in definition.lower()
    assert "to_tsvector('english'" in expression


# ---------------------------------------------------------------- bounded work on large corpora


def test_within_budget_keeps_the_rarest_terms_that_fit(monkeypatch):
    from agents.knowledge import search as module

    monkeypatch.setattr(module, "RANK_BUDGET_ROWS", 100)
    counts = {"common": 90, "rare": 3, "uncommon": 40, "absent": 0}
    assert module.within_budget(list(counts), counts.__getitem__) == ["absent", "rare", "uncommon"]
    assert module.within_budget(["common", "huge"], {"common": 500, "huge": 900}.__getitem__) == ["common"]


def test_a_word_in_too_many_chunks_does_not_pick_candidates(alice, monkeypatch):
    """With a tiny budget, "common" (in 12 chunks) is left out and only "rare" chunks are ranked."""
    from agents.knowledge import search as module

    paragraphs = [f"Entry {i}: a common remark about item number {i}." for i in range(12)]
    paragraphs += ["A rare sighting of a comet.", "Another rare event: an eclipse."]
    text = "\n\n".join(f"# Note {i}\n\n{p}" for i, p in enumerate(paragraphs)).encode()
    file = ingest(alice.user, "notes.md", text)
    assert len(search(file_ids=[file.id], query="common rare", k=20)) == 14
    monkeypatch.setattr(module, "RANK_BUDGET_ROWS", 3)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE agents_chunk")  # the estimates come from the planner's statistics
        monkeypatch.setattr(module, "_stats", {})
    hits = search(file_ids=[file.id], query="common rare", k=20)
    assert sorted(hit.text.split("\n\n")[1] for hit in hits) == sorted(paragraphs[-2:])
