"""Decide what kind of document an uploaded file is, from its content and name.

`detect()` looks at the first bytes of a file (at least `HEAD_BYTES` of them)
and its name, and returns the kind the parser should use, or raises
`UnsupportedFile` with a reason code and a message the uploader can act on.

Rules, in order:

1. An empty (or whitespace-only) file is `file_empty`.
2. Magic bytes win over the name. `%PDF-` is a PDF (also without an extension);
   a ZIP is accepted only when named .docx (the parser then checks it really is
   one); executables, images, archives, audio/video, old Office files,
   databases and RTF are never accepted.
3. When the name claims a kind we accept but the content is something else
   (a PDF named .txt, an executable named .pdf, binary data named .csv), or the
   content is a kind we accept under another name (a DOCX named .zip), the
   reason is `file_content_mismatch`: the name is wrong, or it is the wrong file.
   When the name claims nothing we accept, it is `file_type_unsupported`.
4. Text kinds must decode as UTF-8 (BOM allowed; Windows-1252/Latin-1 fallback
   only without NUL bytes) and must not look binary. A text file with no or an
   unknown extension is "text" (or "code" if it starts with a #! line).
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.knowledge.encoding import UTF16_BOMS, decode_head

#: How many leading bytes `detect()` should be given.
HEAD_BYTES = 8192

KINDS = ("text", "markdown", "html", "pdf", "docx", "csv", "json", "code")

REASON_EMPTY = "file_empty"
REASON_UNSUPPORTED = "file_type_unsupported"
REASON_MISMATCH = "file_content_mismatch"

_CODE_EXTENSIONS = (
    ".py .js .ts .tsx .jsx .java .go .rs .c .h .cpp .hpp .cs .rb .php .swift .kt "
    ".scala .sh .sql .yaml .yml .toml .ini .css .scss .xml"
).split()

#: Accepted file extensions and the kind each one means.
EXTENSION_KINDS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    **{ext: "code" for ext in _CODE_EXTENSIONS},
}

_ACCEPTED_SUMMARY = "text, Markdown, HTML, PDF, DOCX, CSV, JSON or source code"


class UnsupportedFile(Exception):
    """The file can't be used as knowledge; `message` tells the uploader why."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True, slots=True)
class _Format:
    """A binary format recognised by its magic bytes."""

    key: str
    description: str  # reads after "This file is ..."
    advice: str


_ADVICE_EXECUTABLE = "Programs can't be used as knowledge; upload documents instead."
_ADVICE_IMAGE = (
    "Images aren't supported (there is no OCR); upload the text as a PDF with "
    "selectable text, a DOCX or a text file."
)
_ADVICE_ARCHIVE = "Extract it and upload the files inside one by one."
_ADVICE_MEDIA = "Audio and video aren't supported; upload a transcript as a text file."

_PDF = _Format("pdf", "a PDF", "")
_ZIP = _Format("zip", "a ZIP archive", _ADVICE_ARCHIVE)
_DOCX = _Format("docx", "a Word document (DOCX)", "")
_XLSX = _Format("xlsx", "an Excel workbook", "Export the sheet as CSV and upload that.")
_PPTX = _Format("pptx", "a PowerPoint presentation", "Export it as PDF and upload that.")
_ODF = _Format("odf", "an OpenDocument file", "Save it as DOCX or PDF and upload that.")
_EPUB = _Format("epub", "an EPUB e-book", "Convert it to PDF and upload that.")

