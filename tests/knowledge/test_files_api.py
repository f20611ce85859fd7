"""/v1/combo/files through the test client: upload, status lifecycle, dedupe, delete, ownership.

Uploads use the real multipart path; ingestion runs in the real django-tasks
database queue, drained by the real worker loop (the `drain` fixture).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from django.test.client import BOUNDARY

from agents.knowledge.search import search
from agents.models import MAX_FILES_PER_AGENT, Agent, Chunk, KnowledgeFile

TEXT = b"Refunds are issued within 14 days of the return arriving at our warehouse.\n"

ACCEPTED = {
    "notes.txt": (b"Plain notes about the quarterly budget review.\n", "text"),
    "guide.md": (b"# Guide\n\nIntro.\n\n## Setup\n\nInstall the gizmo with care.\n", "markdown"),
    "page.html": (b"<html><body><h1>Welcome</h1><p>The lighthouse opens at dawn.</p></body></html>", "html"),
    "people.csv": (b"name,city\nAda,London\nGrace,Arlington\n", "csv"),
    "config.json": (b'{"service": {"port": 8080, "name": "harbour"}}', "json"),
    "tool.py": (b"def greet(name):\n    return f'hello {name}'\n", "code"),
}


def stored_originals() -> set[Path]:
    root = Path(settings.MEDIA_ROOT) / "knowledge"
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def get_file(api, actor, file_id):
    status, body, _ = api.get(f"/v1/combo/files/{file_id}", auth=actor.key_auth)
    assert status == 200, body
    return body["data"]


def make_agent(api, actor, **fields) -> dict:
    status, body, _ = api.post("/v1/combo/agents", {"name": "Helper", **fields}, auth=actor.key_auth)
    assert status == 201, body
    return body["data"]


# ---------------------------------------------------------------- accepted kinds


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_each_text_kind_is_queued_then_ingested_and_searchable(api, alice, upload, drain, name):
    data, kind = ACCEPTED[name]
    status, body, _ = upload(alice, name, data)
    assert status == 201, body
    queued = body["data"]
    assert (queued["status"], queued["name"], queued["kind"], queued["size"]) == ("queued", name, kind, len(data))
    assert queued["chunk_count"] == 0 and queued["failure_reason"] is None and queued["processed_at"] is None

    assert drain() == 1
    ready = get_file(api, alice, queued["id"])
    assert ready["status"] == "ready", ready
    assert ready["chunk_count"] == Chunk.objects.filter(file_id=queued["id"]).count() >= 1
    assert ready["characters"] > 0 and ready["processed_at"]
    stored = KnowledgeFile.objects.get(id=queued["id"])
    assert stored.owner == alice.user and stored.original.read() == data


def test_a_pdf_is_ingested_with_pages_and_page_positions(api, alice, upload, drain, files):
    pdf = files.text_pdf([["Refund policy", "Refunds take 14 days."], ["Shipping", "Parcels leave Rotterdam daily."]])
    status, body, _ = upload(alice, "policy.pdf", pdf)
    assert status == 201 and body["data"]["kind"] == "pdf"
    drain()
    ready = get_file(api, alice, body["data"]["id"])
    assert (ready["status"], ready["pages"], ready["chunk_count"]) == ("ready", 2, 2)
    hits = search(file_ids=[ready["id"]], query="Rotterdam parcels", k=5)
    assert hits[0].position == {"page": 2}


def test_a_docx_is_ingested_with_heading_positions(api, alice, upload, drain, docx_bytes):
    status, body, _ = upload(alice, "handbook.docx", docx_bytes)
    assert status == 201 and body["data"]["kind"] == "docx"
    drain()
    ready = get_file(api, alice, body["data"]["id"])
    assert ready["status"] == "ready" and ready["pages"] is None
    hits = search(file_ids=[ready["id"]], query="installer licence", k=1)
    assert hits[0].position == {"heading": "Handbook > Setup > Install"}


# ---------------------------------------------------------------- refused at once


@pytest.mark.parametrize(
    "name, data, status, code",
    [
        ("empty.txt", b"", 400, 10120),
        ("blank.md", b"   \n\n  ", 400, 10120),
        ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 415, 10121),
        ("program", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64, 415, 10121),
        ("program.pdf", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64, 400, 10122),
        ("data.csv", bytes(range(256)) * 4, 400, 10122),
    ],
)
def test_bad_files_are_refused_with_their_code_and_nothing_is_stored(api, alice, upload, name, data, status, code):
    before = stored_originals()
    got, body, response = upload(alice, name, data)
    assert (got, body["code"]) == (status, code), body
    assert body["data"]["request_id"] == response["X-Request-Id"]
    assert body["message"] and "Traceback" not in body["message"]
    assert not KnowledgeFile.objects.exists()
    assert stored_originals() == before


def test_a_pdf_renamed_txt_is_refused_as_a_mismatch(alice, upload, files):
    status, body, _ = upload(alice, "policy.txt", files.text_pdf([["Hello"]]))
    assert (status, body["code"]) == (400, 10122)
    assert "PDF" in body["message"] and ".pdf" in body["message"]
    assert not KnowledgeFile.objects.exists()


def test_a_request_without_the_file_field_is_10124(client, alice):
    response = client.post("/v1/combo/files", {"document": "nope"}, **alice.key_auth)
    assert (response.status_code, response.json()["code"]) == (400, 10124)
    response = client.post("/v1/combo/files", {}, **alice.key_auth)
    assert (response.status_code, response.json()["code"]) == (400, 10124)


def _one_part(filename: bytes, data: bytes = TEXT) -> bytes:
    """A multipart body of one `file` part with this raw file name, as any client may send it."""
    return (
        b"--" + BOUNDARY.encode() + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename
        + b'"\r\nContent-Type: text/plain\r\n\r\n' + data + b"\r\n--" + BOUNDARY.encode() + b"--\r\n"
    )


def _post_raw(client, actor, body: bytes):
    return client.post(
        "/v1/combo/files", data=body, content_type=f"multipart/form-data; boundary={BOUNDARY}", **actor.key_auth
    )


@pytest.mark.parametrize("filename", [b"", b".", b"..", b"\xff\xfe.txt"], ids=["empty", "dot", "dotdot", "latin-1"])
def test_a_file_part_without_a_usable_name_is_10124_saying_what_a_usable_part_looks_like(client, alice, filename):
    response = _post_raw(client, alice, _one_part(filename))
    body = response.json()
    assert (response.status_code, body["code"]) == (400, 10124), body
    assert 'filename="notes.txt"' in body["message"] and "not UTF-8" in body["message"]
    assert not KnowledgeFile.objects.exists()


def test_a_file_name_too_long_for_the_part_headers_is_a_clear_10002(client, alice):
    response = _post_raw(client, alice, _one_part(b"n" * 1000 + b".txt"))
    body = response.json()
    assert (response.status_code, body["code"]) == (400, 10002), body
    assert "shorter file name" in body["message"] and "Multipart form parse error" not in body["message"]
    assert not KnowledgeFile.objects.exists()


def test_a_long_but_readable_file_name_is_kept_to_255_characters_with_its_extension(client, alice):
    response = _post_raw(client, alice, _one_part(b"n" * 300 + b".txt"))
    assert response.status_code == 201, response.json()
    data = response.json()["data"]
    assert data["name"] == "n" * 251 + ".txt" and data["kind"] == "text"


def test_a_path_in_the_file_name_keeps_only_its_last_part(client, alice):
    response = _post_raw(client, alice, _one_part(b"../../etc/caf\xc3\xa9.txt"))
    assert response.status_code == 201, response.json()
    assert response.json()["data"]["name"] == "caf\u00e9.txt"


def test_a_json_body_is_refused_as_the_wrong_media_type(api, alice):
    status, body, _ = api.post("/v1/combo/files", {"file": "text"}, auth=alice.key_auth)
    assert (status, body["code"]) == (415, 10003)


def test_unknown_form_fields_are_validation_errors(alice, upload):
    status, body, _ = upload(alice, "notes.txt", TEXT, colour="red")
    assert (status, body["code"]) == (400, 10001) and body["data"]["errors"] == {"colour": ["Unknown field."]}
    assert not KnowledgeFile.objects.exists()


@override_settings(COMBO_MAX_UPLOAD_BYTES=1000)
def test_a_file_over_the_limit_is_413_even_when_the_body_is_small_enough(alice, upload):
    # 1,500 bytes: under the body allowance, so the multipart byte counter refuses it.
    status, body, _ = upload(alice, "big.txt", b"word " * 300)
    assert (status, body["code"]) == (413, 10123), body
    assert body["data"]["limit_bytes"] == 1000
    assert body["message"] == "The file is over the limit of 1,000 bytes (0.000954 MiB). Split it into smaller files."
    assert not KnowledgeFile.objects.exists()


@override_settings(COMBO_MAX_UPLOAD_BYTES=1000)
def test_a_declared_length_over_the_limit_is_refused_before_reading(client, alice):
    response = client.post(
        "/v1/combo/files", data=b"x" * 10, content_type="multipart/form-data; boundary=zzz",
        CONTENT_LENGTH=str(10 * 1024 * 1024), **alice.key_auth,
    )
    assert (response.status_code, response.json()["code"]) == (413, 10123)


def test_the_default_limit_is_20_mib():
    assert settings.COMBO_MAX_UPLOAD_BYTES == 20 * 1024 * 1024


# ---------------------------------------------------------------- failed in the background


def test_an_encrypted_pdf_goes_queued_processing_failed_with_a_reason(api, alice, upload, drain, files, monkeypatch):
    locked = files.encrypted_pdf(files.text_pdf([["Secret plans"]]), user_password="s3cret", owner_password="o")
    status, body, _ = upload(alice, "plans.pdf", locked)
    assert status == 201 and body["data"]["status"] == "queued"

    from agents.knowledge import services

    seen = []
    real_extract = services.extract

    def watching_extract(*args, **kwargs):
        seen.append(KnowledgeFile.objects.get(id=body["data"]["id"]).status)
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(services, "extract", watching_extract)
    drain()
    failed = get_file(api, alice, body["data"]["id"])
    assert seen == ["processing"]
    assert failed["status"] == "failed" and "password-protected" in failed["failure_reason"]
    assert failed["chunk_count"] == 0 and failed["processed_at"]
    assert not Chunk.objects.exists()


def test_a_zip_bomb_named_docx_fails_with_a_reason(api, alice, upload, drain, files):
    status, body, _ = upload(alice, "report.docx", files.ratio_bomb(zero_megabytes=20))
    assert status == 201
    drain()
    failed = get_file(api, alice, body["data"]["id"])
    assert failed["status"] == "failed" and "zip bomb" in failed["failure_reason"]
    assert not Chunk.objects.exists()


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("broken.json", b'{"a": 1,,}', "JSON file is invalid"),
        ("scan.pdf", None, "no extractable text"),
    ],
)
def test_parse_errors_fail_with_the_parsers_reason(api, alice, upload, drain, files, name, data, reason):
    status, body, _ = upload(alice, name, data if data is not None else files.blank_pdf())
    assert status == 201
    drain()
    failed = get_file(api, alice, body["data"]["id"])
    assert failed["status"] == "failed" and reason in failed["failure_reason"]


# ---------------------------------------------------------------- dedupe


def test_the_same_bytes_again_return_the_existing_file_with_200(api, alice, upload, drain):
    first_status, first, _ = upload(alice, "a.txt", TEXT)
    drain()
    again_status, again, _ = upload(alice, "copy-of-a.txt", TEXT)
    assert (first_status, again_status) == (201, 200)
    assert again["data"]["id"] == first["data"]["id"] and again["data"]["name"] == "a.txt"
    assert again["data"]["status"] == "ready"
    assert drain() == 0, "nothing is queued for the duplicate"
    assert KnowledgeFile.objects.count() == 1 and Chunk.objects.count() == 1
    assert len([p for p in stored_originals() if first["data"]["id"].replace("-", "") in p.name]) == 1


def test_the_same_bytes_from_another_owner_are_a_separate_file(alice, bob, upload):
    _, mine, _ = upload(alice, "a.txt", TEXT)
    status, theirs, _ = upload(bob, "a.txt", TEXT)
    assert status == 201 and theirs["data"]["id"] != mine["data"]["id"]


def test_a_duplicate_upload_with_agent_id_attaches_the_existing_file(api, alice, upload):
    _, first, _ = upload(alice, "a.txt", TEXT)
    agent = make_agent(api, alice)
    status, again, _ = upload(alice, "a.txt", TEXT, agent_id=agent["id"])
    assert status == 200 and again["data"]["agent_ids"] == [agent["id"]]
    assert list(Agent.objects.get(id=agent["id"]).files.values_list("id", flat=True)) == [
        uuid.UUID(first["data"]["id"])
    ]


# ---------------------------------------------------------------- list, read, delete


def test_files_are_listed_newest_first_with_a_cursor(api, alice, upload):
    ids = [upload(alice, f"n{i}.txt", f"note number {i}".encode())[1]["data"]["id"] for i in range(3)]
    status, body, _ = api.get("/v1/combo/files?limit=2", auth=alice.key_auth)
    assert status == 200 and [f["id"] for f in body["data"]["items"]] == ids[::-1][:2]
    status, body, _ = api.get(f"/v1/combo/files?limit=2&cursor={body['data']['next_cursor']}", auth=alice.key_auth)
    assert [f["id"] for f in body["data"]["items"]] == ids[:1] and body["data"]["next_cursor"] is None


def test_delete_removes_the_row_chunks_index_entries_links_and_original(
    api, alice, upload, drain, django_capture_on_commit_callbacks
):
    agent = make_agent(api, alice)
    _, body, _ = upload(alice, "a.txt", TEXT, agent_id=agent["id"])
    file_id = body["data"]["id"]
    drain()
    assert search(file_ids=[file_id], query="refunds", k=5)
    original = Path(KnowledgeFile.objects.get(id=file_id).original.path)
    assert original.exists()

    with django_capture_on_commit_callbacks(execute=True):
        status, _, _ = api.delete(f"/v1/combo/files/{file_id}", auth=alice.key_auth)
    assert status == 204
    assert not KnowledgeFile.objects.filter(id=file_id).exists() and not Chunk.objects.exists()
    assert search(file_ids=[file_id], query="refunds", k=5) == []
    assert not original.exists()
    assert Agent.objects.get(id=agent["id"]).files.count() == 0
    assert api.get(f"/v1/combo/files/{file_id}", auth=alice.key_auth)[0] == 404


def test_a_file_deleted_before_the_worker_runs_is_skipped(api, alice, upload, drain):
    _, body, _ = upload(alice, "a.txt", TEXT)
    api.delete(f"/v1/combo/files/{body['data']['id']}", auth=alice.key_auth)
    assert drain() == 1
    assert not Chunk.objects.exists()


def test_a_file_deleted_right_after_the_worker_claimed_it_is_skipped(api, alice, upload, monkeypatch):
    from django.db.models import QuerySet

    from agents.knowledge.services import knowledge_file_ingest

    _, body, _ = upload(alice, "a.txt", TEXT)
    file_id = body["data"]["id"]
    update = QuerySet.update

    def claim_then_deleted(self, **fields):
        done = update(self, **fields)
        if fields.get("status") == KnowledgeFile.Status.PROCESSING:
            KnowledgeFile.objects.filter(id=file_id).delete()  # a DELETE that lands in between
        return done

    monkeypatch.setattr(QuerySet, "update", claim_then_deleted)
    assert knowledge_file_ingest(file_id=file_id) == "skipped"
    assert not Chunk.objects.exists()


# ---------------------------------------------------------------- polling: ETag and If-None-Match


def test_polling_a_file_with_if_none_match_is_a_304_until_its_status_changes(api, alice, upload, drain):
    _, body, _ = upload(alice, "a.txt", TEXT)
    path = f"/v1/combo/files/{body['data']['id']}"
    status, queued, read = api.get(path, auth=alice.key_auth)
    etag = read["ETag"]
    assert status == 200 and queued["data"]["status"] == "queued"
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert api.get(path, auth=alice.key_auth)[2]["ETag"] == etag  # the same file, the same tag

    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=etag)
    assert (status, body, response.content, response["ETag"]) == (304, None, b"", etag)
    assert response["X-Request-Id"] and response["Cache-Control"] == "no-store"
    # The second read was counted, the 304 was not.
    assert int(response["X-RateLimit-Remaining"]) == int(read["X-RateLimit-Remaining"]) - 1
    assert "Content-Type" not in response and "Content-Length" not in response
    assert api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=f'W/{etag}')[0] == 304  # weak comparison

    # Ingested meanwhile: the old tag is stale, the whole file comes back with the new one.
    assert drain() == 1
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=etag)
    assert status == 200 and body["data"]["status"] == "ready" and response["ETag"] != etag
    assert api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=response["ETag"])[0] == 304


def test_if_none_match_does_not_hide_a_missing_or_foreign_file(api, alice, bob, upload):
    _, body, _ = upload(alice, "a.txt", TEXT)
    status, theirs, _ = api.get(f"/v1/combo/files/{body['data']['id']}", auth=bob.key_auth, HTTP_IF_NONE_MATCH="*")
    assert (status, theirs["code"]) == (404, 10040)
    status, missing, _ = api.get(f"/v1/combo/files/{uuid.uuid4()}", auth=alice.key_auth, HTTP_IF_NONE_MATCH="*")
    assert (status, missing["code"]) == (404, 10040)


def test_the_file_list_upload_and_delete_carry_no_etag(api, alice, upload):
    status, body, response = upload(alice, "a.txt", TEXT)
    assert status == 201 and "ETag" not in response
    status, _, response = api.get("/v1/combo/files", auth=alice.key_auth)
    assert status == 200 and "ETag" not in response
    status, _, response = api.delete(f"/v1/combo/files/{body['data']['id']}", auth=alice.key_auth)
    assert status == 204 and "ETag" not in response


def test_a_file_read_with_an_if_match_naming_an_older_version_is_a_412(api, alice, upload, drain):
    _, body, _ = upload(alice, "a.txt", TEXT)
    path = f"/v1/combo/files/{body['data']['id']}"
    queued = api.get(path, auth=alice.key_auth)[2]["ETag"]
    assert api.get(path, auth=alice.key_auth, HTTP_IF_MATCH=queued)[0] == 200
    assert drain() == 1  # ingested: a new version
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_MATCH=queued)
    assert (status, body["code"]) == (412, 10061) and "without If-Match" in body["message"], body
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_MATCH="*")
    assert status == 200 and body["data"]["status"] == "ready" and response["ETag"] != queued


def test_a_file_delete_with_a_stale_if_match_is_a_412_and_deletes_nothing(
    api, alice, upload, drain, django_capture_on_commit_callbacks
):
    _, body, _ = upload(alice, "a.txt", TEXT)
    file_id = body["data"]["id"]
    path = f"/v1/combo/files/{file_id}"
    queued = api.get(path, auth=alice.key_auth)[2]["ETag"]
    assert drain() == 1
    original = Path(KnowledgeFile.objects.get(id=file_id).original.path)
    with django_capture_on_commit_callbacks(execute=True):
        status, body, response = api.delete(path, auth=alice.key_auth, HTTP_IF_MATCH=queued)
    assert (status, body["code"]) == (412, 10061), body
    assert "nothing was deleted" in body["message"] and body["data"]["request_id"] == response["X-Request-Id"]
    assert KnowledgeFile.objects.filter(id=file_id).exists() and Chunk.objects.exists() and original.exists()
    ready = api.get(path, auth=alice.key_auth)[2]["ETag"]
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(path, auth=alice.key_auth, HTTP_IF_MATCH=ready)[0] == 204
    assert not KnowledgeFile.objects.filter(id=file_id).exists() and not original.exists()


@pytest.mark.parametrize("header", ["{etag}", "*"])
def test_a_file_delete_with_if_none_match_naming_its_version_is_a_412(api, alice, upload, header):
    _, body, _ = upload(alice, "a.txt", TEXT)
    path = f"/v1/combo/files/{body['data']['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    status, body, _ = api.delete(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=header.format(etag=etag))
    assert (status, body["code"]) == (412, 10061) and "If-None-Match" in body["message"], body
    assert KnowledgeFile.objects.count() == 1
    assert api.delete(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH='"other"')[0] == 204
    assert not KnowledgeFile.objects.exists()


def test_a_file_delete_with_if_match_is_checked_again_under_its_row_lock(api, alice, upload, monkeypatch):
    """Ingestion moving the file on after it was read (and If-Match first checked) still makes a 412."""
    from agents.knowledge.api import KnowledgeFileViewSet

    _, body, _ = upload(alice, "a.txt", TEXT)
    path = f"/v1/combo/files/{body['data']['id']}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    get_object = KnowledgeFileViewSet.get_object

    def read_then_claimed(self):
        found = get_object(self)
        KnowledgeFile.objects.filter(pk=found.pk).update(status=KnowledgeFile.Status.PROCESSING)
        return found

    monkeypatch.setattr(KnowledgeFileViewSet, "get_object", read_then_claimed)
    status, body, _ = api.delete(path, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert (status, body["code"]) == (412, 10061), body
    assert KnowledgeFile.objects.get().status == KnowledgeFile.Status.PROCESSING


def test_file_preconditions_do_not_hide_a_missing_or_foreign_file(api, alice, bob, upload):
    _, body, _ = upload(alice, "a.txt", TEXT)
    for method in ("GET", "DELETE"):
        status, theirs, _ = api.call(method, f"/v1/combo/files/{body['data']['id']}", auth=bob.key_auth,
                                     HTTP_IF_MATCH="*")
        assert (status, theirs["code"]) == (404, 10040), method
        status, missing, _ = api.call(method, f"/v1/combo/files/{uuid.uuid4()}", auth=alice.key_auth,
                                      HTTP_IF_MATCH='"other"')
        assert (status, missing["code"]) == (404, 10040), method
    assert KnowledgeFile.objects.count() == 1


def test_an_agent_patch_that_only_changes_its_files_is_a_new_version_and_the_same_files_are_not(
    api, alice, upload
):
    agent = make_agent(api, alice)
    path = f"/v1/combo/agents/{agent['id']}"
    file_id = upload(alice, "a.txt", TEXT)[1]["data"]["id"]
    _, read, response = api.get(path, auth=alice.key_auth)
    status, body, patched = api.patch(path, {"file_ids": [file_id]}, auth=alice.key_auth)
    assert status == 200 and body["data"]["file_ids"] == [file_id] and patched["ETag"] != response["ETag"]
    assert body["data"]["updated_at"] > read["data"]["updated_at"]
    # The same files again (an id in another spelling, or twice) change nothing: the same version.
    status, again, unchanged = api.patch(
        path, {"file_ids": [file_id.upper(), file_id], "name": "Helper"}, auth=alice.key_auth,
        HTTP_IF_MATCH=patched["ETag"],
    )
    assert status == 200 and again["data"] == body["data"] and unchanged["ETag"] == patched["ETag"]


def test_the_openapi_document_describes_the_files_etag_and_304(api, db):
    doc = api.client.get("/v1/openapi.json").json()
    item = doc["paths"]["/v1/combo/files/{file_id}"]
    get = item["get"]
    assert any(p["name"] == "If-None-Match" and p["in"] == "header" for p in get["parameters"])
    assert "ETag" in get["responses"]["200"]["headers"]
    not_modified = get["responses"]["304"]
    assert "ETag" in not_modified["headers"] and "content" not in not_modified
    assert "patch" not in item  # files are never updated in place
    assert "304" not in item["delete"]["responses"]
    # The read and the delete evaluate If-Match and If-None-Match.
    for method in ("get", "delete"):
        names = [p["name"] for p in item[method]["parameters"] if p["in"] == "header"]
        assert "If-Match" in names and "If-None-Match" in names, (method, names)
        assert "10061" in item[method]["responses"]["412"]["description"], method
    assert "nothing is deleted" in item["delete"]["description"]


# ---------------------------------------------------------------- ownership


def test_bob_cannot_read_delete_or_list_alices_file(api, alice, bob, upload):
    _, body, _ = upload(alice, "a.txt", TEXT)
    file_id = body["data"]["id"]
    for method in ("get", "delete"):
        status, theirs, _ = api.call(method, f"/v1/combo/files/{file_id}", auth=bob.key_auth)
        missing_status, missing, _ = api.call(method, f"/v1/combo/files/{uuid.uuid4()}", auth=bob.key_auth)
        assert (status, theirs["code"], theirs["message"]) == (missing_status, missing["code"], missing["message"])
        assert status == 404 and theirs["code"] == 10040
    assert api.get("/v1/combo/files/not-a-uuid", auth=bob.key_auth)[0] == 404
    assert api.get("/v1/combo/files", auth=bob.key_auth)[1]["data"]["items"] == []
    assert KnowledgeFile.objects.filter(id=file_id).exists()


def test_bob_cannot_attach_alices_file_to_his_agent(api, alice, bob, upload):
    _, body, _ = upload(alice, "a.txt", TEXT)
    agent = make_agent(api, bob)
    status, error, _ = api.patch(f"/v1/combo/agents/{agent['id']}", {"file_ids": [body["data"]["id"]]},
                                 auth=bob.key_auth)
    assert (status, error["code"]) == (400, 10001)
    assert error["data"]["errors"]["file_ids"] == [f"You have no file with id {body['data']['id']}."]
    assert Agent.objects.get(id=agent["id"]).files.count() == 0
    status, error, _ = api.post("/v1/combo/agents", {"name": "x", "file_ids": [body["data"]["id"]]},
                                auth=bob.key_auth)
    assert (status, error["code"]) == (400, 10001) and not Agent.objects.filter(owner=bob.user).exclude(
        id=agent["id"]).exists()


def test_bob_cannot_upload_into_alices_agent(api, alice, bob, upload):
    agent = make_agent(api, alice)
    status, body, _ = upload(bob, "b.txt", TEXT, agent_id=agent["id"])
    assert (status, body["code"]) == (400, 10001) and "agent_id" in body["data"]["errors"]
    assert not KnowledgeFile.objects.exists()


def test_unauthenticated_uploads_are_401(client):
    response = client.post("/v1/combo/files", {"file": ("a.txt", b"x")})
    assert (response.status_code, response.json()["code"]) == (401, 10010)


# ---------------------------------------------------------------- attaching through the agent


def test_file_ids_on_the_agent_attach_replace_and_detach(api, alice, upload):
    ids = [upload(alice, f"{i}.txt", f"text {i}".encode())[1]["data"]["id"] for i in range(3)]
    agent = make_agent(api, alice, file_ids=ids[:2])
    assert agent["file_ids"] == ids[:2]
    status, body, _ = api.patch(f"/v1/combo/agents/{agent['id']}", {"file_ids": [ids[2], ids[0]]},
                                auth=alice.key_auth)
    assert status == 200 and body["data"]["file_ids"] == [ids[0], ids[2]]
    status, body, _ = api.patch(f"/v1/combo/agents/{agent['id']}", {"name": "Renamed"}, auth=alice.key_auth)
    assert body["data"]["file_ids"] == [ids[0], ids[2]], "a PATCH without file_ids keeps them"
    status, body, _ = api.patch(f"/v1/combo/agents/{agent['id']}", {"file_ids": []}, auth=alice.key_auth)
    assert body["data"]["file_ids"] == [] and KnowledgeFile.objects.count() == 3
    listed = api.get("/v1/combo/agents", auth=alice.key_auth)[1]["data"]["items"]
    assert listed[0]["file_ids"] == []


# Transactional: SQLite checks the foreign keys at commit, which the usual per-test transaction never reaches.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("duplicate", [False, True])
def test_an_upload_whose_agent_is_deleted_meanwhile_is_refused_like_a_missing_agent(
    api, alice, upload, monkeypatch, duplicate
):
    from agents.knowledge import services

    if duplicate:
        upload(alice, "a.txt", TEXT)
    agent = make_agent(api, alice)
    original = services.knowledge_file_upload

    def after_a_delete(**kwargs):
        Agent.objects.filter(pk=kwargs["agent"].pk).delete()  # a DELETE that lands in between
        return original(**kwargs)

    monkeypatch.setattr(services, "knowledge_file_upload", after_a_delete)
    status, body, _ = upload(alice, "a.txt", TEXT, agent_id=agent["id"])
    assert (status, body["code"]) == (400, 10001), body
    assert body["data"]["errors"] == {"agent_id": ["You have no agent with this id."]}
    assert KnowledgeFile.objects.count() == (1 if duplicate else 0)


def test_upload_with_agent_id_attaches_at_once(api, alice, upload):
    agent = make_agent(api, alice)
    status, body, _ = upload(alice, "a.txt", TEXT, agent_id=agent["id"])
    assert status == 201 and body["data"]["agent_ids"] == [agent["id"]]
    assert api.get(f"/v1/combo/agents/{agent['id']}", auth=alice.key_auth)[1]["data"]["file_ids"] == [
        body["data"]["id"]
    ]


def test_upload_with_agent_id_keeps_the_agent_within_its_file_limit(api, alice, upload):
    agent = make_agent(api, alice)
    full = Agent.objects.get(id=agent["id"])
    files = KnowledgeFile.objects.bulk_create(
        KnowledgeFile(owner=alice.user, name=f"{n}.txt", size=1, sha256=f"{n:064x}", kind="text")
        for n in range(MAX_FILES_PER_AGENT)
    )
    full.files.add(*files)
    originals = stored_originals()

    status, body, _ = upload(alice, "new.txt", TEXT, agent_id=agent["id"])
    assert (status, body["code"]) == (400, 10001) and "at most 1000 files" in body["message"]
    assert body["data"]["errors"] == {"agent_id": [body["message"]]}
    assert not KnowledgeFile.objects.filter(name="new.txt").exists() and stored_originals() == originals

    status, body, _ = upload(alice, "new.txt", TEXT)  # without agent_id: stored, not attached
    assert status == 201
    status, body, _ = upload(alice, "again.txt", TEXT, agent_id=agent["id"])  # the same bytes
    assert (status, body["code"]) == (400, 10001)
    assert full.files.count() == MAX_FILES_PER_AGENT
    assert KnowledgeFile.objects.get(name="new.txt").agents.count() == 0


def test_bad_file_ids_are_validation_errors(api, alice):
    agent = make_agent(api, alice)
    status, body, _ = api.patch(f"/v1/combo/agents/{agent['id']}", {"file_ids": ["nope"]}, auth=alice.key_auth)
    assert (status, body["code"]) == (400, 10001) and "file_ids" in body["data"]["errors"]


# ---------------------------------------------------------------- OpenAPI


def test_the_file_operations_are_typed_in_the_openapi_document(api, db):
    from openapi_spec_validator import validate

    status, _, response = api.get("/v1/openapi.json")
    assert status == 200
    document = json.loads(response.content)
    validate(document)
    upload_op = document["paths"]["/v1/combo/files"]["post"]
    form = upload_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    form = document["components"]["schemas"][form["$ref"].rsplit("/", 1)[1]]
    assert form["properties"]["file"] == {"type": "string", "format": "binary", "description": form["properties"]["file"]["description"]}
    assert form["required"] == ["file"] and "agent_id" in form["properties"]
    assert {"200", "201", "400", "401", "413", "415"} <= set(upload_op["responses"])
    assert set(document["paths"]["/v1/combo/files/{file_id}"]) >= {"get", "delete"}
    assert "get" in document["paths"]["/v1/combo/files"]
    agent_schema = document["components"]["schemas"]["Agent"]
    assert agent_schema["properties"]["file_ids"]["type"] == "array"
