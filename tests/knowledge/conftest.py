"""Builders for the small real files the knowledge tests feed in.

Every file is made in code (no fixtures on disk): a hand-written PDF with a
Helvetica text layer, encrypted and blank PDFs from pypdf, DOCX files from
python-docx, and ZIP containers shaped like zip bombs.
"""

from __future__ import annotations

import io
import zipfile

import docx
import pytest
from pypdf import PdfReader, PdfWriter

from tests.worker import run_worker

ELF_HEAD = (
    b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + b"\x00" * 40
)


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def build_text_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: one page per entry, each line drawn in Helvetica."""
    page_count = len(pages)
    font_id = 3 + 2 * page_count
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(f"{3 + 2 * i} 0 R".encode() for i in range(page_count))
        + f"] /Count {page_count} >>".encode(),
    ]
    for i, lines in enumerate(pages):
        content_id = 4 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> /Contents {content_id} 0 R >>".encode()
        )
        drawn = b" Tj T* ".join(_pdf_string(line) for line in lines)
        stream = b"BT /F1 12 Tf 16 TL 72 720 Td " + drawn + b" Tj ET"
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    objects.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    out += f"startxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def _written(writer: PdfWriter) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def build_encrypted_pdf(source: bytes, *, user_password: str, owner_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
    writer.encrypt(user_password=user_password, owner_password=owner_password)
    return _written(writer)


def build_blank_pdf() -> bytes:
    """A PDF whose page has no text at all, like a scan without OCR."""
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    return _written(writer)


def build_docx() -> bytes:
    """A Word document with a title, nested headings, paragraphs and a table."""
    document = docx.Document()
    document.add_heading("Handbook", level=0)
    document.add_paragraph("Read this first.")
    document.add_heading("Setup", level=1)
    document.add_paragraph("Prepare the machine.")
    document.add_heading("Install", level=2)
    document.add_paragraph("Run the installer and accept the licence.")
    document.add_heading("Usage", level=1)
    document.add_paragraph("Start the service.")
    table = document.add_table(rows=2, cols=2)
    for row, values in zip(table.rows, [("Setting", "Value"), ("port", "8080")], strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def build_zip(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def build_ratio_bomb(zero_megabytes: int = 20) -> bytes:
    """A DOCX-shaped ZIP whose document part is megabytes of zeros (over 1000:1)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        block = b"\x00" * (1024 * 1024)
        with archive.open("word/document.xml", "w") as member:  # streamed, never all in memory
            for _ in range(zero_megabytes):
                member.write(block)
    return buffer.getvalue()


def build_many_members_zip(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("word/document.xml", b"<w:document/>")
        for i in range(count - 1):
            archive.writestr(f"word/media/empty{i}.bin", b"")
    return buffer.getvalue()


class Files:
    """The builders above, handed to tests through the `files` fixture.

    A fixture rather than an import, so the tests don't depend on how the
    repository's pytest configuration imports test packages.
    """

    elf_head = ELF_HEAD
    text_pdf = staticmethod(build_text_pdf)
    encrypted_pdf = staticmethod(build_encrypted_pdf)
    blank_pdf = staticmethod(build_blank_pdf)
    docx = staticmethod(build_docx)
    zip = staticmethod(build_zip)
    ratio_bomb = staticmethod(build_ratio_bomb)
    many_members_zip = staticmethod(build_many_members_zip)


@pytest.fixture(scope="session")
def files() -> type[Files]:
    return Files


@pytest.fixture(scope="session")
def two_page_pdf() -> bytes:
    return build_text_pdf(
        [
            ["Refund policy", "Refunds are issued within 14 days."],
            ["Shipping", "Orders ship from Rotterdam (NL)."],
        ]
    )


@pytest.fixture(scope="session")
def docx_bytes() -> bytes:
    return build_docx()


# ---------------------------------------------------------------- the API side
# Uploads go through the real multipart path of the test client; the ingestion
# task is enqueued on commit into the real database queue (django-tasks-db) and
# drained by the real worker loop, in process.


@pytest.fixture
def upload(client, django_capture_on_commit_callbacks):
    """POST /v1/combo/files as `actor`; returns (status, envelope, response)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    def do(actor, name: str, data: bytes, *, agent_id: str | None = None, **fields):
        payload = {"file": SimpleUploadedFile(name, data), **fields}
        if agent_id is not None:
            payload["agent_id"] = agent_id
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/v1/combo/files", payload, **actor.key_auth)
        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        return response.status_code, envelope, response

    return do


@pytest.fixture
def drain(db):
    return run_worker