# (offset, magic bytes, format). Checked in order; the first match wins.
_MAGIC: tuple[tuple[int, bytes, _Format], ...] = (
    (0, b"%PDF-", _PDF),
    (0, b"PK\x03\x04", _ZIP),
    (0, b"PK\x05\x06", _ZIP),  # an empty archive
    (0, b"PK\x07\x08", _ZIP),  # a spanned archive
    (0, b"\x7fELF", _Format("elf", "an executable program (ELF)", _ADVICE_EXECUTABLE)),
    (
        0,
        b"\xfe\xed\xfa\xce",
        _Format("macho", "an executable program (Mach-O)", _ADVICE_EXECUTABLE),
    ),
    (
        0,
        b"\xfe\xed\xfa\xcf",
        _Format("macho", "an executable program (Mach-O)", _ADVICE_EXECUTABLE),
    ),
    (
        0,
        b"\xce\xfa\xed\xfe",
        _Format("macho", "an executable program (Mach-O)", _ADVICE_EXECUTABLE),
    ),
    (
        0,
        b"\xcf\xfa\xed\xfe",
        _Format("macho", "an executable program (Mach-O)", _ADVICE_EXECUTABLE),
    ),
    (
        0,
        b"\xca\xfe\xba\xbe",
        _Format("macho", "a compiled program (Mach-O or Java class)", _ADVICE_EXECUTABLE),
    ),
    (0, b"\x00asm", _Format("wasm", "a WebAssembly program", _ADVICE_EXECUTABLE)),
    (0, b"\x89PNG\r\n\x1a\n", _Format("png", "a PNG image", _ADVICE_IMAGE)),
    (0, b"\xff\xd8\xff", _Format("jpeg", "a JPEG image", _ADVICE_IMAGE)),
    (0, b"GIF87a", _Format("gif", "a GIF image", _ADVICE_IMAGE)),
    (0, b"GIF89a", _Format("gif", "a GIF image", _ADVICE_IMAGE)),
    (0, b"II*\x00", _Format("tiff", "a TIFF image", _ADVICE_IMAGE)),
    (0, b"MM\x00*", _Format("tiff", "a TIFF image", _ADVICE_IMAGE)),
    (0, b"\x00\x00\x01\x00", _Format("ico", "an icon image", _ADVICE_IMAGE)),
    (0, b"8BPS", _Format("psd", "a Photoshop image", _ADVICE_IMAGE)),
    (0, b"\x1f\x8b", _Format("gzip", "a gzip archive", _ADVICE_ARCHIVE)),
    (0, b"7z\xbc\xaf\x27\x1c", _Format("7z", "a 7-Zip archive", _ADVICE_ARCHIVE)),
    (0, b"Rar!\x1a\x07", _Format("rar", "a RAR archive", _ADVICE_ARCHIVE)),
    (0, b"\xfd7zXZ\x00", _Format("xz", "an xz archive", _ADVICE_ARCHIVE)),
    (0, b"\x28\xb5\x2f\xfd", _Format("zstd", "a Zstandard archive", _ADVICE_ARCHIVE)),
    (257, b"ustar", _Format("tar", "a tar archive", _ADVICE_ARCHIVE)),
    (
        0,
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        _Format(
            "ole",
            "an older Office file (.doc, .xls or .ppt) or a password-protected Office document",
            "Open it in Office, remove any password and save it as .docx "
            "(or CSV for a spreadsheet).",
        ),
    ),
    (
        0,
        b"SQLite format 3\x00",
        _Format("sqlite", "a SQLite database", "Export the data as CSV or JSON."),
    ),
    (0, b"{\\rtf", _Format("rtf", "an RTF document", "Save it as .docx or PDF and upload that.")),
    (0, b"ID3", _Format("mp3", "an audio file", _ADVICE_MEDIA)),
    (0, b"OggS", _Format("ogg", "an audio or video file", _ADVICE_MEDIA)),
    (0, b"fLaC", _Format("flac", "an audio file", _ADVICE_MEDIA)),
    (4, b"ftyp", _Format("mp4", "a video, audio or HEIC image file", _ADVICE_MEDIA)),
    (0, b"\x1aE\xdf\xa3", _Format("mkv", "a video file", _ADVICE_MEDIA)),
)

