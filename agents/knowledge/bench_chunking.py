"""Measure end-to-end extraction speed (sniff + parse + chunk) on plain text.

Run from the repository root:  python -m agents.knowledge.bench_chunking
It generates a deterministic 20 MB plain-text document (prose paragraphs of
varying length, some longer than a chunk) and prints the throughput in MB/s.
"""

from __future__ import annotations

import argparse
import random
import time

from agents.knowledge.pipeline import extract

_WORDS = (
    "the agent answers questions from files uploaded by its owner and cites the passage "
    "it used configuration install server request response token model embedding vector "
    "search index document paragraph sentence heading section page table row column "
    "customer invoice refund policy shipping warranty support account password network"
).split()


def make_document(target_bytes: int, seed: int = 7) -> bytes:
    """Deterministic prose: paragraphs of 1-25 sentences separated by blank lines."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < target_bytes:
        sentences = []
        for _ in range(rng.randint(1, 25)):
            words = rng.choices(_WORDS, k=rng.randint(4, 24))
            sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs).encode("utf-8")[:target_bytes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=20.0, help="document size in MB")
    parser.add_argument("--runs", type=int, default=3, help="report the best of N runs")
    args = parser.parse_args()
    data = make_document(int(args.mb * 1_000_000))
    best = float("inf")
    result = None
    for _ in range(args.runs):
        started = time.perf_counter()
        result = extract("bench.txt", data)
        best = min(best, time.perf_counter() - started)
    assert result is not None
    megabytes = len(data) / 1_000_000
    print(
        f"{megabytes:.1f} MB plain text -> {len(result.chunks):,} chunks "
        f"in {best:.2f} s: {megabytes / best:.1f} MB/s"
    )


if __name__ == "__main__":
    main()
