"""Benchmark: knowledge ingestion throughput and retrieval latency, on SQLite and PostgreSQL.

    .venv/bin/python bench/knowledge.py                 # both backends, 10k and 100k chunks
    .venv/bin/python bench/knowledge.py --backends sqlite --sizes 10000

For each backend it starts a child process with a fresh data folder (and, for
PostgreSQL, a fresh database on COMBO_BENCH_POSTGRES_URL, default
postgres://postgres@127.0.0.1:5432, dropped afterwards), migrates it, and:

* ingest: uploads generated plain-text documents (~2 MB each) through the real
  upload service and runs the real ingestion function on each (sniff, parse,
  chunk, and the chunk + full-text index writes in their transaction). MB/s is
  text bytes over the time spent in the ingestion function.
* retrieval: once the corpus holds N chunks, asks questions through
  agents.knowledge_hooks.retrieve_passages (what a completion calls: the
  agent's ready files, then search() with k=COMBO_RETRIEVAL_TOP_K) for an agent
  attached to every file, i.e. searching all N chunks. p50/p99 over the
  questions, after a warm-up.

The text is synthetic but shaped like prose: English function words plus a
30,000-word vocabulary drawn from a Zipf distribution (a few very common words,
a long tail of rare ones), in sentences and paragraphs. Questions look like
questions ("how do i ... the ..."), their content words drawn from the
moderately common part of the vocabulary. Targets (issue 5): retrieval p99
under 50 ms at 100,000 chunks on both backends; ingestion at least 5 MB/s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("COMBO_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
DOCUMENT_BYTES = 2_000_000
QUESTIONS = 300
WARM_UP = 30

FUNCTION_WORDS = (
    "the of and to a in is that for it as with was on be by this are or from at which an have not "
    "but they his all has were we can one there been if more when will would who so no"
).split()
ONSETS = "b c d f g h j k l m n p r s t v w z br cl dr fl gr pl st tr sh ch".split()
VOWELS = "a e i o u ai ea ou io".split()
CODAS = ["", "n", "r", "s", "t", "l", "nd", "st", "rk", "m"]


def vocabulary(size: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.choice((1, 2, 2, 3, 3, 4))
        words.add("".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)))
    return sorted(words)


class Prose:
    """Deterministic Zipf-distributed prose and questions."""

    def __init__(self, seed: int = 11, vocabulary_size: int = 30_000) -> None:
        self.rng = random.Random(seed)
        self.words = FUNCTION_WORDS + vocabulary(vocabulary_size)
        weights = [1.0 / (rank + 1) ** 1.07 for rank in range(len(self.words))]
        self.cumulative = list(itertools.accumulate(weights))

    def document(self, target_bytes: int) -> bytes:
        paragraphs, size = [], 0
        while size < target_bytes:
            sentences = []
            for _ in range(self.rng.randint(2, 9)):
                words = self.rng.choices(self.words, cum_weights=self.cumulative, k=self.rng.randint(6, 28))
                sentences.append(" ".join(words).capitalize() + self.rng.choice(".!?"))
            paragraph = " ".join(sentences)
            paragraphs.append(paragraph)
            size += len(paragraph) + 2
        return "\n\n".join(paragraphs).encode()[:target_bytes]

    def question(self) -> str:
        content = self.words[len(FUNCTION_WORDS) + 50 : len(FUNCTION_WORDS) + 5000]
        picked = self.rng.sample(content, self.rng.randint(2, 4))
        opener = self.rng.choice(("how do i", "what is the", "why does the", "where can i find the", "when is"))
        return f"{opener} {' '.join(picked)}?"


# ---------------------------------------------------------------- the child: one backend


def run_backend(sizes: list[int]) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "combo.settings")
    django.setup()
    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import User
    from agents.knowledge.services import knowledge_file_ingest, knowledge_file_upload
    from agents.knowledge_hooks import retrieve_passages
    from agents.models import Agent, Chunk

    call_command("migrate", verbosity=0)
    owner = User.objects.create_user(username="bench")
    agent = Agent.objects.create(owner=owner, name="bench")
    prose = Prose()
    result = {"vendor": connection.vendor, "chunk_size": settings.COMBO_CHUNK_SIZE, "levels": []}
    ingest_bytes = ingest_seconds = 0.0
    chunks = 0
    for target in sorted(sizes):
        while chunks < target:
            # The last document of a level is cut to land near the target size.
            per_chunk = ingest_bytes / chunks if chunks else 800
            data = prose.document(int(min(DOCUMENT_BYTES, max(20_000, (target - chunks) * per_chunk * 1.01))))
            upload = SimpleUploadedFile(f"doc-{uuid.uuid4().hex[:8]}.txt", data)
            file, _ = knowledge_file_upload(owner=owner, upload=upload, agent=agent)
            started = time.perf_counter()
            outcome = knowledge_file_ingest(file_id=file.id)
            ingest_seconds += time.perf_counter() - started
            ingest_bytes += len(data)
            assert outcome == "ready", outcome
            chunks = Chunk.objects.count()
            print(f"  {connection.vendor}: {chunks:,} chunks", file=sys.stderr, flush=True)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE agents_chunk")
        questions = [prose.question() for _ in range(WARM_UP + QUESTIONS)]
        latencies, empty = [], 0
        for index, question in enumerate(questions):
            started = time.perf_counter()
            found = retrieve_passages(agent=agent, question=question)
            elapsed = time.perf_counter() - started
            if index >= WARM_UP:
                latencies.append(elapsed * 1000)
                empty += not found
        latencies.sort()
        result["levels"].append(
            {
                "chunks": chunks,
                "p50_ms": statistics.median(latencies),
                "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
                "max_ms": latencies[-1],
                "questions": len(latencies),
                "without_hits": empty,
            }
        )
    result["ingest_mb"] = ingest_bytes / 1_000_000
    result["ingest_mb_per_s"] = ingest_bytes / 1_000_000 / ingest_seconds
    return result


# ---------------------------------------------------------------- the parent


def postgres_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=3):
            return None
    except Exception as exc:  # any failure means: not here
        return f"{type(exc).__name__}: {exc}".strip()


def child(backend: str, sizes: list[int]) -> dict | str:
    data_dir = tempfile.mkdtemp(prefix=f"combo-bench-{backend}-")
    env = {**os.environ, "COMBO_DATA_DIR": data_dir, "DJANGO_SETTINGS_MODULE": "combo.settings"}
    env.pop("DATABASE_URL", None)
    database = None
    if backend == "postgresql":
        reason = postgres_reason()
        if reason:
            return f"skipped: PostgreSQL not reachable at {POSTGRES} ({reason})"
        import psycopg

        database = f"combo_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        env["DATABASE_URL"] = f"{POSTGRES}/{database}"
    try:
        output = subprocess.run(
            [sys.executable, __file__, "--child", "--sizes", ",".join(map(str, sizes))],
            cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True,
        ).stdout
        return json.loads(output.strip().splitlines()[-1])
    finally:
        if database:
            import psycopg

            with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def table(results: dict[str, dict | str]) -> str:
    lines = [
        "| backend | chunks | retrieval p50 | retrieval p99 | max | questions without hits | ingest |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, result in results.items():
        if isinstance(result, str):
            lines.append(f"| {backend} | {result} | | | | | |")
            continue
        for level in result["levels"]:
            lines.append(
                f"| {backend} | {level['chunks']:,} | {level['p50_ms']:.1f} ms | {level['p99_ms']:.1f} ms "
                f"| {level['max_ms']:.1f} ms | {level['without_hits']}/{level['questions']} "
                f"| {result['ingest_mb_per_s']:.1f} MB/s ({result['ingest_mb']:.0f} MB) |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="10000,100000", help="corpus sizes in chunks")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(run_backend(sizes)))
        return 0
    results = {}
    for backend in args.backends.split(","):
        print(f"{backend}: building {max(sizes):,} chunks ...", file=sys.stderr, flush=True)
        results[backend] = child(backend, sizes)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