_EXECUTABLE_PE = _Format("pe", "a Windows program (EXE/DLL)", _ADVICE_EXECUTABLE)
_BITMAP = _Format("bmp", "a BMP image", _ADVICE_IMAGE)
_RIFF_KINDS = {
    b"WEBP": _Format("webp", "a WebP image", _ADVICE_IMAGE),
    b"WAVE": _Format("wav", "an audio file", _ADVICE_MEDIA),
    b"AVI ": _Format("avi", "a video file", _ADVICE_MEDIA),
}

# Extensions of formats we know and refuse, with what to do instead. Used when
# the content itself wasn't recognised (or is plain text under a binary name).
_UNSUPPORTED_EXTENSIONS: dict[str, str] = {
    **dict.fromkeys(
        ".png .jpg .jpeg .gif .webp .bmp .tif .tiff .heic .ico .psd".split(), _ADVICE_IMAGE
    ),
    **dict.fromkeys(".zip .gz .tgz .bz2 .xz .7z .rar .tar .zst".split(), _ADVICE_ARCHIVE),
    **dict.fromkeys(
        ".exe .dll .so .dylib .msi .dmg .iso .class .jar .wasm .o .a".split(), _ADVICE_EXECUTABLE
    ),
    **dict.fromkeys(".mp3 .wav .flac .ogg .m4a .mp4 .mov .avi .mkv .webm".split(), _ADVICE_MEDIA),
    ".doc": "Open it in Word and save it as .docx.",
    ".xls": _XLSX.advice,
    ".xlsx": _XLSX.advice,
    ".ods": _XLSX.advice,
    ".ppt": _PPTX.advice,
    ".pptx": _PPTX.advice,
    ".odp": _PPTX.advice,
    ".odt": _ODF.advice,
    ".rtf": "Save it as .docx or PDF and upload that.",
    ".pages": "Export it as PDF or DOCX and upload that.",
    ".epub": _EPUB.advice,
    ".sqlite": "Export the data as CSV or JSON.",
    ".db": "Export the data as CSV or JSON.",
}


def detect(name: str, head: bytes, size: int) -> str:
    """Return the document kind of a file, or raise `UnsupportedFile`.

    `name` is the uploaded file name, `head` its first bytes (pass at least
    `HEAD_BYTES`, or the whole file if smaller) and `size` its full length.
    """
    if size <= 0 or not head:
        raise UnsupportedFile(REASON_EMPTY, "This file is empty; upload a file with some content.")
    ext = extension(name)
    found = identify_format(head)
    if found is not None:
        return _detect_binary(ext, found)
    return _detect_textual(ext, head, complete=len(head) >= size)


