"""Turn an uploaded file's bytes into plain-text sections that can be cited.

`parse(kind, data)` takes a kind from `sniff.detect()` and returns a
`ParsedDocument`: the document's text split into `Section`s, each with the
position a citation should point at (a PDF page, a heading path, a CSV row
range) or None. Anything the uploader can fix — a password, a scan without a
text layer, a damaged or malicious file, invalid JSON — raises `ParseError`
with a message written for them.

Per kind:

* pdf: one section per page with text, position {"page": n} (1-based).
* docx, html: a section per heading, position {"heading": "Setup > Install"};
  text before the first heading has position None. Tables become one line per
  row with " | " between cells.
* markdown: the same, from ATX headings (# .. ######); fenced code blocks are
  left exactly as written and a "#" inside them is not a heading.
* csv: a section per run of up to CSV_ROWS_PER_SECTION data rows (fewer when
  the rows are long), each starting with the header row so it stands alone;
  position {"rows": "1-40"} counts data rows from 1, the header not included.
* json: the value pretty-printed with indent=2 so every key is searchable;
  JSON Lines one record per paragraph. Position None.
* text, code: the text as it is, position None.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html.parser import HTMLParser

import docx
import pypdf
from docx.document import Document as DocxDocument
from docx.table import Table
from docx.text.paragraph import Paragraph
from pypdf import PasswordType
from pypdf.errors import DependencyError

from agents.knowledge.encoding import decode_text

DEFAULT_MAX_CHARS = 20_000_000
DEFAULT_MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
MAX_ZIP_RATIO = 100
MAX_ZIP_MEMBERS = 10_000
CSV_ROWS_PER_SECTION = 40
# Keeps a CSV section (header included) inside one default-sized chunk (1,200
# characters), so every chunk carries its header.
CSV_SECTION_CHARS = 1000

# Below this size a member can't hurt, whatever its ratio: small, repetitive XML
# parts (styles, numbering) legitimately compress better than 100:1.
_RATIO_FLOOR_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Section:
    """A run of document text that shares one citable position."""

    text: str
    position: dict | None = None


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """The text of a document, in reading order."""

    sections: list[Section]
    pages: int | None
    characters: int


class ParseError(Exception):
    """The file can't be read; `message` tells the uploader what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse(
    kind: str,
    data: bytes,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_unzipped_bytes: int = DEFAULT_MAX_UNZIPPED_BYTES,
) -> ParsedDocument:
    """Extract the text of a document of the given kind (see `sniff.KINDS`).

    Raises ParseError for documents that can't be read, and ValueError for an
    unknown kind (a programming error, not the uploader's).
    """
    if kind == "pdf":
        sections, pages = _parse_pdf(data, max_chars)
        return _finish(sections, pages, max_chars)
    if kind == "docx":
        check_zip_safety(data, max_total_bytes=max_unzipped_bytes)
        return _finish(_parse_docx(data), None, max_chars)
    text_parser = _TEXT_PARSERS.get(kind)
    if text_parser is None:
        raise ValueError(f"unknown document kind: {kind!r}")
    return _finish(text_parser(_read_text(data, max_chars)), None, max_chars)


def _finish(sections: list[Section], pages: int | None, max_chars: int) -> ParsedDocument:
    sections = [section for section in sections if section.text.strip()]
    characters = sum(len(section.text) for section in sections)
    if characters > max_chars:
        raise _too_long(max_chars)
    if not characters:
        raise ParseError("This file contains no readable text.")
    return ParsedDocument(sections=sections, pages=pages, characters=characters)


def _too_long(max_chars: int) -> ParseError:
    return ParseError(
        f"This file has more than {max_chars:,} characters of text; split it into smaller files."
    )


def _read_text(data: bytes, max_chars: int) -> str:
    if b"\x00" in data:
        raise ParseError("This file contains binary data (NUL bytes) and can't be read as text.")
    text = decode_text(data)
    if len(text) > max_chars:
        raise _too_long(max_chars)
    return text


# ---------------------------------------------------------------- headings


class _HeadingPath:
    """The chain of headings above the current point, e.g. "Setup > Install"."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> dict | None:
        """Record a heading and return the position of the text under it."""
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        if title:
            self._stack.append((level, title))
        if not self._stack:
            return None
        return {"heading": " > ".join(title for _, title in self._stack)}


class _SectionBuilder:
    """Collects paragraphs into sections that start at each heading."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self._paragraphs: list[str] = []
        self._position: dict | None = None
        self._path = _HeadingPath()

    def heading(self, level: int, title: str) -> None:
        self._flush()
        self._position = self._path.enter(level, title)
        self.paragraph(title)

    def paragraph(self, text: str) -> None:
        if text.strip():
            self._paragraphs.append(text)

    def build(self) -> list[Section]:
        self._flush()
        return self.sections

    def _flush(self) -> None:
        text = "\n\n".join(self._paragraphs).strip()
        if text:
            self.sections.append(Section(text, self._position))
        self._paragraphs = []


