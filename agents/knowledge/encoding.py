"""Text decoding rules shared by file sniffing and parsing.

Uploaded text must be UTF-8 (a byte-order mark is allowed). Files in a legacy
8-bit encoding are still accepted through a Windows-1252/Latin-1 fallback as
long as they contain no NUL bytes. Sniffing (which sees only the head of a file)
and parsing (which sees all of it) apply the same rules, so a file that passes
`detect()` decodes the same way in `parse()`.
"""

from __future__ import annotations

import codecs
import re

UTF8_BOM = codecs.BOM_UTF8
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

# C0 control characters that never appear in real text. Tab, newline, carriage
# return, form feed, vertical tab, backspace and escape (ANSI colours in logs)
# are left out on purpose.
_BINARY_CONTROLS = re.compile(r"[\x00-\x07\x0e-\x1a\x1c-\x1f\x7f]")

# Binary data that happens to contain no NUL byte still has plenty of control
# characters; text almost never has any. 2% separates the two comfortably.
_MAX_CONTROL_SHARE = 0.02

# A well-formed multi-byte UTF-8 sequence. Legacy 8-bit text practically never
# contains one, so finding one means "UTF-8 with a few damaged bytes".
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def looks_like_binary(text: str) -> bool:
    """True when decoded text carries more control characters than text does."""
    if not text:
        return False
    controls = len(_BINARY_CONTROLS.findall(text))
    return controls > len(text) * _MAX_CONTROL_SHARE


def decode_head(head: bytes, *, complete: bool) -> str | None:
    """Decode the first bytes of a file, or return None if they aren't text.

    `complete` says whether `head` is the whole file; if not, a multi-byte
    character cut off at the end of the head is not an error.
    """
    if b"\x00" in head:
        return None
    body = head[len(UTF8_BOM) :] if head.startswith(UTF8_BOM) else head
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(body, final=complete)
    except UnicodeDecodeError:
        text = _decode_legacy(body)
    return None if looks_like_binary(text) else text


def decode_text(data: bytes) -> str:
    """Decode a whole file: UTF-8 (BOM removed), else a legacy 8-bit decoding.

    Line endings are normalised to "\\n". The caller must already have rejected
    data containing NUL bytes.
    """
    body = data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        if _UTF8_MULTIBYTE.search(body):
            # Mostly UTF-8 with a few broken bytes: keep the good characters.
            text = body.decode("utf-8", errors="replace")
        else:
            text = _decode_legacy(body)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _decode_legacy(body: bytes) -> str:
    # Files labelled "Latin-1" are nearly always Windows-1252 in practice (curly
    # quotes and dashes live in 0x80-0x9F). Real Latin-1 is the fallback for the
    # five bytes Windows-1252 leaves undefined.
    try:
        return body.decode("cp1252")
    except UnicodeDecodeError:
        return body.decode("latin-1")
