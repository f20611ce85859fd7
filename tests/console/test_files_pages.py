"""Knowledge files in the console, through Django's test client.

The agent edit page's Files section (list, detach, attach an existing file,
the upload control's settings for static/console/files.js) and the Files page
(every file, delete after a confirmation). alice sees and changes only her
files and agents; bob's answer 404, and he can't attach her file to his agent.
"""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from agents import services as agent_services
from agents.knowledge import services as knowledge_services
from agents.models import KnowledgeFile
from tests.console.test_security import ALLOWED_SOURCES, policy_of

XSS_NAME = "<img src=x onerror=alert(1)>.txt"
XSS_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;.txt"


def body(response) -> str:
    return response.content.decode()


def make_file(owner, name: str, data: bytes | None = None, *, status="queued", agent=None, **fields) -> KnowledgeFile:
    """A file stored through the upload service, with the status the test needs."""
    data = data if data is not None else f"Notes in {name}.\n".encode()
    file, created = knowledge_services.knowledge_file_upload(
        owner=owner, upload=SimpleUploadedFile(name, data), agent=agent
    )
    assert created
    KnowledgeFile.objects.filter(pk=file.pk).update(status=status, **fields)
    file.refresh_from_db()
    return file


@pytest.fixture
def alice_files(alice, alice_agent):
    """Three files on alice's agent (ready PDF, failed CSV, queued Markdown) and one that is not."""
    return {
        "ready": make_file(alice.user, "handbook.pdf", b"%PDF-1.4\n%fake\n", status="ready", agent=alice_agent,
                           chunk_count=31, pages=12, characters=30712, kind="pdf"),
        "failed": make_file(alice.user, "prices.csv", b"a,b\n1,2\n", status="failed", agent=alice_agent, kind="csv",
                            failure_reason="This CSV file couldn't be read (record 12: bad quoting)."),
        "queued": make_file(alice.user, "guide.md", b"# Guide\n\nSteps.\n", agent=alice_agent),
        "other": make_file(alice.user, "faq.txt", b"Questions and answers.\n", status="ready", chunk_count=1),
    }


@pytest.fixture
def bob_client(bob) -> Client:
    client = Client()
    client.force_login(bob.user)
    return client


def row_of(page: str, name: str) -> str:
    rows = re.findall(r"<tr class=\"file-row\".*?</tr>", page, re.S)
    matching = [row for row in rows if f'data-field="name">{name}<' in row]
    assert len(matching) == 1, (name, rows)
    return matching[0]


# --- The agent's Files section --------------------------------------------------


def test_the_edit_page_lists_the_agents_files_with_their_status(alice_client, alice_agent, alice_files):
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/"))
    ready = row_of(page, "handbook.pdf")
    assert f'data-file-id="{alice_files["ready"].id}"' in ready and 'data-status="ready"' in ready
    assert '<td class="col-minor" data-field="kind">pdf</td>' in ready and "15\xa0bytes" in ready
    assert 'class="badge badge-ready" data-field="status">Ready<' in ready
    assert "31 chunks · 12 pages" in ready
    failed = row_of(page, "prices.csv")
    assert "badge-failed" in failed and "record 12: bad quoting" in failed and "file-reason" in failed
    queued = row_of(page, "guide.md")
    assert 'data-status="queued"' in queued and "Waiting to be read" in queued
    # Oldest attached first, like the API's file_ids; the unattached file is not a row.
    assert page.index("handbook.pdf</td>") < page.index("prices.csv</td>") < page.index("guide.md</td>")
    assert 'data-field="name">faq.txt<' not in page


def test_each_row_detaches_through_a_csrf_protected_post(alice_client, alice_agent, alice_files):
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/"))
    row = row_of(page, "handbook.pdf")
    action = f'/console/agents/{alice_agent.id}/files/{alice_files["ready"].id}/detach/'
    assert f'<form method="post" class="inline-action" data-file-action action="{action}">' in row
    assert 'name="csrfmiddlewaretoken"' in row
    assert re.search(r"Detach<span class=\"visually-hidden\"> <span data-field=\"name\">handbook.pdf</span>", row)