def extension(name: str) -> str:
    """The lower-cased extension of a file name ("" if none), ignoring folders."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip().rstrip(".").lower()
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:  # "README" or ".bashrc"
        return ""
    return "." + ext


def identify_format(head: bytes) -> _Format | None:
    """Recognise a binary format by its magic bytes; None for anything else."""
    for offset, magic, fmt in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return _identify_zip(head) if fmt is _ZIP else fmt
    # Two-letter signatures need a second look: plenty of text starts with "MZ" or "BM".
    if head.startswith(b"MZ") and b"\x00" in head[2:64]:
        return _EXECUTABLE_PE
    if head.startswith(b"BM") and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return _BITMAP
    if head.startswith(b"RIFF"):
        return _RIFF_KINDS.get(head[8:12])
    return None


def _identify_zip(head: bytes) -> _Format:
    # Office files are ZIPs; the member names in the first local headers give
    # the flavour away. The parser checks for word/document.xml properly later.
    if b"word/" in head:
        return _DOCX
    if b"xl/" in head:
        return _XLSX
    if b"ppt/" in head:
        return _PPTX
    if b"mimetypeapplication/epub+zip" in head:
        return _EPUB
    if b"mimetypeapplication/vnd.oasis.opendocument" in head:
        return _ODF
    return _ZIP


def _detect_binary(ext: str, found: _Format) -> str:
    claimed = EXTENSION_KINDS.get(ext)
    names_nothing = claimed is None and ext not in _UNSUPPORTED_EXTENSIONS
    if found.key == "pdf":
        if claimed == "pdf" or names_nothing:
            return "pdf"
        raise UnsupportedFile(
            REASON_MISMATCH, f"This file is a PDF but is named {ext}; rename it to .pdf."
        )
    if claimed == "docx" and found.key in ("docx", "zip"):
        # A ZIP is only ever accepted under a .docx name. One without visible
        # word/ parts is let through too: the parser checks its parts properly.
        return "docx"
    if found.key == "docx":
        named = f"is named {ext}" if ext else "has no extension"
        raise UnsupportedFile(
            REASON_MISMATCH,
            f"This file is a Word document (DOCX) but {named}; rename it to .docx.",
        )
    if claimed is not None:
        raise UnsupportedFile(
            REASON_MISMATCH,
            f"This file is named {ext} but is actually {found.description}. {found.advice}",
        )
    raise UnsupportedFile(
        REASON_UNSUPPORTED,
        f"This file is {found.description}, which can't be used as knowledge. {found.advice}",
    )


def _detect_textual(ext: str, head: bytes, *, complete: bool) -> str:
    text = decode_head(head, complete=complete)
    if text is not None and complete and not text.strip():
        raise UnsupportedFile(
            REASON_EMPTY, "This file contains only blank space; upload a file with some content."
        )
    claimed = EXTENSION_KINDS.get(ext)
    if ext in _UNSUPPORTED_EXTENSIONS:
        return _refuse_binary_name(ext, is_text=text is not None)
    if claimed in ("pdf", "docx"):
        raise UnsupportedFile(REASON_MISMATCH, _not_really(ext, is_text=text is not None))
    if text is None:
        raise _not_text(ext, claimed, head)
    if claimed is not None:
        return claimed
    return "code" if text.startswith("#!") else "text"


def _refuse_binary_name(ext: str, *, is_text: bool) -> str:
    if is_text:
        raise UnsupportedFile(
            REASON_MISMATCH,
            f"This file is named {ext} but contains plain text; rename it to .txt "
            "(or the extension that matches its content) and upload it again.",
        )
    raise UnsupportedFile(
        REASON_UNSUPPORTED,
        f"{ext} files can't be used as knowledge. {_UNSUPPORTED_EXTENSIONS[ext]}",
    )


def _not_really(ext: str, *, is_text: bool) -> str:
    label = "PDF" if ext == ".pdf" else "Word document"
    if is_text:
        return (
            f"This file is named {ext} but contains plain text, not a {label}; "
            "rename it to .txt (or the extension that matches its content)."
        )
    if ext == ".pdf":
        return (
            "This file is named .pdf but isn't a PDF (it doesn't start with %PDF-); "
            "it may be damaged. Export the document as PDF again and upload that."
        )
    return (
        "This file is named .docx but isn't a Word document; it may be damaged. "
        "Open it in Word, save it as .docx and upload it again."
    )


def _not_text(ext: str, claimed: str | None, head: bytes) -> UnsupportedFile:
    if head.startswith(UTF16_BOMS):
        return UnsupportedFile(
            REASON_UNSUPPORTED,
            "This text file is saved as UTF-16; save it as UTF-8 and upload it again.",
        )
    if claimed is not None:
        return UnsupportedFile(
            REASON_MISMATCH,
            f"This file is named {ext} but contains binary data, not text. "
            "Check you picked the right file, or save it as UTF-8 text.",
        )
    return UnsupportedFile(
        REASON_UNSUPPORTED,
        "This file contains binary data in a format that isn't supported. "
        f"Upload {_ACCEPTED_SUMMARY}.",
    )


__all__ = [
    "EXTENSION_KINDS",
    "HEAD_BYTES",
    "KINDS",
    "UnsupportedFile",
    "detect",
    "extension",
    "identify_format",
]
