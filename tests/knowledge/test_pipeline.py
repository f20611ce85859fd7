"""End to end: one call from uploaded bytes to positioned chunks."""

from __future__ import annotations

import pytest

from agents.knowledge.parsing import ParseError
from agents.knowledge.pipeline import extract
from agents.knowledge.sniff import UnsupportedFile


def test_pdf_upload_becomes_chunks_citing_pages(two_page_pdf):
    result = extract("policy.pdf", two_page_pdf)
    assert result.kind == "pdf"
    assert result.document.pages == 2
    assert [(c.index, c.position) for c in result.chunks] == [(0, {"page": 1}), (1, {"page": 2})]
    assert result.chunks[1].text == "Shipping\nOrders ship from Rotterdam (NL)."


def test_docx_upload_becomes_chunks_citing_headings(docx_bytes):
    result = extract("handbook.docx", docx_bytes)
    assert result.kind == "docx"
    assert [c.position["heading"] for c in result.chunks] == [
        "Handbook",
        "Handbook > Setup",
        "Handbook > Setup > Install",
        "Handbook > Usage",
    ]


def test_markdown_upload_chunks_per_heading():
    result = extract("guide.md", b"# Guide\n\nHello.\n\n## Setup\n\nInstall it.\n")
    assert [(c.text, c.position) for c in result.chunks] == [
        ("# Guide\n\nHello.", {"heading": "Guide"}),
        ("## Setup\n\nInstall it.", {"heading": "Guide > Setup"}),
    ]


def test_python_comments_do_not_split_source_into_heading_chunks():
    source = b"import os\n\n# Read settings\nHOME = os.environ['HOME']\n\n# Done\n"
    result = extract("settings.py", source)
    assert result.kind == "code"
    assert [c.text for c in result.chunks] == [source.decode().strip()]


def test_misnamed_file_is_refused_before_parsing(two_page_pdf):
    with pytest.raises(UnsupportedFile) as caught:
        extract("policy.txt", two_page_pdf)
    assert caught.value.reason_code == "file_content_mismatch"


def test_parse_problems_surface_as_parse_errors():
    with pytest.raises(ParseError, match="This JSON file is invalid"):
        extract("data.json", b"{oops}")