def test_the_upload_control_is_configured_for_the_page_script(alice_client, alice, alice_agent):
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/"))
    assert 'data-files-url="/v1/combo/files"' in page and 'data-token-url="/console/token"' in page
    assert f'data-agent-id="{alice_agent.id}"' in page and 'data-max-bytes="20971520"' in page
    assert f'data-login-url="/console/login/?next=%2Fconsole%2Fagents%2F{alice_agent.id}%2F"' in page
    assert 'id="upload-input"' in page and "multiple" in page and "up to 20.0\xa0MB each" in page
    assert '<script src="/static/console/files.js" defer></script>' in page
    # The row the script clones for each upload, its URLs waiting for the new file's id.
    template = re.search(r'<template id="file-row-template">(.*?)</template>', page, re.S).group(1)
    assert f"/console/agents/{alice_agent.id}/files/00000000-0000-0000-0000-000000000000/detach/" in template
    assert 'data-action="retry"' in template and 'data-action="dismiss"' in template
    assert alice.api_key not in page and "ragflow-" not in page


def test_an_agent_without_files_says_how_to_add_them(alice_client, alice_agent):
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/"))
    assert "No files yet. Upload some below" in page
    assert re.search(r'<div class="table-wrap" data-files-table-wrap hidden>', page)
    assert "data-attach-form" not in page  # nothing to attach


def test_the_new_agent_page_explains_files_come_after_creating_it(alice_client):
    page = body(alice_client.get("/console/agents/new/"))
    assert "Once the agent is created, upload files here" in page
    assert "upload-input" not in page and "files.js" not in page


def test_the_attach_select_offers_only_alices_other_files(alice_client, alice_agent, alice_files, bob):
    make_file(bob.user, "bob-secret.txt", b"bob's notes\n", status="ready")
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/"))
    select = re.search(r'<select name="file"[^>]*>(.*?)</select>', page, re.S).group(1)
    assert f'<option value="{alice_files["other"].id}">faq.txt (text, ready)</option>' in select
    assert "handbook.pdf" not in select and "bob-secret" not in select
    assert "Choose a file…" in select


def test_attaching_an_existing_file_through_the_form(alice_client, alice_agent, alice_files):
    other = alice_files["other"]
    response = alice_client.post(f"/console/agents/{alice_agent.id}/files/attach/", {"file": str(other.id)})
    assert response.status_code == 302 and response["Location"] == f"/console/agents/{alice_agent.id}/#files"
    assert set(alice_agent.files.values_list("id", flat=True)) == {f.id for f in alice_files.values()}
    page = body(alice_client.get(response["Location"]))
    assert "Attached “faq.txt” to Alice&#x27;s helper." in page
    assert 'data-field="name">faq.txt<' in page


def test_attaching_nothing_shows_the_error_next_to_the_select(alice_client, alice_agent, alice_files):
    response = alice_client.post(f"/console/agents/{alice_agent.id}/files/attach/", {"file": ""})
    page = body(response)
    assert response.status_code == 400
    assert re.search(r'id="id_file_error">\s*<li>Choose a file to attach.', page)
    assert 'aria-invalid="true"' in page
    assert alice_agent.files.count() == 3


def test_attaching_respects_the_per_agent_file_limit(alice_client, alice_agent, alice_files, monkeypatch):
    monkeypatch.setattr(agent_services, "MAX_FILES_PER_AGENT", 3)
    response = alice_client.post(f"/console/agents/{alice_agent.id}/files/attach/",
                                 {"file": str(alice_files["other"].id)})
    assert response.status_code == 400
    assert "An agent may have at most 3 files; detach one first." in body(response)
    assert alice_agent.files.count() == 3


def test_detaching_through_the_form_keeps_the_file(alice_client, alice_agent, alice_files):
    ready = alice_files["ready"]
    response = alice_client.post(f"/console/agents/{alice_agent.id}/files/{ready.id}/detach/")
    assert response.status_code == 302 and response["Location"] == f"/console/agents/{alice_agent.id}/#files"
    assert set(alice_agent.files.values_list("id", flat=True)) == {alice_files["failed"].id, alice_files["queued"].id}
    assert KnowledgeFile.objects.filter(pk=ready.pk).exists()
    page = body(alice_client.get(response["Location"]))
    assert "Detached “handbook.pdf”. It is still in your files." in page
    assert 'data-field="name">handbook.pdf<' not in page.split('id="file-row-template"')[0].split("<tbody>")[1]
    # Now it can be attached again.
    assert f'<option value="{ready.id}">handbook.pdf (pdf, ready)</option>' in page
    # Detaching again changes nothing and says so.
    again = alice_client.post(f"/console/agents/{alice_agent.id}/files/{ready.id}/detach/", follow=True)
    assert "was not attached" in body(again)


