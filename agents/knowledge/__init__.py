"""Knowledge: files an agent's owner uploads, turned into citable, searchable chunks.

Extraction is pure functions with no Django dependency, so they are easy to
test and safe to run inside a background task:

* `sniff.detect(name, head, size)` decides a file's kind or refuses it.
* `parsing.parse(kind, data)` extracts its text as positioned sections.
* `chunking.chunk(sections)` splits those into overlapping chunks.
* `pipeline.extract(name, data)` runs all three.

The Django side (models live in agents.models):

* `services`: upload (sniff, dedupe, store), ingest, re-ingest, delete.
* `tasks.ingest_file`: the background task (django-tasks) that ingests a file.
* `search.search(file_ids, query, k)`: ranked full-text retrieval, SQLite FTS5
  or PostgreSQL full-text search depending on the database.
* `uploads`: the upload size fences; `api`/`serializers`: /v1/combo/files.

See docs/knowledge.md.
"""
