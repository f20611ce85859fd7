"""Parsing each kind of document into sections with citable positions."""

from __future__ import annotations

import io
import json

import pytest
from pypdf import PdfReader

from agents.knowledge.parsing import (
    CSV_ROWS_PER_SECTION,
    ParseError,
    Section,
    check_zip_safety,
    parse,
)


def parse_error(kind: str, data: bytes, **limits: int) -> str:
    with pytest.raises(ParseError) as caught:
        parse(kind, data, **limits)
    return caught.value.message


# ---------------------------------------------------------------- PDF


def test_handmade_pdf_has_a_text_layer_pypdf_can_read(two_page_pdf):
    reader = PdfReader(io.BytesIO(two_page_pdf))
    assert len(reader.pages) == 2
    assert reader.pages[1].extract_text() == "Shipping\nOrders ship from Rotterdam (NL)."


def test_pdf_yields_one_section_per_page_with_page_numbers(two_page_pdf):
    document = parse("pdf", two_page_pdf)
    assert document.pages == 2
    assert document.sections == [
        Section("Refund policy\nRefunds are issued within 14 days.", {"page": 1}),
        Section("Shipping\nOrders ship from Rotterdam (NL).", {"page": 2}),
    ]
    assert document.characters == sum(len(s.text) for s in document.sections) == 89


def test_pdf_pages_without_text_are_skipped_but_keep_numbering(files):
    pdf = files.text_pdf([["Cover"], [], ["Appendix"]])
    document = parse("pdf", pdf)
    assert document.pages == 3
    assert [(s.text, s.position) for s in document.sections] == [
        ("Cover", {"page": 1}),
        ("Appendix", {"page": 3}),
    ]


def test_password_protected_pdf_is_refused(files, two_page_pdf):
    locked = files.encrypted_pdf(two_page_pdf, user_password="s3cret", owner_password="owner")
    assert parse_error("pdf", locked).startswith("This PDF is password-protected")


def test_pdf_encrypted_only_against_editing_is_read(files, two_page_pdf):
    restricted = files.encrypted_pdf(two_page_pdf, user_password="", owner_password="owner")
    document = parse("pdf", restricted)
    assert [s.position for s in document.sections] == [{"page": 1}, {"page": 2}]
    assert "Rotterdam" in document.sections[1].text


def test_pdf_without_text_layer_is_refused_as_scanned(files):
    message = parse_error("pdf", files.blank_pdf())
    assert "scanned images, no text layer; OCR is not supported" in message


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4\nthis is not really a pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"],
)
def test_corrupt_pdf_is_refused_as_damaged(data):
    assert parse_error("pdf", data).startswith("This PDF is damaged and can't be read")