@pytest.mark.parametrize("path", ["files/attach/", "files/{file}/detach/"])
def test_attach_and_detach_only_take_posts(alice_client, alice_agent, alice_files, path):
    # A GET (as after signing in again from a form whose session had ended) goes to the Files section,
    # changing nothing: never a blank 405.
    url = f"/console/agents/{alice_agent.id}/" + path.format(file=alice_files["ready"].id)
    response = alice_client.get(url)
    assert response.status_code == 302 and response["Location"] == f"/console/agents/{alice_agent.id}/#files"
    assert alice_agent.files.count() == 3


def test_detach_refuses_a_post_without_the_csrf_token(alice, alice_agent, alice_files):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    response = strict.post(f"/console/agents/{alice_agent.id}/files/{alice_files['ready'].id}/detach/")
    assert response.status_code == 403
    assert alice_agent.files.count() == 3


def test_bob_cannot_attach_alices_file_to_his_agent(bob_client, bob_agent, alice_files):
    response = bob_client.post(f"/console/agents/{bob_agent.id}/files/attach/", {"file": str(alice_files["other"].id)})
    page = body(response)
    assert response.status_code == 400
    assert "That file is not one of yours, or it is attached already." in page
    assert "faq.txt" not in page and "handbook.pdf" not in page
    assert bob_agent.files.count() == 0


def test_the_attach_service_refuses_another_owners_file(bob_agent, alice_files):
    from combo.errors import ComboError

    with pytest.raises(ComboError) as refused:
        agent_services.agent_file_attach(agent=bob_agent, file=alice_files["other"])
    assert refused.value.error.value.code == 10001
    assert bob_agent.files.count() == 0


def test_bob_cannot_reach_alices_agent_or_files(bob_client, alice_agent, alice_files, bob_agent):
    ready = alice_files["ready"]
    assert bob_client.get(f"/console/agents/{alice_agent.id}/").status_code == 404
    assert bob_client.post(f"/console/agents/{alice_agent.id}/files/{ready.id}/detach/").status_code == 404
    assert bob_client.post(f"/console/agents/{alice_agent.id}/files/attach/", {"file": str(ready.id)}).status_code == 404
    # His own agent, her file: the file is not found either.
    assert bob_client.post(f"/console/agents/{bob_agent.id}/files/{ready.id}/detach/").status_code == 404
    assert bob_client.get(f"/console/files/{ready.id}/delete/").status_code == 404
    assert bob_client.post(f"/console/files/{ready.id}/delete/").status_code == 404
    assert alice_agent.files.count() == 3 and KnowledgeFile.objects.filter(pk=ready.pk).exists()
    page = body(bob_client.get("/console/files/"))
    assert "handbook.pdf" not in page and "No files yet" in page


# --- The Files page ---------------------------------------------------------------


def test_the_files_page_lists_every_file_with_its_agents(alice_client, alice_agent, alice_files, bob):
    make_file(bob.user, "bob-secret.txt", b"bob's notes\n")
    page = body(alice_client.get("/console/files/"))
    for name in ("handbook.pdf", "prices.csv", "guide.md", "faq.txt"):
        assert f'data-field="name">{name}<' in page
    assert "bob-secret" not in page
    handbook = row_of(page, "handbook.pdf")
    assert f'<a href="/console/agents/{alice_agent.id}/">Alice&#x27;s helper</a>' in handbook
    assert f'href="/console/files/{alice_files["ready"].id}/delete/"' in handbook
    assert '<span class="muted">None</span>' in row_of(page, "faq.txt")
    # Newest first.
    assert page.index("faq.txt</td>") < page.index("handbook.pdf</td>")
    assert 'data-agent-id=""' in page and '<script src="/static/console/files.js" defer></script>' in page


