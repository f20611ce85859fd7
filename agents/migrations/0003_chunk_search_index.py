"""The full-text index over Chunk.text, one per database vendor (agents.knowledge.search).

SQLite: an FTS5 table with external content (it stores only the index and reads
text from agents_chunk by rowid = Chunk.id), kept in sync by triggers, so every
path that writes chunks (ingestion, file deletion, a cascade from deleting a
user, the admin) updates the index in the same transaction. The porter
tokenizer stems English, like PostgreSQL's 'english' configuration.

PostgreSQL: a stored generated tsvector column and a GIN index on it; the
column is computed by the database on every insert or update.

Beware: on SQLite, a later migration that alters agents_chunk makes Django
rebuild the table, which drops these triggers; such a migration must create
them again (tests/knowledge/test_search.py checks that they exist).
"""

from django.db import migrations

SQLITE_FORWARD = [
    """
    CREATE VIRTUAL TABLE agents_chunk_fts USING fts5(
        text, content='agents_chunk', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER agents_chunk_fts_insert AFTER INSERT ON agents_chunk BEGIN
        INSERT INTO agents_chunk_fts(rowid, text) VALUES (new.id, new.text);
    END
    """,
    """
    CREATE TRIGGER agents_chunk_fts_delete AFTER DELETE ON agents_chunk BEGIN
        INSERT INTO agents_chunk_fts(agents_chunk_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END
    """,
    """
    CREATE TRIGGER agents_chunk_fts_update AFTER UPDATE OF text ON agents_chunk BEGIN
        INSERT INTO agents_chunk_fts(agents_chunk_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO agents_chunk_fts(rowid, text) VALUES (new.id, new.text);
    END
    """,
    # Chunks written before this migration (none in practice) join the index.
    "INSERT INTO agents_chunk_fts(agents_chunk_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS agents_chunk_fts_update",
    "DROP TRIGGER IF EXISTS agents_chunk_fts_delete",
    "DROP TRIGGER IF EXISTS agents_chunk_fts_insert",
    "DROP TABLE IF EXISTS agents_chunk_fts",
]

POSTGRES_FORWARD = [
    """
    ALTER TABLE agents_chunk ADD COLUMN search_vector tsvector
        GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED
    """,
    # The retrieval query: chunks whose search_vector matches the question (@@).
    "CREATE INDEX agents_chunk_search_gin ON agents_chunk USING GIN (search_vector)",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS agents_chunk_search_gin",
    "ALTER TABLE agents_chunk DROP COLUMN IF EXISTS search_vector",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("agents", "0002_knowledge")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
    ]