# ---------------------------------------------------------------- plain text


def _parse_plain(text: str) -> list[Section]:
    return [Section(text.strip("\n").rstrip(), None)]


# ---------------------------------------------------------------- markdown

# Only heading and fence lines matter; finding them with one regex is much
# faster than looking at every line of a large document in Python.
_MD_SPECIAL_LINE = re.compile(
    r"^ {0,3}(?:"
    r"(?P<hashes>#{1,6})(?:[ \t]+(?P<title>.*?))?(?:[ \t]+#+)?[ \t]*"
    r"|(?P<fence>`{3,}|~{3,})(?P<info>.*)"
    r")$",
    re.MULTILINE,
)


def _parse_markdown(text: str) -> list[Section]:
    headings = _markdown_headings(text)
    starts = [start for start, _, _ in headings]
    sections = [Section(text[: starts[0]] if starts else text, None)]
    path = _HeadingPath()
    for i, (start, level, title) in enumerate(headings):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        sections.append(Section(text[start:end], path.enter(level, title)))
    return [Section(s.text.strip("\n").rstrip(), s.position) for s in sections]


def _markdown_headings(text: str) -> list[tuple[int, int, str]]:
    """(offset, level, title) of every ATX heading outside fenced code."""
    headings: list[tuple[int, int, str]] = []
    fence: tuple[str, int] | None = None
    for match in _MD_SPECIAL_LINE.finditer(text):
        marker = match.group("fence")
        if marker:
            fence = _next_fence_state(fence, marker, match.group("info"))
        elif fence is None:
            title = (match.group("title") or "").strip()
            headings.append((match.start(), len(match.group("hashes")), title))
    return headings


def _next_fence_state(
    fence: tuple[str, int] | None, marker: str, info: str
) -> tuple[str, int] | None:
    if fence is None:
        # CommonMark: a backtick fence's info string can't contain backticks.
        if marker[0] == "`" and "`" in info:
            return None
        return (marker[0], len(marker))
    closes = marker[0] == fence[0] and len(marker) >= fence[1] and not info.strip()
    return None if closes else fence


# ---------------------------------------------------------------- HTML

_HTML_SKIPPED = frozenset({"script", "style", "noscript", "template"})
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_HTML_BLOCKS = frozenset(
    "address article aside blockquote body caption dd details dialog div dl dt fieldset "
    "figcaption figure footer form header hgroup hr html main nav ol p section summary "
    "table tbody tfoot thead ul".split()
)
_HTML_LINES = frozenset({"br", "li", "tr"})
_HTML_CELLS = frozenset({"td", "th"})
_WHITESPACE = re.compile(r"\s+")


