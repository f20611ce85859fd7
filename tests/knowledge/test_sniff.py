"""File-kind detection: content and name together decide, magic bytes first."""

from __future__ import annotations

import gzip

import pytest

from agents.knowledge.sniff import HEAD_BYTES, UnsupportedFile, detect, extension

PDF_HEAD = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06"
PE_HEAD = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48
OLE_HEAD = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 56


def sniff(name: str, data: bytes) -> str:
    return detect(name, data[:HEAD_BYTES], len(data))


def refusal(name: str, data: bytes) -> UnsupportedFile:
    with pytest.raises(UnsupportedFile) as caught:
        sniff(name, data)
    return caught.value


# ---------------------------------------------------------------- empty files


def test_empty_file_is_refused_as_empty():
    error = refusal("notes.txt", b"")
    assert error.reason_code == "file_empty"
    assert error.message == "This file is empty; upload a file with some content."


def test_whitespace_only_file_is_refused_as_empty():
    assert refusal("notes.txt", b"\xef\xbb\xbf \n\t\n").reason_code == "file_empty"


def test_whitespace_head_of_a_larger_file_is_not_called_empty():
    assert detect("notes.txt", b"   \n", size=50_000) == "text"


# ---------------------------------------------------------------- accepted names


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("notes.txt", "text"),
        ("notes.text", "text"),
        ("server.log", "text"),
        ("README.md", "markdown"),
        ("guide.markdown", "markdown"),
        ("page.html", "html"),
        ("page.HTM", "html"),
        ("table.csv", "csv"),
        ("table.tsv", "csv"),
        ("data.json", "json"),
        ("events.jsonl", "json"),
        ("main.py", "code"),
        ("app.tsx", "code"),
        ("lib.rs", "code"),
        ("config.yaml", "code"),
        ("settings.toml", "code"),
        ("query.sql", "code"),
        ("style.scss", "code"),
        ("feed.xml", "code"),
    ],
)
def test_text_content_takes_the_kind_of_its_extension(name, kind):
    assert sniff(name, b"hello = 'world'\n") == kind


def test_text_without_extension_is_text():
    assert sniff("LICENSE", b"Permission is hereby granted, free of charge.\n") == "text"


def test_text_with_unknown_extension_is_text():
    assert sniff("notes.xyz", b"Plain words.\n") == "text"


def test_script_with_shebang_and_no_extension_is_code():
    assert sniff("deploy", b"#!/bin/sh\nset -e\necho deployed\n") == "code"


def test_utf8_bom_is_accepted():
    assert sniff("notes.txt", b"\xef\xbb\xbfHello\n") == "text"


def test_latin1_text_without_nul_bytes_is_accepted():
    assert sniff("menu.txt", "Café crème brûlée\n".encode("latin-1")) == "text"


def test_multibyte_character_cut_off_at_the_end_of_the_head_is_fine():
    data = ("é" * 5000).encode("utf-8")  # 10,000 bytes: the head ends mid-character
    assert detect("accents.txt", data[:8191], len(data)) == "text"


def test_extension_ignores_folders_case_and_dotfiles():
    assert extension("C:\\Users\\ada\\Report.Final.PDF") == ".pdf"
    assert extension("docs/guide.md") == ".md"
    assert extension(".bashrc") == ""
    assert extension("README") == ""


# ---------------------------------------------------------------- PDF


def test_pdf_named_pdf_is_pdf(two_page_pdf):
    assert sniff("report.pdf", two_page_pdf) == "pdf"


def test_pdf_without_extension_is_pdf():
    assert sniff("scan", PDF_HEAD) == "pdf"


def test_pdf_named_txt_is_a_content_mismatch():
    error = refusal("report.txt", PDF_HEAD)
    assert error.reason_code == "file_content_mismatch"
    assert error.message == "This file is a PDF but is named .txt; rename it to .pdf."


def test_elf_binary_named_pdf_is_a_content_mismatch(files):
    error = refusal("invoice.pdf", files.elf_head)
    assert error.reason_code == "file_content_mismatch"
    assert "named .pdf but is actually an executable program (ELF)" in error.message


def test_text_named_pdf_is_a_content_mismatch():
    error = refusal("notes.pdf", b"Just some words.\n")
    assert error.reason_code == "file_content_mismatch"
    assert "contains plain text, not a PDF" in error.message


def test_unknown_binary_named_pdf_says_it_lacks_the_pdf_signature():
    error = refusal("broken.pdf", b"\x00\x01\x02garbage\x00" * 20)
    assert error.reason_code == "file_content_mismatch"
    assert "doesn't start with %PDF-" in error.message


# ---------------------------------------------------------------- ZIP and DOCX


def test_docx_named_docx_is_docx(docx_bytes):
    assert sniff("handbook.docx", docx_bytes) == "docx"


