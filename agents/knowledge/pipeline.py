"""Sniff, parse and chunk one uploaded file in a single call.

This is the whole knowledge-extraction path for a background ingestion task:
it has no side effects and raises `UnsupportedFile` (from sniffing) or
`ParseError` (from parsing), both carrying a message for the uploader.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.knowledge.chunking import DEFAULT_OVERLAP, DEFAULT_SIZE, Chunk, chunk
from agents.knowledge.parsing import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_UNZIPPED_BYTES,
    ParsedDocument,
    parse,
)
from agents.knowledge.sniff import HEAD_BYTES, detect

# Kinds where "# " at the start of a line is not a Markdown heading (comments in
# code, data in CSV/JSON), so it must not force a chunk break.
_NO_HEADING_KINDS = frozenset({"code", "csv", "json"})


@dataclass(frozen=True, slots=True)
class Extraction:
    """What one file yields: its kind, its parsed text and its chunks."""

    kind: str
    document: ParsedDocument
    chunks: list[Chunk]


def extract(
    name: str,
    data: bytes,
    *,
    size: int = DEFAULT_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_unzipped_bytes: int = DEFAULT_MAX_UNZIPPED_BYTES,
) -> Extraction:
    """Detect the kind of `data`, parse it and split it into chunks."""
    kind = detect(name, data[:HEAD_BYTES], len(data))
    document = parse(kind, data, max_chars=max_chars, max_unzipped_bytes=max_unzipped_bytes)
    chunks = chunk(
        document.sections,
        size=size,
        overlap=overlap,
        heading_breaks=kind not in _NO_HEADING_KINDS,
    )
    return Extraction(kind=kind, document=document, chunks=chunks)


__all__ = ["Extraction", "extract"]
