"""Operators' pages for knowledge files and chunks."""

from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from agents.knowledge import services
from agents.knowledge.tasks import ingest_file
from agents.models import Chunk, KnowledgeFile


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def ready_file(alice):
    file, _ = services.knowledge_file_upload(
        owner=alice.user, upload=SimpleUploadedFile("faq.md", b"# FAQ\n\nThe lighthouse opens at dawn.\n")
    )
    ingest_file.call(str(file.id))
    file.refresh_from_db()
    return file


def test_the_file_list_searches_by_name_and_sha_and_filters(staff_client, ready_file):
    for query in ("?q=faq", f"?q={ready_file.sha256}", "?status__exact=ready&kind=markdown"):
        response = staff_client.get("/admin/agents/knowledgefile/" + query)
        assert response.status_code == 200 and b"faq.md" in response.content, query
    response = staff_client.get("/admin/agents/knowledgefile/?status__exact=failed")
    assert b"faq.md" not in response.content


def test_the_reingest_action_queues_the_file_and_the_worker_makes_it_ready(
    staff_client, ready_file, django_capture_on_commit_callbacks, drain
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/agents/knowledgefile/", {"action": "reingest", "_selected_action": [str(ready_file.pk)]}
        )
    assert response.status_code == 302
    assert KnowledgeFile.objects.get().status == "queued"
    assert drain() == 1
    assert KnowledgeFile.objects.get().status == "ready" and Chunk.objects.count() == 1


def test_the_delete_action_removes_the_stored_original_too(
    staff_client, ready_file, django_capture_on_commit_callbacks
):
    path = ready_file.original.path
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            "/admin/agents/knowledgefile/",
            {"action": "delete_with_original", "_selected_action": [str(ready_file.pk)]},
        )
    import os

    assert not KnowledgeFile.objects.exists() and not os.path.exists(path)


def test_the_file_page_deletes_the_file_with_its_chunks_and_original(
    staff_client, ready_file, django_capture_on_commit_callbacks
):
    path = ready_file.original.path
    url = f"/admin/agents/knowledgefile/{ready_file.pk}/delete/"
    confirm = staff_client.get(url)
    assert confirm.status_code == 200 and b"Cannot delete" not in confirm.content
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not KnowledgeFile.objects.exists() and not Chunk.objects.exists()
    assert not os.path.exists(path)


def test_an_operator_deletes_a_user_who_has_files_and_their_stored_originals_go_too(
    staff_client, ready_file, django_capture_on_commit_callbacks
):
    path = ready_file.original.path
    url = f"/admin/accounts/user/{ready_file.owner_id}/delete/"
    confirm = staff_client.get(url)
    assert confirm.status_code == 200 and b"Cannot delete" not in confirm.content
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not KnowledgeFile.objects.exists()
    assert not os.path.exists(path)


def test_chunks_are_read_only_and_searchable_by_text(staff_client, ready_file):
    chunk = Chunk.objects.get()
    response = staff_client.get("/admin/agents/chunk/?q=lighthouse")
    assert response.status_code == 200 and b"lighthouse" in response.content
    assert staff_client.get(f"/admin/agents/chunk/{chunk.pk}/change/").status_code == 200
    assert staff_client.post(f"/admin/agents/chunk/{chunk.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Chunk.objects.filter(pk=chunk.pk).exists()


def test_the_change_page_links_the_original_and_the_link_serves_it_to_staff(staff_client, ready_file):
    import re

    page = staff_client.get(f"/admin/agents/knowledgefile/{ready_file.pk}/change/").content.decode()
    links = re.findall(r'<a href="([^"]+)"[^>]*>[^<]*</a>', page[page.index("field-original"):])
    href = links[0]
    assert href.startswith("/admin/")
    response = staff_client.get(href)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"# FAQ\n\nThe lighthouse opens at dawn.\n"
    # Served as a download under the uploader's name, never rendered on the site's origin.
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="faq.md"'


def test_the_original_is_not_served_to_anyone_but_staff(client, alice, ready_file):
    path = f"/admin/agents/knowledgefile/{ready_file.pk}/original/"
    assert client.get(path).status_code == 302  # to the admin login
    client.force_login(alice.user)
    assert client.get(path).status_code == 302


def test_a_missing_original_is_not_found_not_a_server_error(staff_client, ready_file):
    ready_file.original.storage.delete(ready_file.original.name)
    assert staff_client.get(f"/admin/agents/knowledgefile/{ready_file.pk}/change/").status_code == 200
    assert staff_client.get(f"/admin/agents/knowledgefile/{ready_file.pk}/original/").status_code == 404