def test_docx_named_txt_is_a_mismatch_suggesting_docx(docx_bytes):
    error = refusal("handbook.txt", docx_bytes)
    assert error.reason_code == "file_content_mismatch"
    assert error.message == (
        "This file is a Word document (DOCX) but is named .txt; rename it to .docx."
    )


def test_docx_without_extension_must_be_renamed(docx_bytes):
    error = refusal("handbook", docx_bytes)
    assert error.reason_code == "file_content_mismatch"
    assert error.message == (
        "This file is a Word document (DOCX) but has no extension; rename it to .docx."
    )


def test_plain_zip_named_docx_is_left_to_the_parser(files):
    assert sniff("odd.docx", files.zip({"readme.txt": b"hi"})) == "docx"


def test_plain_zip_archive_is_unsupported(files):
    error = refusal("bundle.zip", files.zip({"a.txt": b"a", "b.txt": b"b"}))
    assert error.reason_code == "file_type_unsupported"
    assert error.message.startswith("This file is a ZIP archive, which can't be used as knowledge.")
    assert "Extract it" in error.message


def test_excel_workbook_named_csv_is_a_mismatch_advising_csv_export(files):
    workbook = files.zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})
    error = refusal("sales.csv", workbook)
    assert error.reason_code == "file_content_mismatch"
    assert "named .csv but is actually an Excel workbook" in error.message
    assert "Export the sheet as CSV" in error.message


def test_old_word_file_named_docx_is_a_mismatch_advising_resave():
    error = refusal("letter.docx", OLE_HEAD)
    assert error.reason_code == "file_content_mismatch"
    assert "older Office file" in error.message
    assert "save it as .docx" in error.message


def test_text_named_docx_is_a_mismatch():
    error = refusal("letter.docx", b"Dear Ada,\n")
    assert error.reason_code == "file_content_mismatch"
    assert "not a Word document" in error.message


# ---------------------------------------------------------------- other binaries


@pytest.mark.parametrize(
    ("name", "head", "described"),
    [
        ("program", b"\x7fELF\x02\x01\x01" + b"\x00" * 57, "an executable program (ELF)"),
        ("setup.exe", PE_HEAD, "a Windows program (EXE/DLL)"),
        (
            "tool",
            b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + b"\x00" * 24,
            "an executable program (Mach-O)",
        ),
        ("photo.png", PNG_HEAD, "a PNG image"),
        ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "a JPEG image"),
        ("backup.gz", gzip.compress(b"hello"), "a gzip archive"),
        ("backup.7z", b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24, "a 7-Zip archive"),
        ("backup.rar", b"Rar!\x1a\x07\x01\x00" + b"\x00" * 24, "a RAR archive"),
        ("letter.doc", OLE_HEAD, "an older Office file"),
    ],
)
def test_known_binary_formats_are_unsupported(name, head, described):
    error = refusal(name, head)
    assert error.reason_code == "file_type_unsupported"
    assert error.message.startswith(f"This file is {described}")


def test_image_named_markdown_is_a_mismatch():
    error = refusal("notes.md", PNG_HEAD)
    assert error.reason_code == "file_content_mismatch"
    assert error.message.startswith("This file is named .md but is actually a PNG image.")


def test_text_starting_with_mz_is_not_mistaken_for_an_executable():
    assert sniff("banks.txt", b"MZ Bank quarterly report\n") == "text"


def test_invalid_utf8_binary_named_txt_is_a_mismatch():
    error = refusal("notes.txt", b"\xfd\x00\x00\x81binary\x00\xff" * 10)
    assert error.reason_code == "file_content_mismatch"
    assert "contains binary data, not text" in error.message


def test_binary_without_extension_is_unsupported():
    error = refusal("blob", b"\x13\x00\x9c\x00\x00\x01\x02\xfe" * 16)
    assert error.reason_code == "file_type_unsupported"
    assert "binary data in a format that isn't supported" in error.message


def test_binary_without_nul_bytes_is_caught_by_its_control_characters():
    data = bytes(range(1, 32)) * 8 + bytes(range(128, 256))
    assert refusal("blob.txt", data).reason_code == "file_content_mismatch"


def test_utf16_text_gets_a_save_as_utf8_hint():
    error = refusal("notes.bin16", "Hello".encode("utf-16"))
    assert error.reason_code == "file_type_unsupported"
    assert "save it as UTF-8" in error.message


def test_text_under_an_image_extension_is_a_mismatch():
    error = refusal("diagram.png", b"graph TD; A-->B\n")
    assert error.reason_code == "file_content_mismatch"
    assert "rename it to .txt" in error.message


def test_unrecognised_binary_under_an_office_extension_is_unsupported_with_advice():
    error = refusal("slides.pptx", b"\x01\x02\x00\x00" * 16)
    assert error.reason_code == "file_type_unsupported"
    assert error.message == (
        ".pptx files can't be used as knowledge. Export it as PDF and upload that."
    )