def test_the_navigation_links_the_files_page(alice_client):
    page = body(alice_client.get("/console/files/"))
    assert '<a href="/console/files/" aria-current="page">Files</a>' in page


def test_deleting_a_file_asks_first_and_only_a_post_deletes(alice_client, alice_agent, alice_files):
    ready = alice_files["ready"]
    confirm = alice_client.get(f"/console/files/{ready.id}/delete/")
    page = body(confirm)
    assert confirm.status_code == 200 and "cannot be undone" in page
    assert "attached to 1 agent," in page and "Alice&#x27;s helper" in page
    assert KnowledgeFile.objects.filter(pk=ready.pk).exists()
    response = alice_client.post(f"/console/files/{ready.id}/delete/")
    assert response.status_code == 302 and response["Location"] == "/console/files/"
    assert not KnowledgeFile.objects.filter(pk=ready.pk).exists()
    assert alice_agent.files.count() == 2
    assert "Deleted “handbook.pdf”." in body(alice_client.get("/console/files/"))


def test_deleting_a_file_refuses_a_post_without_the_csrf_token(alice, alice_files):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    assert strict.post(f"/console/files/{alice_files['ready'].id}/delete/").status_code == 403
    assert KnowledgeFile.objects.filter(pk=alice_files["ready"].pk).exists()


@pytest.mark.parametrize("path", ["/console/files/", "/console/files/{file}/delete/"])
def test_signed_out_visitors_are_sent_to_sign_in(client, alice_files, path):
    path = path.format(file=alice_files["ready"].id)
    response = client.get(path)
    assert response.status_code == 302 and response["Location"] == f"/console/login/?next={path}"


def test_signed_out_posts_change_nothing(client, alice_agent, alice_files):
    response = client.post(f"/console/agents/{alice_agent.id}/files/{alice_files['ready'].id}/detach/")
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")
    assert alice_agent.files.count() == 3


# --- Escaping and the CSP -----------------------------------------------------------


@pytest.fixture
def xss_file(alice, alice_agent):
    """A file whose name is markup, attached to an agent whose name is too."""
    agent_services.agent_update(agent=alice_agent, name="<b>agent</b>")
    attached = make_file(alice.user, XSS_NAME, b"Hello.\n", status="failed", agent=alice_agent,
                         failure_reason="<script>alert(2)</script> could not be read")
    loose = make_file(alice.user, "x" + XSS_NAME, b"Other.\n")
    return attached, loose


@pytest.mark.parametrize("path", ["/console/agents/{agent}/", "/console/files/", "/console/files/{file}/delete/"])
def test_file_names_and_reasons_are_escaped(alice_client, alice_agent, xss_file, path):
    attached, _ = xss_file
    page = body(alice_client.get(path.format(agent=alice_agent.id, file=attached.id)))
    assert "<img" not in page and "<script>alert" not in page and "<b>agent</b>" not in page
    assert XSS_ESCAPED in page
    if "/delete/" not in path:
        assert "&lt;script&gt;alert(2)&lt;/script&gt; could not be read" in page


def test_the_attach_select_escapes_file_names(alice_client, alice_agent, xss_file):
    page = body(alice_client.get(f"/console/agents/{alice_agent.id}/"))
    select = re.search(r'<select name="file"[^>]*>(.*?)</select>', page, re.S).group(1)
    assert "x" + XSS_ESCAPED in select and "<img" not in select


@pytest.mark.parametrize("path", ["/console/agents/{agent}/", "/console/files/", "/console/files/{file}/delete/"])
def test_files_pages_hold_the_csp_with_no_inline_code(alice_client, alice_agent, alice_files, path):
    response = alice_client.get(path.format(agent=alice_agent.id, file=alice_files["ready"].id))
    assert response.status_code == 200
    policy = policy_of(response)
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    for sources in policy.values():
        assert set(sources) <= ALLOWED_SOURCES
    page = body(response)
    for attributes, content in re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S):
        assert 'src="/' in attributes and content.strip() == ""
    assert "<style" not in page
    assert not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page)
    for url in re.findall(r'\s(?:src|href|action)="([^"]*)"', page):
        assert url.startswith(("/", "#", "?")), url
