"""Split parsed sections into overlapping chunks for retrieval and citation.

`chunk(sections)` packs each section's paragraphs (blocks separated by blank
lines) into chunks of at most `size` characters:

* Whole paragraphs are packed until the next one would not fit; a paragraph is
  only split when it is longer than a chunk (at a sentence end, else a line
  break, else whitespace; mid-word only for a word longer than a chunk).
* Each chunk after the first in a section starts with about `overlap`
  characters from the end of the previous one, cut at a word boundary, so a
  passage that straddles a boundary is found whole in one of them.
* Chunks never cross a section boundary, so each has exactly one position.
* A Markdown heading line starts a new chunk (with no overlap), and a heading is
  never left alone at the end of a chunk: it stays with the text under it.
* A fenced code block (``` or ~~~) counts as one paragraph even if it contains
  blank lines.

Everything is character-based and deterministic. Sizes include the overlap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agents.knowledge.parsing import Section

DEFAULT_SIZE = 1200
DEFAULT_OVERLAP = 150

_PARAGRAPH_SEP = "\n\n"
_BLANK_LINES = re.compile(r"(\n(?:[ \t\r\f\v]*\n)+)")
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$", re.MULTILINE)
_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]|\n|$)")
# A sentence ends at . ! ? or … (plus closing quotes/brackets) before whitespace,
# or at CJK full stops, which are not followed by a space.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s)|[。！？]")
_SENTENCE_END_OF_LINE = re.compile(r"[.!?…。！？][\"'”’)\]]*(?=\n)")
_WORD_GAP = re.compile(r"\s+")
# A block with a line break at least every this many characters is line
# oriented (code, CSV, JSON, logs, hard-wrapped text): prefer cutting at lines.
_LINE_ORIENTED_CHARS = 200


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document small enough to embed and quote."""

    index: int
    text: str
    position: dict | None


def chunk(
    sections: Iterable[Section],
    *,
    size: int = DEFAULT_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    heading_breaks: bool = True,
) -> list[Chunk]:
    """Split sections into chunks of at most `size` characters.

    `overlap` must be between 0 and size // 2. Pass heading_breaks=False for
    source code, where a line starting with "# " is a comment, not a heading.
    """
    if size < 1:
        raise ValueError("size must be at least 1")
    if not 0 <= overlap <= size // 2:
        raise ValueError("overlap must be between 0 and size // 2")
    chunks: list[Chunk] = []
    for section in sections:
        packer = _Packer(size, overlap)
        for block in split_paragraphs(section.text):
            packer.add(block, is_heading=heading_breaks and _HEADING.match(block) is not None)
        for text in packer.finish():
            position = dict(section.position) if section.position is not None else None
            chunks.append(Chunk(index=len(chunks), text=text, position=position))
    return chunks