class _HtmlText(HTMLParser):
    """Collects an HTML page's visible text into heading sections."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._parts: list[str] = []
        self._position: dict | None = None
        self._path = _HeadingPath()
        self._newlines_owed = 0
        self._skip_depth = 0
        self._pre_depth = 0
        self._cells_in_row = 0
        self._heading_level: int | None = None
        self._heading_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_SKIPPED:
            self._skip_depth += 1
        elif self._skip_depth:
            return
        elif tag in _HTML_HEADINGS:
            self._close_heading()
            self._heading_level = _HTML_HEADINGS[tag]
            self._heading_parts = []
        elif tag == "pre":
            self._pre_depth += 1
            self._owe_newlines(2)
        elif tag in _HTML_BLOCKS:
            self._owe_newlines(2)
        elif tag in _HTML_LINES:
            self._owe_newlines(1)
            if tag == "tr":
                self._cells_in_row = 0
        elif tag in _HTML_CELLS:
            if self._cells_in_row:
                self._append(" | ")
            self._cells_in_row += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _HTML_SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif self._skip_depth:
            return
        elif tag in _HTML_HEADINGS:
            self._close_heading()
        elif tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)
            self._owe_newlines(2)
        elif tag in _HTML_BLOCKS:
            self._owe_newlines(2)
        elif tag in ("li", "tr"):
            self._owe_newlines(1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._heading_level is not None:
            self._heading_parts.append(data)
        elif self._pre_depth:
            self._append(data)
        else:
            self._append(_WHITESPACE.sub(" ", data))

    def finish(self) -> list[Section]:
        self.close()
        self._close_heading()
        self._flush()
        return self.sections

    def _owe_newlines(self, count: int) -> None:
        if self._heading_level is not None:
            self._heading_parts.append(" ")
        else:
            self._newlines_owed = max(self._newlines_owed, count)

    def _append(self, text: str) -> None:
        owed = self._newlines_owed if self._parts else 0
        at_line_start = owed or not self._parts or self._parts[-1].endswith(("\n", " "))
        if at_line_start and not self._pre_depth:
            text = text.lstrip(" ")
        if not text:
            return
        if owed:
            self._parts[-1] = self._parts[-1].rstrip(" ")
            self._parts.append("\n" * owed)
        self._newlines_owed = 0
        self._parts.append(text)

    def _close_heading(self) -> None:
        if self._heading_level is None:
            return
        title = _WHITESPACE.sub(" ", "".join(self._heading_parts)).strip()
        level, self._heading_level = self._heading_level, None
        self._flush()
        self._position = self._path.enter(level, title)
        self._append(title)
        self._owe_newlines(2)

    def _flush(self) -> None:
        text = "".join(self._parts).strip()
        if text:
            self.sections.append(Section(text, self._position))
        self._parts = []
        self._newlines_owed = 0


def _parse_html(text: str) -> list[Section]:
    parser = _HtmlText()
    parser.feed(text)
    return parser.finish()


# ---------------------------------------------------------------- CSV

_CSV_DELIMITERS = (",", "\t", ";", "|")


def _parse_csv(text: str) -> list[Section]:
    first_line = text.split("\n", 1)[0]
    delimiter = max(_CSV_DELIMITERS, key=first_line.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        return _csv_sections(reader, delimiter)
    except csv.Error as exc:
        raise ParseError(
            f"This CSV file couldn't be read (record {reader.line_num}: {exc}); "
            "check its quoting, or upload it as a .txt file."
        ) from exc


def _csv_sections(reader: Iterable[list[str]], delimiter: str) -> list[Section]:
    header: str | None = None
    sections: list[Section] = []
    rows: list[str] = []
    first_row = row_number = 0
    size = 0
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        line = _csv_line(record, delimiter)
        if header is None:
            header = line
            continue
        row_number += 1
        if rows and (len(rows) >= CSV_ROWS_PER_SECTION or size + len(line) > CSV_SECTION_CHARS):
            sections.append(_csv_section(header, rows, first_row))
            rows = []
        if not rows:
            first_row, size = row_number, len(header)
        rows.append(line)
        size += len(line) + 1
    if rows and header is not None:
        sections.append(_csv_section(header, rows, first_row))
    elif header is not None:
        sections.append(Section(header, None))
    return sections


def _csv_line(record: list[str], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerow(record)
    return out.getvalue().rstrip("\n")


def _csv_section(header: str, rows: list[str], first_row: int) -> Section:
    last_row = first_row + len(rows) - 1
    return Section("\n".join([header, *rows]), {"rows": f"{first_row}-{last_row}"})


# ---------------------------------------------------------------- JSON


def _parse_json(text: str) -> list[Section]:
    try:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise _invalid_json(exc, "This JSON file is invalid") from exc
            return _parse_json_lines(text)
        return [Section(_pretty_json(value), None)]
    except RecursionError:
        # Python's JSON reader and writer recurse once per level.
        raise ParseError(
            "This JSON file is nested too deeply to read (hundreds of levels of arrays or objects). "
            "Flatten it, or upload it as a .txt file."
        ) from None


def _parse_json_lines(text: str) -> list[Section]:
    records: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(_pretty_json(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise _invalid_json(exc, f"Line {number} of this JSON Lines file is invalid") from exc
    return [Section("\n\n".join(records), None)]


def _pretty_json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _invalid_json(exc: json.JSONDecodeError, what: str) -> ParseError:
    return ParseError(
        f"{what}: {exc.msg} at line {exc.lineno}, column {exc.colno}. "
        "Fix it, or upload it as a .txt file."
    )


_TEXT_PARSERS: dict[str, Callable[[str], list[Section]]] = {
    "text": _parse_plain,
    "code": _parse_plain,
    "markdown": _parse_markdown,
    "html": _parse_html,
    "csv": _parse_csv,
    "json": _parse_json,
}


# ---------------------------------------------------------------- PDF

_PDF_DAMAGED = (
    "This PDF is damaged and can't be read; open it in a PDF viewer, save or print it "
    "to a new PDF and upload that."
)


def _parse_pdf(data: bytes, max_chars: int) -> tuple[list[Section], int]:
    reader = _open_pdf(data)
    try:
        pages = list(reader.pages)
    except Exception as exc:  # pypdf raises many exception types on a broken page tree
        raise ParseError(_PDF_DAMAGED) from exc
    if not pages:
        raise ParseError(_PDF_DAMAGED)
    sections: list[Section] = []
    characters = failed = 0
    for number, page in enumerate(pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception:  # noqa: BLE001 - one broken page shouldn't lose the others
            failed += 1
            continue
        text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n").strip()
        if text:
            sections.append(Section(text, {"page": number}))
            characters += len(text)
            if characters > max_chars:  # stop early: extraction is the slow part
                raise _too_long(max_chars)
    if failed == len(pages):
        raise ParseError(_PDF_DAMAGED)
    if not sections:
        raise ParseError(
            "This PDF has no extractable text: it looks like scanned images, no text layer; "
            "OCR is not supported. Upload a PDF with selectable text, or the original document."
        )
    return sections, len(pages)


def _open_pdf(data: bytes) -> pypdf.PdfReader:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            _unlock_pdf(reader)
        return reader
    except ParseError:
        raise
    except Exception as exc:  # pypdf raises many exception types on corrupt files
        raise ParseError(_PDF_DAMAGED) from exc


def _unlock_pdf(reader: pypdf.PdfReader) -> None:
    # Many PDFs are "encrypted" only to restrict printing or editing, with an
    # empty password for reading; those open fine.
    try:
        unlocked = reader.decrypt("")
    except DependencyError as exc:
        raise ParseError(
            "This PDF uses an encryption this server can't read; save an unprotected copy "
            "and upload that."
        ) from exc
    if unlocked == PasswordType.NOT_DECRYPTED:
        raise ParseError(
            "This PDF is password-protected; remove the password (or print it to a new PDF) "
            "and upload it again."
        )


# ---------------------------------------------------------------- DOCX

_DOCX_DAMAGED = (
    "This DOCX file is damaged or isn't a real Word document; open it in Word, save it "
    "as .docx and upload it again."
)
_HEADING_STYLE = re.compile(r"heading\s*([1-9])", re.IGNORECASE)


def check_zip_safety(
    data: bytes,
    *,
    max_total_bytes: int = DEFAULT_MAX_UNZIPPED_BYTES,
    max_ratio: int = MAX_ZIP_RATIO,
    max_members: int = MAX_ZIP_MEMBERS,
) -> None:
    """Refuse a DOCX container that is not a Word document or would unpack too far.

    The sizes come from the ZIP directory. They can't be used to smuggle more
    data past this check: zipfile (which python-docx uses) stops reading a
    member at its declared size.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ParseError(_DOCX_DAMAGED) from exc
    if len(members) > max_members:
        raise _zip_bomb(f"it holds more than {max_members:,} files")
    total = 0
    for member in members:
        total += member.file_size
        if total > max_total_bytes:
            raise _zip_bomb(f"it would unpack to more than {max_total_bytes // (1024 * 1024):,} MB")
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _RATIO_FLOOR_BYTES and ratio > max_ratio:
            raise _zip_bomb(f"one part is compressed more than {max_ratio}:1")
    if "word/document.xml" not in {member.filename for member in members}:
        raise ParseError(
            "This file isn't a Word document (it has no word/document.xml); open it in Word, "
            "save it as .docx and upload it again."
        )