def test_truncated_pdf_is_refused_as_damaged(two_page_pdf):
    assert "damaged" in parse_error("pdf", two_page_pdf[: len(two_page_pdf) // 3])


def test_pdf_text_over_the_character_cap_is_refused(two_page_pdf):
    message = parse_error("pdf", two_page_pdf, max_chars=50)
    assert message == "This file has more than 50 characters of text; split it into smaller files."


# ---------------------------------------------------------------- DOCX


def test_docx_sections_follow_the_heading_path(docx_bytes):
    document = parse("docx", docx_bytes)
    assert document.pages is None
    assert [(s.position, s.text) for s in document.sections] == [
        ({"heading": "Handbook"}, "Handbook\n\nRead this first."),
        ({"heading": "Handbook > Setup"}, "Setup\n\nPrepare the machine."),
        (
            {"heading": "Handbook > Setup > Install"},
            "Install\n\nRun the installer and accept the licence.",
        ),
        (
            {"heading": "Handbook > Usage"},
            "Usage\n\nStart the service.\n\nSetting | Value\nport | 8080",
        ),
    ]


def test_docx_text_before_any_heading_has_no_position():
    import docx

    document = docx.Document()
    document.add_paragraph("Loose note.")
    document.add_heading("Later", level=1)
    document.add_paragraph("Body.")
    buffer = io.BytesIO()
    document.save(buffer)
    sections = parse("docx", buffer.getvalue()).sections
    assert sections == [
        Section("Loose note.", None),
        Section("Later\n\nBody.", {"heading": "Later"}),
    ]


def test_docx_zip_bomb_by_compression_ratio_is_refused(files):
    message = parse_error("docx", files.ratio_bomb(zero_megabytes=20))
    assert "looks like a zip bomb" in message
    assert "compressed more than 100:1" in message


def test_docx_zip_bomb_by_total_size_is_refused(docx_bytes):
    message = parse_error("docx", docx_bytes, max_unzipped_bytes=10_000)
    assert "looks like a zip bomb" in message


def test_zip_with_too_many_members_is_refused(files):
    with pytest.raises(ParseError) as caught:
        check_zip_safety(files.many_members_zip(10_001))
    assert "looks like a zip bomb (it holds more than 10,000 files)" in caught.value.message


def test_zip_at_the_member_limit_passes_the_safety_check(files):
    check_zip_safety(files.many_members_zip(10_000))


def test_small_highly_compressible_parts_are_not_mistaken_for_bombs(files):
    archive = files.zip({"word/document.xml": b"<w:document/>", "word/styles.xml": b"a" * 500_000})
    check_zip_safety(archive)


def test_zip_without_a_word_document_part_is_refused(files):
    message = parse_error("docx", files.zip({"readme.txt": b"hello"}))
    assert message.startswith("This file isn't a Word document (it has no word/document.xml)")


def test_damaged_docx_is_refused(files):
    archive = files.zip({"word/document.xml": b"this is not xml"})
    assert parse_error("docx", archive).startswith("This DOCX file is damaged")


def test_docx_that_is_not_a_zip_is_refused():
    assert parse_error("docx", b"plain text pretending").startswith("This DOCX file is damaged")


# ---------------------------------------------------------------- Markdown

MARKDOWN = b"""Intro before any heading.

# Guide

Welcome.

## Setup

### Install

Run `pip install combo`.

```bash
# not a heading: a shell comment

pip install combo
```

## Usage ##

#hashtag is not a heading either.

# Appendix
"""


def test_markdown_sections_carry_nested_heading_paths():
    sections = parse("markdown", MARKDOWN).sections
    assert [s.position for s in sections] == [
        None,
        {"heading": "Guide"},
        {"heading": "Guide > Setup"},
        {"heading": "Guide > Setup > Install"},
        {"heading": "Guide > Usage"},
        {"heading": "Appendix"},
    ]
    assert sections[0].text == "Intro before any heading."
    assert sections[4].text == "## Usage ##\n\n#hashtag is not a heading either."


def test_markdown_code_fence_is_kept_intact_and_its_comments_are_not_headings():
    install = parse("markdown", MARKDOWN).sections[3]
    assert install.text == (
        "### Install\n\nRun `pip install combo`.\n\n"
        "```bash\n# not a heading: a shell comment\n\npip install combo\n```"
    )


def test_markdown_without_headings_is_one_section():
    assert parse("markdown", b"Just text.\n\nMore text.\n").sections == [
        Section("Just text.\n\nMore text.", None)
    ]


def test_markdown_heading_level_jump_back_pops_deeper_levels():
    sections = parse("markdown", b"# A\n### A3\n## B\nx\n").sections
    assert [s.position["heading"] for s in sections] == ["A", "A > A3", "A > B"]


# ---------------------------------------------------------------- HTML

HTML = b"""<!doctype html>
<html><head><title>Docs</title>
<style>body { color: red; }</style>
<script>window.secretToken = "abc123";</script>
</head>
<body>
<noscript>Enable JavaScript please</noscript>
<template><p>template text</p></template>
<h1>Setup</h1>
<p>Install the   <b>agent</b>
   with pip &amp; friends.</p>
<h2>Install</h2>
<ul><li>Download</li><li>Run</li></ul>
<table><tr><th>Key</th><th>Value</th></tr><tr><td>port</td><td>8080</td></tr></table>
<pre>  indented = True
  kept = True</pre>
<script>console.log("more script")</script>
<h1>Usage</h1><p>Call the API.</p>
</body></html>
"""


def test_html_drops_script_style_noscript_and_template_text():
    text = "\n".join(s.text for s in parse("html", HTML).sections)
    for noise in ("secretToken", "color: red", "Enable JavaScript", "template text", "more script"):
        assert noise not in text


def test_html_sections_follow_h1_to_h6_heading_path():
    sections = parse("html", HTML).sections
    assert [s.position for s in sections] == [
        None,
        {"heading": "Setup"},
        {"heading": "Setup > Install"},
        {"heading": "Usage"},
    ]
    assert sections[1].text == "Setup\n\nInstall the agent with pip & friends."
    assert sections[3].text == "Usage\n\nCall the API."


def test_html_keeps_block_breaks_table_cells_and_preformatted_text():
    install = parse("html", HTML).sections[2].text
    assert install == (
        "Install\n\nDownload\nRun\n\nKey | Value\nport | 8080\n\n  indented = True\n  kept = True"
    )


# ---------------------------------------------------------------- CSV


def test_csv_sections_repeat_the_header_every_forty_rows():
    rows = "\n".join(f"{i},item {i}" for i in range(1, 101))
    sections = parse("csv", f"id,name\n{rows}\n".encode()).sections
    assert [s.position for s in sections] == [
        {"rows": "1-40"},
        {"rows": "41-80"},
        {"rows": "81-100"},
    ]
    assert all(s.text.startswith("id,name\n") for s in sections)
    assert sections[1].text.split("\n")[1] == "41,item 41"
    assert len(sections[0].text.split("\n")) == CSV_ROWS_PER_SECTION + 1


def test_csv_with_long_rows_uses_smaller_sections_so_each_fits_a_chunk():
    rows = "\n".join(f"{i},{'word ' * 40}" for i in range(1, 21))
    sections = parse("csv", f"id,text\n{rows}\n".encode()).sections
    assert len(sections) > 1
    assert all(len(s.text) <= 1200 and s.text.startswith("id,text\n") for s in sections)


def test_csv_keeps_quoted_fields_and_skips_blank_rows():
    data = b'name,quote\nAda,"Hello, world"\n\nGrace,"She said ""hi"""\n'
    sections = parse("csv", data).sections
    assert sections == [
        Section('name,quote\nAda,"Hello, world"\nGrace,"She said ""hi"""', {"rows": "1-2"})
    ]


def test_tsv_is_read_with_tabs():
    sections = parse("csv", b"a\tb\n1\t2, 3\n").sections
    assert sections == [Section("a\tb\n1\t2, 3", {"rows": "1-1"})]


# ---------------------------------------------------------------- JSON


def test_json_is_pretty_printed_so_keys_are_searchable():
    data = json.dumps({"user": {"name": "Zoë", "roles": ["admin"]}}, separators=(",", ":"))
    sections = parse("json", data.encode()).sections
    assert sections == [
        Section(
            '{\n  "user": {\n    "name": "Zoë",\n    "roles": [\n      "admin"\n    ]\n  }\n}',
            None,
        )
    ]


def test_invalid_json_is_refused_with_its_location():
    message = parse_error("json", b'{"a": 1,\n "b": }')
    assert message == (
        "This JSON file is invalid: Expecting value at line 2, column 7. "
        "Fix it, or upload it as a .txt file."
    )


@pytest.mark.parametrize(
    "data",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b'{"id": 1}\n' + b"[" * 100_000],
    ids=["arrays", "objects", "a-json-lines-record"],
)
def test_json_nested_too_deeply_is_refused_as_the_files_fault(data):
    # Python's JSON reader recurses per level: without this it was an "unexpected error, try again".
    message = parse_error("json", data)
    assert message.startswith("This JSON file is nested too deeply to read")


def test_json_lines_are_rendered_record_by_record():
    sections = parse("json", b'{"id": 1}\n\n{"id": 2, "tags": []}\n').sections
    assert sections == [Section('{\n  "id": 1\n}\n\n{\n  "id": 2,\n  "tags": []\n}', None)]


def test_invalid_json_line_is_reported_by_line_number():
    message = parse_error("json", b'{"id": 1}\n{"id": 2}\n{"id": \n')
    assert message.startswith("Line 3 of this JSON Lines file is invalid: Expecting value")


# ---------------------------------------------------------------- text and code


def test_python_source_is_kept_verbatim_without_position():
    source = b'def greet(name):\n    # say hello\n    return f"hi {name}"\n'
    document = parse("code", source)
    assert document.sections == [
        Section('def greet(name):\n    # say hello\n    return f"hi {name}"', None)
    ]
    assert document.pages is None


def test_text_is_decoded_from_utf8_with_bom_and_crlf_normalised():
    document = parse("text", b"\xef\xbb\xbfline one\r\nline two\r\n")
    assert document.sections == [Section("line one\nline two", None)]
    assert document.characters == 17


def test_legacy_8bit_text_falls_back_to_windows_1252():
    text = parse("text", "“Café” – menu".encode("cp1252")).sections[0].text
    assert text == "“Café” – menu"


def test_text_with_nul_bytes_is_refused():
    assert "binary data (NUL bytes)" in parse_error("text", b"abc\x00def")


def test_whitespace_only_text_is_refused():
    assert parse_error("text", b"  \n\n ") == "This file contains no readable text."


def test_html_with_only_scripts_is_refused_as_empty():
    assert (
        parse_error("html", b"<script>alert(1)</script>") == "This file contains no readable text."
    )


def test_text_over_the_character_cap_is_refused():
    assert "more than 10 characters" in parse_error("text", b"x" * 11, max_chars=10)


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown document kind: 'exe'"):
        parse("exe", b"data")