def split_paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks, with fenced code blocks kept whole."""
    parts = _BLANK_LINES.split(text)  # [block, separator, block, separator, ...]
    if "```" in text or "~~~" in text:
        parts = _join_fenced(parts)
    else:
        parts = parts[::2]
    blocks = []
    for part in parts:
        block = part.strip("\n").rstrip()
        if block.strip():
            blocks.append(block)
    return blocks


def _join_fenced(parts: list[str]) -> list[str]:
    blocks: list[str] = []
    fence: tuple[str, int] | None = None
    for i in range(0, len(parts), 2):
        if fence is not None and blocks:
            # Inside an open fence: glue on, keeping the original blank lines.
            blocks[-1] += parts[i - 1] + parts[i]
        else:
            blocks.append(parts[i])
        fence = _fence_after(parts[i], fence)
    return blocks


def _fence_after(block: str, fence: tuple[str, int] | None) -> tuple[str, int] | None:
    for match in _FENCE_LINE.finditer(block):
        marker, info = match.group(1), match.group(2)
        if fence is None:
            if not (marker[0] == "`" and "`" in info):
                fence = (marker[0], len(marker))
        elif marker[0] == fence[0] and len(marker) >= fence[1] and not info.strip():
            fence = None
    return fence


class _Packer:
    """Packs one section's blocks into chunk texts."""

    def __init__(self, size: int, overlap: int) -> None:
        self.size = size
        self.overlap = overlap
        self.done: list[str] = []
        self._parts: list[str] = []
        self._length = 0
        self._has_body = False  # anything besides the carried-over overlap
        self._heading_only = False  # the body so far is nothing but headings

    # -- public steps

    def add(self, block: str, *, is_heading: bool) -> None:
        if is_heading and not self._heading_only:
            # A heading starts a fresh chunk: no overlap from the text before it.
            self._flush(carry_overlap=False)
        heading_only = is_heading and (self._heading_only or not self._has_body)
        if len(block) <= self._room(_PARAGRAPH_SEP):
            self._append(block, _PARAGRAPH_SEP)
        elif len(block) <= self.size and not self._heading_only:
            self._flush(carry_overlap=True)
            self._shrink_overlap_for(len(block))
            self._append(block, _PARAGRAPH_SEP)
        else:
            self._add_long(block)
            heading_only = False
        self._heading_only = heading_only

    def finish(self) -> list[str]:
        self._flush(carry_overlap=False)
        return self.done

    # -- long blocks

    def _add_long(self, block: str) -> None:
        """Split a block that doesn't fit, filling chunks one after another."""
        if self._has_body and not self._heading_only:
            self._flush(carry_overlap=True)
        line_oriented = block.count("\n") * _LINE_ORIENTED_CHARS >= len(block)
        start, separator = 0, _PARAGRAPH_SEP
        while start < len(block):
            room = self._room(separator)
            cut = _find_cut(block, start, room, line_oriented) if room > 0 else None
            if cut is None:
                if self._make_room():
                    continue
                cut = start + room  # a single word longer than a whole chunk
            piece = block[start:cut].rstrip()
            if piece.strip():
                self._append(piece, separator)
            start = _next_start(block, cut)
            if start >= len(block):
                break
            separator = "\n" if "\n" in block[cut:start] else " "
            self._flush(carry_overlap=True)

    def _make_room(self) -> bool:
        """Free space when nothing fits at a word boundary; False if already empty."""
        if self._has_body:
            self._flush(carry_overlap=True)
            return True
        if self._length:
            self._reset()  # drop the overlap rather than cut a word
            return True
        return False

    # -- state

    def _room(self, separator: str) -> int:
        return self.size - self._length - (len(separator) if self._length else 0)

    def _append(self, text: str, separator: str) -> None:
        if self._length:
            self._parts.append(separator)
            self._length += len(separator)
        self._parts.append(text)
        self._length += len(text)
        self._has_body = True

    def _flush(self, *, carry_overlap: bool) -> None:
        if not self._has_body:
            if not carry_overlap:
                self._reset()
            return
        text = "".join(self._parts)
        self.done.append(text)
        self._reset()
        tail = _tail(text, self.overlap) if carry_overlap else ""
        if tail:
            self._parts, self._length = [tail], len(tail)

    def _shrink_overlap_for(self, needed: int) -> None:
        """Trim the carried overlap so a block of `needed` characters fits after it."""
        if self._has_body or not self._length or self._room(_PARAGRAPH_SEP) >= needed:
            return
        tail = _tail(self._parts[0], self.size - needed - len(_PARAGRAPH_SEP))
        self._reset()
        if tail:
            self._parts, self._length = [tail], len(tail)

    def _reset(self) -> None:
        self._parts, self._length = [], 0
        self._has_body = self._heading_only = False


def _tail(text: str, limit: int) -> str:
    """At most `limit` characters from the end of text, starting at a word."""
    if limit <= 0:
        return ""
    start = max(0, len(text) - limit)
    if start and not text[start - 1].isspace():
        gap = _WORD_GAP.search(text, start)
        if gap is None:
            return ""
        start = gap.end()
    return text[start:].lstrip()


def _find_cut(block: str, start: int, room: int, line_oriented: bool) -> int | None:
    """Where to end a piece of block[start:] of at most `room` characters.

    Returns None when the only choice would be to cut through a word.
    """
    end = start + room
    if end >= len(block):
        return len(block)
    half = start + room // 2
    sentence_line = _last_match_end(_SENTENCE_END_OF_LINE, block, half, end)
    if sentence_line is not None:
        return sentence_line
    line = block.rfind("\n", half + 1, end + 1)
    line_cut = line if line > start else None
    sentence = _last_match_end(_SENTENCE_END, block, half, end)
    preferred = (line_cut, sentence) if line_oriented else (sentence, line_cut)
    for cut in preferred:
        if cut is not None:
            return cut
    return _last_space(block, start, end)


def _last_match_end(pattern: re.Pattern[str], block: str, low: int, high: int) -> int | None:
    # endpos one past `high` lets the lookahead see the character after the window.
    last = None
    for match in pattern.finditer(block, low, high + 1):
        if match.end() <= high:
            last = match.end()
    return last


def _last_space(block: str, start: int, end: int) -> int | None:
    cut = max(
        block.rfind(" ", start + 1, end + 1),
        block.rfind("\n", start + 1, end + 1),
        block.rfind("\t", start + 1, end + 1),
    )
    return cut if cut > start else None


def _next_start(block: str, cut: int) -> int:
    """Skip the whitespace at a cut, keeping the indentation of a new line."""
    n = len(block)
    i = cut
    while i < n and block[i] in " \t":
        i += 1
    j = i
    while j < n and block[j] == "\n":
        j += 1
    return j if j > i else i


__all__ = ["DEFAULT_OVERLAP", "DEFAULT_SIZE", "Chunk", "chunk", "split_paragraphs"]