def _zip_bomb(reason: str) -> ParseError:
    return ParseError(
        f"This DOCX file looks like a zip bomb ({reason}), so it won't be opened. "
        "Save the document again in Word and upload the new copy."
    )


def _parse_docx(data: bytes) -> list[Section]:
    try:
        return _docx_sections(docx.Document(io.BytesIO(data)))
    except Exception as exc:  # python-docx/lxml raise many types on malformed parts
        raise ParseError(_DOCX_DAMAGED) from exc


def _docx_sections(document: DocxDocument) -> list[Section]:
    builder = _SectionBuilder()
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            level = _docx_heading_level(block)
            if level is None:
                builder.paragraph(block.text.strip())
            else:
                builder.heading(level, _WHITESPACE.sub(" ", block.text).strip())
        elif isinstance(block, Table):
            builder.paragraph(_docx_table_text(block))
    return builder.build()


def _docx_heading_level(paragraph: Paragraph) -> int | None:
    name = paragraph.style.name if paragraph.style is not None else ""
    if name == "Title":
        return 0  # above "Heading 1", so chapters nest under the title
    match = _HEADING_STYLE.fullmatch(name or "")
    return int(match.group(1)) if match else None


def _docx_table_text(table: Table) -> str:
    lines = []
    for row in table.rows:
        cells = []
        previous = None
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans; show it once.
            if previous is not None and cell._tc is previous._tc:
                continue
            previous = cell
            cells.append(_WHITESPACE.sub(" ", cell.text).strip())
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_UNZIPPED_BYTES",
    "ParseError",
    "ParsedDocument",
    "Section",
    "check_zip_safety",
    "parse",
]
